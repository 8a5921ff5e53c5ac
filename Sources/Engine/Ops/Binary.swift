/// Broadcasting binary ops: add, sub, mul, div, maximum, minimum, and `where`.
/// Backward of a broadcast input sums the output gradient over the dimensions it was stretched on.

/// A pointwise function of two values and its partial derivatives, given the inputs and output.
protocol BinaryMap {
    static var name: String { get }
    static func value<T: Real>(_ a: T, _ b: T) -> T
    static func derivativeA<T: Real>(_ a: T, _ b: T, _ y: T) -> T
    static func derivativeB<T: Real>(_ a: T, _ b: T, _ y: T) -> T
}

enum AddMap: BinaryMap {
    static let name = "add"
    @inline(__always) static func value<T: Real>(_ a: T, _ b: T) -> T { a + b }
    @inline(__always) static func derivativeA<T: Real>(_ a: T, _ b: T, _ y: T) -> T { 1 }
    @inline(__always) static func derivativeB<T: Real>(_ a: T, _ b: T, _ y: T) -> T { 1 }
}

enum SubMap: BinaryMap {
    static let name = "sub"
    @inline(__always) static func value<T: Real>(_ a: T, _ b: T) -> T { a - b }
    @inline(__always) static func derivativeA<T: Real>(_ a: T, _ b: T, _ y: T) -> T { 1 }
    @inline(__always) static func derivativeB<T: Real>(_ a: T, _ b: T, _ y: T) -> T { -1 }
}

enum MulMap: BinaryMap {
    static let name = "mul"
    @inline(__always) static func value<T: Real>(_ a: T, _ b: T) -> T { a * b }
    @inline(__always) static func derivativeA<T: Real>(_ a: T, _ b: T, _ y: T) -> T { b }
    @inline(__always) static func derivativeB<T: Real>(_ a: T, _ b: T, _ y: T) -> T { a }
}

enum DivMap: BinaryMap {
    static let name = "div"
    @inline(__always) static func value<T: Real>(_ a: T, _ b: T) -> T { a / b }
    @inline(__always) static func derivativeA<T: Real>(_ a: T, _ b: T, _ y: T) -> T { 1 / b }
    @inline(__always) static func derivativeB<T: Real>(_ a: T, _ b: T, _ y: T) -> T { -y / b }
}

/// Maximum; at a tie the gradient goes to the first input.
enum MaximumMap: BinaryMap {
    static let name = "maximum"
    @inline(__always) static func value<T: Real>(_ a: T, _ b: T) -> T { a >= b ? a : b }
    @inline(__always) static func derivativeA<T: Real>(_ a: T, _ b: T, _ y: T) -> T { a >= b ? 1 : 0 }
    @inline(__always) static func derivativeB<T: Real>(_ a: T, _ b: T, _ y: T) -> T { a >= b ? 0 : 1 }
}

/// Minimum; at a tie the gradient goes to the first input.
enum MinimumMap: BinaryMap {
    static let name = "minimum"
    @inline(__always) static func value<T: Real>(_ a: T, _ b: T) -> T { a <= b ? a : b }
    @inline(__always) static func derivativeA<T: Real>(_ a: T, _ b: T, _ y: T) -> T { a <= b ? 1 : 0 }
    @inline(__always) static func derivativeB<T: Real>(_ a: T, _ b: T, _ y: T) -> T { a <= b ? 0 : 1 }
}

/// out = F(a, b) over the broadcast shape.
private func binaryForward<F: BinaryMap, T: Real>(_: F.Type, _: T.Type, _ a: Tensor, _ b: Tensor, _ out: Tensor) {
    let pa = a.storage.pointer(T.self), pb = b.storage.pointer(T.self), po = out.storage.pointer(T.self)
    if a.shape == b.shape {
        parallelFor(out.count) { range in
            for i in range { po[i] = F.value(pa[i], pb[i]) }
        }
        return
    }
    let strides = [contiguousStrides(out.shape), broadcastStrides(a.shape, to: out.shape),
                   broadcastStrides(b.shape, to: out.shape)]
    forEachRow(out.shape, strides) { offsets, n, inner in
        let o = po + offsets[0], x = pa + offsets[1], y = pb + offsets[2]
        let sa = inner[1], sb = inner[2]
        for i in 0..<n { o[i] = F.value(x[i &* sa], y[i &* sb]) }
    }
}

