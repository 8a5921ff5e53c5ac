/// Reductions over axes: sum, mean, variance over any set of axes; max, argmax and logsumexp
/// over one axis.

/// Normalizes possibly negative axes against a rank and checks them.
func normalizeAxes(_ axes: [Int], rank: Int, op: String) throws -> [Int] {
    let normalized = axes.map { $0 < 0 ? $0 + rank : $0 }
    try checkArgument(normalized.allSatisfy { $0 >= 0 && $0 < rank } && Set(normalized).count == normalized.count,
                      op, "axes \(axes) invalid for rank \(rank)")
    return normalized.sorted()
}

/// Splits a shape around one axis into (outer, length, inner) sizes for [outer, n, inner] loops.
func splitAround(_ shape: [Int], axis: Int) -> (outer: Int, n: Int, inner: Int) {
    (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
}

extension Tensor {
    /// Sum over `axes`, keeping them as size-1 dimensions if `keepDims`.
    public func sum(axes: [Int], keepDims: Bool = false) throws -> Tensor {
        let axes = try normalizeAxes(axes, rank: rank, op: "sum")
        var kept = shape
        for a in axes { kept[a] = 1 }
        let reduced = try sum(toShape: kept)
        return keepDims ? reduced : try reduced.reshaped(shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element))
    }

    /// Sum of all elements, as a scalar.
    public func sum() throws -> Tensor { try sum(axes: Array(0..<rank)) }

    /// Mean over `axes`.
    public func mean(axes: [Int], keepDims: Bool = false) throws -> Tensor {
        let axes = try normalizeAxes(axes, rank: rank, op: "mean")
        let n = axes.map { shape[$0] }.reduce(1, *)
        return try sum(axes: axes, keepDims: keepDims) * (1 / Double(n))
    }

    /// Mean of all elements, as a scalar.
    public func mean() throws -> Tensor { try mean(axes: Array(0..<rank)) }

    /// Variance over `axes`; population variance (divide by n) unless `unbiased` (n − 1).
    public func variance(axes: [Int], keepDims: Bool = false, unbiased: Bool = false) throws -> Tensor {
        let axes = try normalizeAxes(axes, rank: rank, op: "variance")
        let n = axes.map { shape[$0] }.reduce(1, *)
        try checkArgument(!unbiased || n > 1, "variance", "unbiased variance of \(n) element")
        let centered = try self - mean(axes: axes, keepDims: true)
        return try square(centered).sum(axes: axes, keepDims: keepDims) * (1 / Double(unbiased ? n - 1 : n))
    }

    /// Maximum along one axis; the gradient goes to the first maximal element.
    public func max(axis: Int, keepDims: Bool = false) throws -> Tensor {
        let axis = try normalizeAxes([axis], rank: rank, op: "max")[0]
        let indices = try argmax(axis: axis)
        let (outer, n, inner) = splitAround(shape, axis: axis)
        var outShape = shape
        outShape[axis] = 1
        let out = Tensor(shape: outShape, storage: Storage(dtype: dtype, count: outer * inner, zeroed: false))
        func pick<T: Real>(_: T.Type) {
            let px = storage.pointer(T.self), po = out.storage.pointer(T.self)
            for o in 0..<outer { for i in 0..<inner { po[o * inner + i] = px[(o * n + indices[o * inner + i]) * inner + i] } }
        }
        switch dtype {
        case .float32: pick(Float.self)
        case .float64: pick(Double.self)
        }
        let source = shape, dtype = self.dtype
        Tensor.record(out, "max", [self], { g in
            let gx = Tensor(zeros: source, dtype: dtype)
            func scatter<T: Real>(_: T.Type) {
                let pg = g.storage.pointer(T.self), po = gx.storage.pointer(T.self)
                for o in 0..<outer { for i in 0..<inner { po[(o * n + indices[o * inner + i]) * inner + i] = pg[o * inner + i] } }
            }
            switch dtype {
            case .float32: scatter(Float.self)
            case .float64: scatter(Double.self)
            }
            return [gx]
        })
        return keepDims ? out : try out.reshaped(shape.enumerated().filter { $0.offset != axis }.map(\.element))
    }

    /// Index of the (first) maximum along one axis, flattened over the other axes in row-major order.
    public func argmax(axis: Int) throws -> [Int] {
        let axis = try normalizeAxes([axis], rank: rank, op: "argmax")[0]
        let (outer, n, inner) = splitAround(shape, axis: axis)
        try checkArgument(n > 0, "argmax", "empty axis \(axis) of \(describe(shape))")
        var result = [Int](repeating: 0, count: outer * inner)
        func scan<T: Real>(_: T.Type) {
            let px = storage.pointer(T.self)
            for o in 0..<outer {
                for i in 0..<inner {
                    var best = px[o * n * inner + i], bestIndex = 0
                    for k in 1..<Swift.max(n, 1) where px[(o * n + k) * inner + i] > best {
                        best = px[(o * n + k) * inner + i]; bestIndex = k
                    }
                    result[o * inner + i] = bestIndex
                }
            }
        }
        switch dtype {
        case .float32: scan(Float.self)
        case .float64: scan(Double.self)
        }
        return result
    }

    /// log Σ exp along one axis, computed stably; its gradient is the softmax.
    public func logSumExp(axis: Int, keepDims: Bool = false) throws -> Tensor {
        let axis = try normalizeAxes([axis], rank: rank, op: "logSumExp")[0]
        let peak = try max(axis: axis, keepDims: true).detach()
        let result = try log(exp(self - peak).sum(axes: [axis], keepDims: true)) + peak
        return keepDims ? result : try result.reshaped(shape.enumerated().filter { $0.offset != axis }.map(\.element))
    }
}
