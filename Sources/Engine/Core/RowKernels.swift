/// Small row kernels shared by softmax, attention and the norms. Floating-point reductions do not
/// vectorize on their own (the compiler may not reorder the additions), so they keep four
/// independent partial results; the exponentials are stored in a separate, vectorizable pass.

/// Σ x[i] for i < n.
@inline(__always)
func rowSum<T: Real>(_ x: UnsafePointer<T>, _ n: Int) -> T {
    var a: T = 0, b: T = 0, c: T = 0, d: T = 0
    var i = 0
    while i &+ 4 <= n { a += x[i]; b += x[i &+ 1]; c += x[i &+ 2]; d += x[i &+ 3]; i &+= 4 }
    while i < n { a += x[i]; i &+= 1 }
    return (a + b) + (c + d)
}

/// Σ x[i]·y[i] for i < n.
@inline(__always)
func rowDot<T: Real>(_ x: UnsafePointer<T>, _ y: UnsafePointer<T>, _ n: Int) -> T {
    var a: T = 0, b: T = 0, c: T = 0, d: T = 0
    var i = 0
    while i &+ 4 <= n {
        a += x[i] * y[i]; b += x[i &+ 1] * y[i &+ 1]; c += x[i &+ 2] * y[i &+ 2]; d += x[i &+ 3] * y[i &+ 3]
        i &+= 4
    }
    while i < n { a += x[i] * y[i]; i &+= 1 }
    return (a + b) + (c + d)
}

/// max x[i] for i < n (−∞ when n = 0).
@inline(__always)
func rowMax<T: Real>(_ x: UnsafePointer<T>, _ n: Int) -> T {
    var a = -T.infinity, b = -T.infinity, c = -T.infinity, d = -T.infinity
    var i = 0
    while i &+ 4 <= n {
        a = Swift.max(a, x[i]); b = Swift.max(b, x[i &+ 1]); c = Swift.max(c, x[i &+ 2]); d = Swift.max(d, x[i &+ 3])
        i &+= 4
    }
    while i < n { a = Swift.max(a, x[i]); i &+= 1 }
    return Swift.max(Swift.max(a, b), Swift.max(c, d))
}

/// Softmax of a contiguous row in place.
@inline(__always)
func softmaxRow<T: Real>(_ row: UnsafeMutablePointer<T>, _ n: Int) {
    let peak = rowMax(row, n)
    for j in 0..<n { row[j] = T.fastExp(row[j] - peak) }
    let inverse = 1 / rowSum(row, n)
    for j in 0..<n { row[j] *= inverse }
}

/// Σ (x[i] − center)² for i < n.
@inline(__always)
func rowSquaredDeviation<T: Real>(_ x: UnsafePointer<T>, _ n: Int, from center: T) -> T {
    var a: T = 0, b: T = 0, c: T = 0, d: T = 0
    var i = 0
    while i &+ 4 <= n {
        let (u, v, w, z) = (x[i] - center, x[i &+ 1] - center, x[i &+ 2] - center, x[i &+ 3] - center)
        a += u * u; b += v * v; c += w * w; d += z * z
        i &+= 4
    }
    while i < n { let u = x[i] - center; a += u * u; i &+= 1 }
    return (a + b) + (c + d)
}

/// Eight consecutive elements as one vector, at any alignment — for loops the compiler will not
/// vectorize on its own (many streams it cannot prove apart).
@inline(__always) func load8<T: Real>(_ p: UnsafePointer<T>) -> SIMD8<T> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<T>.self)
}

@inline(__always) func load8<T: Real>(_ p: UnsafeMutablePointer<T>) -> SIMD8<T> { load8(UnsafePointer(p)) }

@inline(__always) func store8<T: Real>(_ value: SIMD8<T>, _ p: UnsafeMutablePointer<T>) {
    UnsafeMutableRawPointer(p).storeBytes(of: value, as: SIMD8<T>.self)
}