/// Gradient of F's first (`wantA`) or second input, at the full broadcast shape; the caller sums
/// it down to the input's shape.
private func binaryBackward<F: BinaryMap, T: Real>(_: F.Type, _: T.Type, _ a: Tensor, _ b: Tensor, _ y: Tensor,
                                                   _ g: Tensor, wantA: Bool) -> Tensor {
    let out = Tensor(shape: y.shape, storage: Storage(dtype: y.dtype, count: y.count, zeroed: false))
    let pa = a.storage.pointer(T.self), pb = b.storage.pointer(T.self), py = y.storage.pointer(T.self)
    let pg = g.storage.pointer(T.self), po = out.storage.pointer(T.self)
    let strides = [contiguousStrides(y.shape), broadcastStrides(a.shape, to: y.shape),
                   broadcastStrides(b.shape, to: y.shape)]
    forEachRow(y.shape, strides) { offsets, n, inner in
        let o = offsets[0], x = pa + offsets[1], z = pb + offsets[2]
        let sa = inner[1], sb = inner[2]
        if wantA {
            for i in 0..<n { po[o + i] = pg[o + i] * F.derivativeA(x[i &* sa], z[i &* sb], py[o + i]) }
        } else {
            for i in 0..<n { po[o + i] = pg[o + i] * F.derivativeB(x[i &* sa], z[i &* sb], py[o + i]) }
        }
    }
    return out
}

/// Applies a broadcasting binary map, recording its backward.
func binaryOp<F: BinaryMap>(_ f: F.Type, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    try checkArgument(a.dtype == b.dtype, F.name, "dtypes \(a.dtype) and \(b.dtype) differ")
    let shape = try broadcastShape(a.shape, b.shape, op: F.name)
    let out = Tensor(shape: shape, storage: Storage(dtype: a.dtype, count: shape.reduce(1, *), zeroed: false))
    switch a.dtype {
    case .float32: binaryForward(F.self, Float.self, a, b, out)
    case .float64: binaryForward(F.self, Double.self, a, b, out)
    }
    return Tensor.record(out, F.name, [a, b], { g in
        var grads: [Tensor?] = [nil, nil]
        for (index, input) in [a, b].enumerated() where input.requiresGrad {
            let full: Tensor
            if F.self == AddMap.self || (F.self == SubMap.self && index == 0) {
                full = g
            } else if F.self == SubMap.self {
                full = neg(g)
            } else {
                switch g.dtype {
                case .float32: full = binaryBackward(F.self, Float.self, a, b, out, g, wantA: index == 0)
                case .float64: full = binaryBackward(F.self, Double.self, a, b, out, g, wantA: index == 0)
                }
            }
            grads[index] = try full.sum(toShape: input.shape)
        }
        return grads
    })
}

public func + (a: Tensor, b: Tensor) throws -> Tensor { try binaryOp(AddMap.self, a, b) }
public func - (a: Tensor, b: Tensor) throws -> Tensor { try binaryOp(SubMap.self, a, b) }
public func * (a: Tensor, b: Tensor) throws -> Tensor { try binaryOp(MulMap.self, a, b) }
public func / (a: Tensor, b: Tensor) throws -> Tensor { try binaryOp(DivMap.self, a, b) }
/// Elementwise maximum with broadcasting.
public func maximum(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binaryOp(MaximumMap.self, a, b) }
/// Elementwise minimum with broadcasting.
public func minimum(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binaryOp(MinimumMap.self, a, b) }

extension Tensor {
    /// Sums a broadcast gradient back down to `shape` (the inverse of broadcasting).
    public func sum(toShape target: [Int]) throws -> Tensor {
        if target == shape { return self }
        try checkShape((try? broadcastShape(target, shape, op: "sum(toShape:)")) == shape, "sum(toShape:)",
                       "\(describe(shape)) is not a broadcast of \(describe(target))")
        let out = Tensor(zeros: target, dtype: dtype)
        switch dtype {
        case .float32: accumulate(Float.self, into: out)
        case .float64: accumulate(Double.self, into: out)
        }
        let source = shape
        return Tensor.record(out, "sum(toShape:)", [self], { g in [try g.broadcast(to: source)] })
    }

