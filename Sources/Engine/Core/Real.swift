import CBLAS
import Foundation

/// The element types the engine computes in: `Float` for work, `Double` for checking gradients.
/// Kernels are written once, generic over `Real`, and specialized for both at compile time.
public protocol Real: BinaryFloatingPoint, SIMDScalar, Sendable, Codable {
    static var dtype: DType { get }
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func tanh(_ x: Self) -> Self
    static func erf(_ x: Self) -> Self
    static func pow(_ x: Self, _ y: Self) -> Self
    static func log1p(_ x: Self) -> Self
    /// eˣ for the hot loops (softmax, sigmoid, SiLU): a branch-free polynomial that vectorizes
    /// for Float (within 2 ulp), libm's `exp` for Double, which is used for checking.
    static func fastExp(_ x: Self) -> Self
    /// erf(x) for the hot loops (GELU): Abramowitz & Stegun 7.1.26 on `fastExp`, branch-free so
    /// that it vectorizes, within 5e-7 of erf for Float (1.5e-7 for the formula, the rest Float
    /// rounding); libm's `erf` for Double.
    static func fastErf(_ x: Self) -> Self
    /// C ← α·op(A)·op(B) + β·C for row-major matrices (CBLAS `sgemm` / `dgemm`), on the calling
    /// thread. Use `gemm(...)`, which splits large products across the engine's threads.
    static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Self,
                     a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
                     beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
}

extension Float: Real {
    public static var dtype: DType { .float32 }
    @inline(__always) public static func exp(_ x: Float) -> Float { Foundation.expf(x) }
    @inline(__always) public static func log(_ x: Float) -> Float { Foundation.logf(x) }
    @inline(__always) public static func tanh(_ x: Float) -> Float { Foundation.tanhf(x) }
    @inline(__always) public static func erf(_ x: Float) -> Float { Foundation.erff(x) }
    @inline(__always) public static func pow(_ x: Float, _ y: Float) -> Float { Foundation.powf(x, y) }
    @inline(__always) public static func log1p(_ x: Float) -> Float { Foundation.log1pf(x) }

    /// Cody–Waite reduction x = k·ln2 + r, |r| ≤ ln2/2, and Cephes' degree-7 polynomial for eʳ;
    /// 2ᵏ is built in the exponent bits. Inputs are clamped to [−87.3, 88.3], so that 2ᵏ and eˣ stay normal and finite.
    /// The polynomial's steps are fused multiply-adds (`addingProduct`): Swift does not contract
    /// a·b + c on its own, and fused, a vectorized loop of it runs 1.4× faster.
    @inline(__always) public static func fastExp(_ x: Float) -> Float {
        let x = Swift.min(Swift.max(x, -87.3), 88.3)
        // Adding 1.5·2²³ rounds x·log2(e) to an integer held in the low mantissa bits.
        let shifted = x * 1.442_695_04 + 12_582_912
        let k = shifted - 12_582_912
        let r = x.addingProduct(k, -0.693_359_375).addingProduct(k, 2.121_944_4e-4)
        var p: Float = 1.987_569_15e-4
        p = Float(1.398_199_95e-3).addingProduct(p, r)
        p = Float(8.333_451_9e-3).addingProduct(p, r)
        p = Float(4.166_579_59e-2).addingProduct(p, r)
        p = Float(1.666_666_55e-1).addingProduct(p, r)
        p = Float(5.000_000_12e-1).addingProduct(p, r)
        p = (r + 1).addingProduct(p * r, r)
        let exponent = (Int32(bitPattern: shifted.bitPattern) &- 0x4B40_0000 &+ 127) << 23
        return p * Float(bitPattern: UInt32(bitPattern: exponent))
    }

