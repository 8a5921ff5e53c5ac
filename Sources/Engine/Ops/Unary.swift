/// Pointwise unary ops (math functions and activations), each a value and a derivative given the
/// input `x` and output `y`, so backward needs no recomputation.

/// A pointwise function with optional parameters (a clamp's bounds, a power's exponent).
protocol UnaryMap {
    var name: String { get }
    func value<T: Real>(_ x: T) -> T
    func derivative<T: Real>(_ x: T, _ y: T) -> T
}

/// y = F(x), recording dy/dx · g for backward.
func unaryOp<F: UnaryMap>(_ f: F, _ x: Tensor) -> Tensor {
    let out = Tensor(shape: x.shape, storage: Storage(dtype: x.dtype, count: x.count, zeroed: false))
    func forward<T: Real>(_: T.Type) {
        let px = x.storage.pointer(T.self), py = out.storage.pointer(T.self)
        parallelFor(x.count, costPerItem: 8) { range in
            for i in range { py[i] = f.value(px[i]) }
        }
    }
    switch x.dtype {
    case .float32: forward(Float.self)
    case .float64: forward(Double.self)
    }
    return Tensor.record(out, f.name, [x], { g in
        let gx = Tensor(shape: x.shape, storage: Storage(dtype: x.dtype, count: x.count, zeroed: false))
        func backward<T: Real>(_: T.Type) {
            let px = x.storage.pointer(T.self), py = out.storage.pointer(T.self)
            let pg = g.storage.pointer(T.self), po = gx.storage.pointer(T.self)
            parallelFor(x.count, costPerItem: 8) { range in
                for i in range { po[i] = pg[i] * f.derivative(px[i], py[i]) }
            }
        }
        switch x.dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        return [gx]
    })
}

struct NegMap: UnaryMap {
    let name = "neg"
    @inline(__always) func value<T: Real>(_ x: T) -> T { -x }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { -1 }
}

