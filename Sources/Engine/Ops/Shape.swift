/// Ops that move values without arithmetic: reshape, permute, transpose, concat, split, slice,
/// gather and index-select.

/// Copies `n` elements of one dtype between raw buffers (element offsets).
@inline(__always)
func copyElements(_ dtype: DType, from src: Storage, _ srcOffset: Int, to dst: Storage, _ dstOffset: Int, count n: Int) {
    (dst.raw + dstOffset * dtype.size).copyMemory(from: src.raw + srcOffset * dtype.size, byteCount: n * dtype.size)
}

extension Tensor {
    /// The same values under a new shape (a view sharing storage). One dimension may be −1.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        var target = newShape
        if let unknown = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(1, *)
            try checkShape(known > 0 && count % known == 0, "reshape", "\(describe(shape)) into \(describe(newShape))")
            target[unknown] = count / known
        }
        try checkShape(target.allSatisfy { $0 >= 0 } && target.reduce(1, *) == count, "reshape",
                       "\(describe(shape)) (\(count) elements) into \(describe(newShape))")
        if target == shape { return self }
        let out = Tensor(shape: target, storage: storage)
        let source = shape
        return Tensor.record(out, "reshape", [self], { g in [try g.reshaped(source)] })
    }

    /// Dimensions reordered: output dimension i is input dimension `axes[i]` (a copy).
    public func permuted(_ axes: [Int]) throws -> Tensor {
        try checkArgument(axes.count == rank && Set(axes) == Set(0..<rank), "permute",
                          "axes \(axes) for shape \(describe(shape))")
        if axes == Array(0..<rank) { return self }
        let outShape = axes.map { shape[$0] }
        let inStrides = contiguousStrides(shape)
        let out = Tensor(shape: outShape, storage: Storage(dtype: dtype, count: count, zeroed: false))
        func move<T: Real>(_: T.Type) {
            let pi = storage.pointer(T.self), po = out.storage.pointer(T.self)
            forEachRow(outShape, [contiguousStrides(outShape), axes.map { inStrides[$0] }]) { offsets, n, inner in
                let o = po + offsets[0], x = pi + offsets[1], s = inner[1]
                for i in 0..<n { o[i] = x[i &* s] }
            }
        }
        switch dtype {
        case .float32: move(Float.self)
        case .float64: move(Double.self)
        }
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in axes.enumerated() { inverse[a] = i }
        return Tensor.record(out, "permute", [self], { g in [try g.permuted(inverse)] })
    }

    /// Two dimensions swapped (a copy).
    public func transposed(_ a: Int = -2, _ b: Int = -1) throws -> Tensor {
        let (a, b) = (a < 0 ? a + rank : a, b < 0 ? b + rank : b)
        try checkArgument(a >= 0 && a < rank && b >= 0 && b < rank, "transpose", "axes \(a), \(b) for rank \(rank)")
        var axes = Array(0..<rank)
        axes.swapAt(a, b)
        return try permuted(axes)
    }

    /// Elements `range` along `axis` (a copy).
    public func slice(axis: Int, _ range: Range<Int>) throws -> Tensor {
        let axis = try normalizeAxes([axis], rank: rank, op: "slice")[0]
        try checkArgument(range.lowerBound >= 0 && range.upperBound <= shape[axis], "slice",
                          "range \(range) out of bounds for axis \(axis) of \(describe(shape))")
        let (outer, n, inner) = splitAround(shape, axis: axis)
        var outShape = shape
        outShape[axis] = range.count
        let out = Tensor(shape: outShape, storage: Storage(dtype: dtype, count: outShape.reduce(1, *), zeroed: false))
        for o in 0..<outer {
            copyElements(dtype, from: storage, (o * n + range.lowerBound) * inner, to: out.storage,
                         o * range.count * inner, count: range.count * inner)
        }
        let source = shape, dtype = self.dtype
        return Tensor.record(out, "slice", [self], { g in
            let gx = Tensor(zeros: source, dtype: dtype)
            for o in 0..<outer {
                copyElements(dtype, from: g.storage, o * range.count * inner, to: gx.storage,
                             (o * n + range.lowerBound) * inner, count: range.count * inner)
            }
            return [gx]
        })
    }

    /// Splits along `axis` into consecutive pieces of the given sizes.
    public func split(sizes: [Int], axis: Int) throws -> [Tensor] {
        let a = try normalizeAxes([axis], rank: rank, op: "split")[0]
        try checkShape(sizes.reduce(0, +) == shape[a], "split", "sizes \(sizes) for axis \(a) of \(describe(shape))")
        var start = 0
        return try sizes.map { size in
            defer { start += size }
            return try slice(axis: a, start..<(start + size))
        }
    }

    /// Rows `indices` along `axis`, in that order (repeats allowed); backward adds gradients of
    /// repeated rows.
    public func indexSelect(axis: Int, _ indices: [Int]) throws -> Tensor {
        let axis = try normalizeAxes([axis], rank: rank, op: "indexSelect")[0]
        let (outer, n, inner) = splitAround(shape, axis: axis)
        try checkArgument(indices.allSatisfy { $0 >= 0 && $0 < n }, "indexSelect",
                          "index out of range 0..<\(n) for axis \(axis) of \(describe(shape))")
        var outShape = shape
        outShape[axis] = indices.count
        let m = indices.count
        let out = Tensor(shape: outShape, storage: Storage(dtype: dtype, count: outShape.reduce(1, *), zeroed: false))
        for o in 0..<outer {
            for (j, index) in indices.enumerated() {
                copyElements(dtype, from: storage, (o * n + index) * inner, to: out.storage, (o * m + j) * inner, count: inner)
            }
        }
        let source = shape, dtype = self.dtype
        return Tensor.record(out, "indexSelect", [self], { g in
            let gx = Tensor(zeros: source, dtype: dtype)
            func scatterAdd<T: Real>(_: T.Type) {
                let pg = g.storage.pointer(T.self), po = gx.storage.pointer(T.self)
                for o in 0..<outer {
                    for (j, index) in indices.enumerated() {
                        let src = pg + (o * m + j) * inner, dst = po + (o * n + index) * inner
                        for i in 0..<inner { dst[i] += src[i] }
                    }
                }
            }
            switch dtype {
            case .float32: scatterAdd(Float.self)
            case .float64: scatterAdd(Double.self)
            }
            return [gx]
        })
    }

    /// `torch.gather`: out[..., j, ...] = self[..., index[..., j, ...], ...] along `axis`, where
    /// `index` (row-major, of `indexShape`) matches this shape except along `axis`.
    public func gather(axis: Int, index: [Int], indexShape: [Int]) throws -> Tensor {
        let axis = try normalizeAxes([axis], rank: rank, op: "gather")[0]
        try checkShape(indexShape.count == rank && index.count == indexShape.reduce(1, *)
                       && (0..<rank).allSatisfy { $0 == axis || indexShape[$0] == shape[$0] },
                       "gather", "index \(describe(indexShape)) for input \(describe(shape)) on axis \(axis)")
        let (outer, n, inner) = splitAround(shape, axis: axis)
        let m = indexShape[axis]
        try checkArgument(index.allSatisfy { $0 >= 0 && $0 < n }, "gather", "index out of range 0..<\(n)")
        let out = Tensor(shape: indexShape, storage: Storage(dtype: dtype, count: index.count, zeroed: false))
        func pick<T: Real>(_: T.Type) {
            let px = storage.pointer(T.self), po = out.storage.pointer(T.self)
            for o in 0..<outer { for j in 0..<m { for i in 0..<inner {
                let k = (o * m + j) * inner + i
                po[k] = px[(o * n + index[k]) * inner + i]
            } } }
        }
        switch dtype {
        case .float32: pick(Float.self)
        case .float64: pick(Double.self)
        }
        let source = shape, dtype = self.dtype
        return Tensor.record(out, "gather", [self], { g in
            let gx = Tensor(zeros: source, dtype: dtype)
            func scatterAdd<T: Real>(_: T.Type) {
                let pg = g.storage.pointer(T.self), po = gx.storage.pointer(T.self)
                for o in 0..<outer { for j in 0..<m { for i in 0..<inner {
                    let k = (o * m + j) * inner + i
                    po[(o * n + index[k]) * inner + i] += pg[k]
                } } }
            }
            switch dtype {
            case .float32: scatterAdd(Float.self)
            case .float64: scatterAdd(Double.self)
            }
            return [gx]
        })
    }
}