    /// Abramowitz & Stegun 7.1.26 ("Handbook of Mathematical Functions", 1964): for x ≥ 0, with
    /// t = 1/(1 + p·x),  erf(x) ≈ 1 − t·(a₁ + t·(a₂ + t·(a₃ + t·(a₄ + t·a₅))))·e^(−x²), absolute
    /// error ≤ 1.5e-7; odd in x (the sign is copied over, no branch).
    @inline(__always) public static func fastErf(_ x: Float) -> Float {
        let a = Swift.abs(x)
        let t = 1 / (1 + 0.327_591_1 * a)
        var p: Float = 1.061_405_429
        p = Float(-1.453_152_027).addingProduct(p, t)
        p = Float(1.421_413_741).addingProduct(p, t)
        p = Float(-0.284_496_736).addingProduct(p, t)
        p = Float(0.254_829_592).addingProduct(p, t)
        let r = Float(1).addingProduct(-p * t, fastExp(-a * a))
        return Float(signOf: x, magnitudeOf: r)
    }
    public static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        FlopCounter.timed {
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        }
    }
}

extension Double: Real {
    public static var dtype: DType { .float64 }
    @inline(__always) public static func exp(_ x: Double) -> Double { Foundation.exp(x) }
    @inline(__always) public static func log(_ x: Double) -> Double { Foundation.log(x) }
    @inline(__always) public static func tanh(_ x: Double) -> Double { Foundation.tanh(x) }
    @inline(__always) public static func erf(_ x: Double) -> Double { Foundation.erf(x) }
    @inline(__always) public static func pow(_ x: Double, _ y: Double) -> Double { Foundation.pow(x, y) }
    @inline(__always) public static func log1p(_ x: Double) -> Double { Foundation.log1p(x) }
    @inline(__always) public static func fastExp(_ x: Double) -> Double { Foundation.exp(x) }
    @inline(__always) public static func fastErf(_ x: Double) -> Double { Foundation.erf(x) }
    public static func blasGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double,
                            a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
                            beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// The element type of a tensor, chosen at run time so that a model can be moved to `float64`
/// for gradient checks without making every layer generic.
public enum DType: String, Sendable, Codable, CaseIterable {
    case float32, float64

    /// Bytes per element.
    public var size: Int { self == .float32 ? 4 : 8 }
}

/// C ← α·op(A)·op(B) + β·C, split into column (or row) blocks across `Threads.count` threads, each
/// running single-threaded BLAS. The engine owns all threads: OpenBLAS's own workers spin after
/// each call and would compete with the engine's parallel loops for the same cores.
@inline(__always)
func gemm<T: Real>(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: T,
                   a: UnsafePointer<T>, lda: Int, b: UnsafePointer<T>, ldb: Int,
                   beta: T, c: UnsafeMutablePointer<T>, ldc: Int) {
    let threads = Threads.count
    // Below ~4 MFLOP a split costs more than it saves.
    if threads <= 1 || m * n * k < (1 << 21) || (m < 64 && n < 64) {
        T.blasGemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                   beta: beta, c: c, ldc: ldc)
        return
    }
    if n >= m {
        // Column blocks of C come from column blocks of op(B); keep widths multiples of 16.
        let blocks = min(threads, max(n / 16, 1))
        parallelFor(blocks, costPerItem: parallelGrain) { range in
            for block in range {
                let j0 = (n / 16) * block / blocks * 16, j1 = block == blocks - 1 ? n : (n / 16) * (block + 1) / blocks * 16
                T.blasGemm(transA: transA, transB: transB, m: m, n: j1 - j0, k: k, alpha: alpha, a: a, lda: lda,
                           b: transB ? b + j0 * ldb : b + j0, ldb: ldb, beta: beta, c: c + j0, ldc: ldc)
            }
        }
    } else {
        let blocks = min(threads, max(m / 16, 1))
        parallelFor(blocks, costPerItem: parallelGrain) { range in
            for block in range {
                let i0 = (m / 16) * block / blocks * 16, i1 = block == blocks - 1 ? m : (m / 16) * (block + 1) / blocks * 16
                T.blasGemm(transA: transA, transB: transB, m: i1 - i0, n: n, k: k, alpha: alpha,
                           a: transA ? a + i0 : a + i0 * lda, lda: lda, b: b, ldb: ldb, beta: beta,
                           c: c + i0 * ldc, ldc: ldc)
            }
        }
    }
}