struct AffineMap: UnaryMap {
    let name = "affine"
    let scale: Double, shift: Double
    @inline(__always) func value<T: Real>(_ x: T) -> T { T(scale) * x + T(shift) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { T(scale) }
}

struct ExpMap: UnaryMap {
    let name = "exp"
    @inline(__always) func value<T: Real>(_ x: T) -> T { T.fastExp(x) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { y }
}

struct LogMap: UnaryMap {
    let name = "log"
    @inline(__always) func value<T: Real>(_ x: T) -> T { T.log(x) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { 1 / x }
}

struct SqrtMap: UnaryMap {
    let name = "sqrt"
    @inline(__always) func value<T: Real>(_ x: T) -> T { x.squareRoot() }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { 1 / (2 * y) }
}

struct SquareMap: UnaryMap {
    let name = "square"
    @inline(__always) func value<T: Real>(_ x: T) -> T { x * x }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { 2 * x }
}

struct PowMap: UnaryMap {
    let name = "pow"
    let exponent: Double
    @inline(__always) func value<T: Real>(_ x: T) -> T { T.pow(x, T(exponent)) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { T(exponent) * T.pow(x, T(exponent - 1)) }
}

struct AbsMap: UnaryMap {
    let name = "abs"
    @inline(__always) func value<T: Real>(_ x: T) -> T { Swift.abs(x) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { x > 0 ? 1 : (x < 0 ? -1 : 0) }
}

/// Clamp to [low, high]; the gradient passes only strictly inside.
struct ClampMap: UnaryMap {
    let name = "clamp"
    let low: Double, high: Double
    @inline(__always) func value<T: Real>(_ x: T) -> T { Swift.min(Swift.max(x, T(low)), T(high)) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { x > T(low) && x < T(high) ? 1 : 0 }
}

struct ReLUMap: UnaryMap {
    let name = "relu"
    @inline(__always) func value<T: Real>(_ x: T) -> T { x > 0 ? x : 0 }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { x > 0 ? 1 : 0 }
}

struct SigmoidMap: UnaryMap {
    let name = "sigmoid"
    @inline(__always) func value<T: Real>(_ x: T) -> T { stableSigmoid(x) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { y * (1 - y) }
}

struct TanhMap: UnaryMap {
    let name = "tanh"
    @inline(__always) func value<T: Real>(_ x: T) -> T { T.tanh(x) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { 1 - y * y }
}

/// SiLU (swish): x·σ(x).
struct SiLUMap: UnaryMap {
    let name = "silu"
    @inline(__always) func value<T: Real>(_ x: T) -> T { x * stableSigmoid(x) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T {
        let s = stableSigmoid(x)
        return s * (1 + x * (1 - s))
    }
}

/// GELU, exact form x·Φ(x) (PyTorch's default, `approximate="none"`), on `fastErf` and
/// `fastExp` (exact for Double; for Float within a few 1e-7 and vectorized — libm's `erff` made
/// GEGLU an eighth of a sampling epoch).
struct GELUMap: UnaryMap {
    let name = "gelu"
    @inline(__always) func value<T: Real>(_ x: T) -> T { x * T(0.5) * (1 + T.fastErf(x * T(0.70710678118654752440))) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { valueAndDerivative(x).derivative }
    /// GELU(x) and its derivative from one erf and one exp (backward needs both).
    @inline(__always) func valueAndDerivative<T: Real>(_ x: T) -> (value: T, derivative: T) {
        let cdf = T(0.5) * (1 + T.fastErf(x * T(0.70710678118654752440)))
        let pdf = T.fastExp(-T(0.5) * x * x) * T(0.39894228040143267794)
        return (x * cdf, cdf + x * pdf)
    }
}

/// softplus(x) = log(1 + eˣ), computed without overflow.
struct SoftplusMap: UnaryMap {
    let name = "softplus"
    @inline(__always) func value<T: Real>(_ x: T) -> T { Swift.max(x, 0) + T.log1p(T.exp(-Swift.abs(x))) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { stableSigmoid(x) }
}

/// log σ(x) = −softplus(−x).
struct LogSigmoidMap: UnaryMap {
    let name = "logSigmoid"
    @inline(__always) func value<T: Real>(_ x: T) -> T { Swift.min(x, 0) - T.log1p(T.exp(-Swift.abs(x))) }
    @inline(__always) func derivative<T: Real>(_ x: T, _ y: T) -> T { 1 - stableSigmoid(x) }
}

/// σ(x) without overflow for large |x|.
@inline(__always)
func stableSigmoid<T: Real>(_ x: T) -> T {
    // e^(−|x|) never overflows; the select keeps the loop branch-free.
    let e = T.fastExp(-Swift.abs(x))
    let positive = 1 / (1 + e)
    return x >= 0 ? positive : e * positive
}

public func neg(_ x: Tensor) -> Tensor { unaryOp(NegMap(), x) }
public prefix func - (x: Tensor) -> Tensor { unaryOp(NegMap(), x) }
public func exp(_ x: Tensor) -> Tensor { unaryOp(ExpMap(), x) }
public func log(_ x: Tensor) -> Tensor { unaryOp(LogMap(), x) }
public func sqrt(_ x: Tensor) -> Tensor { unaryOp(SqrtMap(), x) }
public func square(_ x: Tensor) -> Tensor { unaryOp(SquareMap(), x) }
/// xᵖ for a constant exponent p.
public func pow(_ x: Tensor, _ exponent: Double) -> Tensor { unaryOp(PowMap(exponent: exponent), x) }
public func abs(_ x: Tensor) -> Tensor { unaryOp(AbsMap(), x) }
public func clamp(_ x: Tensor, min low: Double, max high: Double) -> Tensor { unaryOp(ClampMap(low: low, high: high), x) }
public func relu(_ x: Tensor) -> Tensor { unaryOp(ReLUMap(), x) }
public func sigmoid(_ x: Tensor) -> Tensor { unaryOp(SigmoidMap(), x) }
public func tanh(_ x: Tensor) -> Tensor { unaryOp(TanhMap(), x) }
public func silu(_ x: Tensor) -> Tensor { unaryOp(SiLUMap(), x) }
public func gelu(_ x: Tensor) -> Tensor { unaryOp(GELUMap(), x) }
public func softplus(_ x: Tensor) -> Tensor { unaryOp(SoftplusMap(), x) }
public func logSigmoid(_ x: Tensor) -> Tensor { unaryOp(LogSigmoidMap(), x) }

// Arithmetic with a constant.
public func * (x: Tensor, s: Double) -> Tensor { unaryOp(AffineMap(scale: s, shift: 0), x) }
public func * (s: Double, x: Tensor) -> Tensor { unaryOp(AffineMap(scale: s, shift: 0), x) }
public func / (x: Tensor, s: Double) -> Tensor { unaryOp(AffineMap(scale: 1 / s, shift: 0), x) }
public func + (x: Tensor, s: Double) -> Tensor { unaryOp(AffineMap(scale: 1, shift: s), x) }
public func + (s: Double, x: Tensor) -> Tensor { unaryOp(AffineMap(scale: 1, shift: s), x) }
public func - (x: Tensor, s: Double) -> Tensor { unaryOp(AffineMap(scale: 1, shift: -s), x) }
public func - (s: Double, x: Tensor) -> Tensor { unaryOp(AffineMap(scale: -1, shift: s), x) }