    /// out[broadcast index] += self[index], for a reduction to a broadcast-compatible shape.
    private func accumulate<T: Real>(_: T.Type, into out: Tensor) {
        let pi = storage.pointer(T.self), po = out.storage.pointer(T.self)
        forEachRow(shape, [contiguousStrides(shape), broadcastStrides(out.shape, to: shape)]) { offsets, n, inner in
            let x = pi + offsets[0], o = po + offsets[1]
            if inner[1] == 0 {
                var s: T = 0
                for i in 0..<n { s += x[i] }
                o[0] += s
            } else {
                for i in 0..<n { o[i] += x[i] }
            }
        }
    }

    /// The tensor stretched to a broadcast-compatible `shape` (a copy).
    public func broadcast(to target: [Int]) throws -> Tensor {
        if target == shape { return self }
        try checkShape((try? broadcastShape(shape, target, op: "broadcast")) == target, "broadcast",
                       "\(describe(shape)) cannot broadcast to \(describe(target))")
        let out = Tensor(shape: target, storage: Storage(dtype: dtype, count: target.reduce(1, *), zeroed: false))
        switch dtype {
        case .float32: expand(Float.self, into: out)
        case .float64: expand(Double.self, into: out)
        }
        let source = shape
        return Tensor.record(out, "broadcast", [self], { g in [try g.sum(toShape: source)] })
    }

    private func expand<T: Real>(_: T.Type, into out: Tensor) {
        let pi = storage.pointer(T.self), po = out.storage.pointer(T.self)
        forEachRow(out.shape, [contiguousStrides(out.shape), broadcastStrides(shape, to: out.shape)]) { offsets, n, inner in
            let o = po + offsets[0], x = pi + offsets[1], s = inner[1]
            for i in 0..<n { o[i] = x[i &* s] }
        }
    }
}

/// Picks `a` where `condition` is non-zero and `b` elsewhere, with broadcasting; the condition
/// gets no gradient. Unlike `condition * a + (1 - condition) * b`, an infinity in the branch not
/// taken does not leak into the result.
public func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    try checkArgument(a.dtype == b.dtype && condition.dtype == a.dtype, "where", "dtypes differ")
    let shape = try broadcastShape(try broadcastShape(condition.shape, a.shape, op: "where"), b.shape, op: "where")
    let mask = try condition.broadcast(to: shape).detach()
    let ea = try a.broadcast(to: shape), eb = try b.broadcast(to: shape)
    let out = Tensor(shape: shape, storage: Storage(dtype: a.dtype, count: shape.reduce(1, *), zeroed: false))
    func select<T: Real>(_: T.Type, _ m: Tensor, _ x: Tensor, _ y: Tensor, _ o: Tensor, invert: Bool = false) {
        let pm = m.storage.pointer(T.self), px = x.storage.pointer(T.self)
        let py = y.storage.pointer(T.self), po = o.storage.pointer(T.self)
        for i in 0..<o.count { po[i] = (pm[i] != 0) != invert ? px[i] : py[i] }
    }
    switch a.dtype {
    case .float32: select(Float.self, mask, ea, eb, out)
    case .float64: select(Double.self, mask, ea, eb, out)
    }
    return Tensor.record(out, "where", [ea, eb], { g in
        let zero = Tensor(zeros: shape, dtype: g.dtype)
        let ga = Tensor(shape: shape, storage: Storage(dtype: g.dtype, count: g.count, zeroed: false))
        let gb = Tensor(shape: shape, storage: Storage(dtype: g.dtype, count: g.count, zeroed: false))
        switch g.dtype {
        case .float32:
            select(Float.self, mask, g, zero, ga); select(Float.self, mask, g, zero, gb, invert: true)
        case .float64:
            select(Double.self, mask, g, zero, ga); select(Double.self, mask, g, zero, gb, invert: true)
        }
        return [ga, gb]
    })
}