/// Joins tensors along `axis`; all other dimensions must agree.
public func concat(_ tensors: [Tensor], axis: Int) throws -> Tensor {
    try checkArgument(!tensors.isEmpty, "concat", "no tensors")
    let first = tensors[0]
    let axis = try normalizeAxes([axis], rank: first.rank, op: "concat")[0]
    for t in tensors {
        try checkShape(t.rank == first.rank && t.dtype == first.dtype
                       && (0..<t.rank).allSatisfy { $0 == axis || t.shape[$0] == first.shape[$0] },
                       "concat", "\(describe(t.shape)) and \(describe(first.shape)) along axis \(axis)")
    }
    let sizes = tensors.map { $0.shape[axis] }
    let total = sizes.reduce(0, +)
    var outShape = first.shape
    outShape[axis] = total
    let outer = first.shape[..<axis].reduce(1, *), inner = first.shape[(axis + 1)...].reduce(1, *)
    let out = Tensor(shape: outShape, storage: Storage(dtype: first.dtype, count: outShape.reduce(1, *), zeroed: false))
    var start = 0
    for (t, size) in zip(tensors, sizes) {
        for o in 0..<outer {
            copyElements(first.dtype, from: t.storage, o * size * inner, to: out.storage, (o * total + start) * inner,
                         count: size * inner)
        }
        start += size
    }
    return Tensor.record(out, "concat", tensors, { g in try g.split(sizes: sizes, axis: axis) })
}
