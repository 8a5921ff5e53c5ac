import XCTest
@testable import Engine

/// Finite-difference gradient checks, in Float64, for every differentiable op.
final class GradientTests: XCTestCase {
    func testBroadcastingArithmetic() {
        let a = randomTensor([2, 3, 4], seed: 1), b = randomTensor([3, 1], seed: 2)
        let positive = randomTensor([1, 4], seed: 3) * 0.1 + 2
        assertGradients([a, b]) { try $0[0] + $0[1] }
        assertGradients([a, b]) { try $0[0] - $0[1] }
        assertGradients([a, b]) { try $0[0] * $0[1] }
        assertGradients([a, positive]) { try $0[0] / $0[1] }
    }

    func testMaximumMinimumAndWhere() throws {
        let a = randomTensor([3, 5], seed: 4), b = randomTensor([3, 5], seed: 5)
        assertGradients([a, b]) { try maximum($0[0], $0[1]) }
        assertGradients([a, b]) { try minimum($0[0], $0[1]) }
        let condition = try Tensor([1, 0, 1, 1, 0], shape: [1, 5], dtype: .float64)
        assertGradients([a, b]) { try `where`(condition, $0[0], $0[1]) }
    }

    func testUnaryMathAndActivations() {
        let x = randomTensor([4, 6], seed: 6)
        let positive = abs(randomTensor([4, 6], seed: 7)) + 0.5
        assertGradients([positive]) { log($0[0]) }
        assertGradients([positive]) { sqrt($0[0]) }
        assertGradients([positive]) { pow($0[0], 1.7) }
        for (name, f) in [("exp", exp), ("square", square), ("sigmoid", sigmoid), ("tanh", tanh), ("silu", silu),
                          ("gelu", gelu), ("softplus", softplus), ("logSigmoid", logSigmoid), ("neg", neg)] as [(String, (Tensor) -> Tensor)] {
            let report = try? gradientCheck([x]) { f($0[0]) }
            XCTAssertLessThanOrEqual(report?.maxRelativeError ?? 1, gradientTolerance, name)
        }
        // Kinked functions are checked away from their kinks (|x| ≥ 0.1 here).
        let awayFromZero = try! Tensor(x.values.map { $0 + ($0 >= 0 ? 0.1 : -0.1) }, shape: x.shape, dtype: .float64)
        assertGradients([awayFromZero]) { abs($0[0]) }
        assertGradients([awayFromZero]) { relu($0[0]) }
        assertGradients([awayFromZero]) { clamp($0[0], min: -0.5, max: 0.7) }
        assertGradients([x]) { $0[0] * 3 + 1 }
        assertGradients([x]) { 2 - $0[0] / 4 }
    }

    /// The fused GEGLU equals a · GELU(b) of the two halves, and its gradient checks.
    func testGEGLUMatchesTheSplitFormAndHasCorrectGradients() throws {
        let h = randomTensor([2, 3, 8], seed: 40)
        let halves = try h.split(sizes: [4, 4], axis: -1)
        let expected = try halves[0] * gelu(halves[1])
        let fused = try geglu(h)
        XCTAssertEqual(fused.shape, [2, 3, 4])
        for (a, b) in zip(fused.values, expected.values) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        assertGradients([h]) { try geglu($0[0]) }
        XCTAssertThrowsError(try geglu(randomTensor([2, 3], seed: 41)))
    }

    func testReductions() {
        let x = randomTensor([2, 3, 4], seed: 8)
        assertGradients([x]) { try $0[0].sum(axes: [1]) }
        assertGradients([x]) { try $0[0].sum(axes: [0, 2], keepDims: true) }
        assertGradients([x]) { try $0[0].mean(axes: [2]) }
        assertGradients([x]) { try $0[0].variance(axes: [1, 2]) }
        assertGradients([x]) { try $0[0].variance(axes: [0], unbiased: true) }
        assertGradients([x]) { try $0[0].max(axis: 1) }
        assertGradients([x]) { try $0[0].logSumExp(axis: -1) }
        assertGradients([x]) { try $0[0].sum() }
        assertGradients([x]) { try $0[0].broadcast(to: [5, 2, 3, 4]) }
    }

    func testSoftmax() {
        let x = randomTensor([3, 4, 5], seed: 9)
        assertGradients([x]) { try $0[0].softmax(axis: -1) }
        assertGradients([x]) { try $0[0].softmax(axis: 1) }
        assertGradients([x]) { try $0[0].logSoftmax(axis: -1) }
        assertGradients([x]) { try $0[0].logSoftmax(axis: 0) }
    }

    func testMatmulEveryTransposeAndBatching() {
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                let a = randomTensor(transposeA ? [2, 4, 3] : [2, 3, 4], seed: 10)
                let b = randomTensor(transposeB ? [2, 5, 4] : [2, 4, 5], seed: 11)
                let shared = randomTensor(transposeB ? [5, 4] : [4, 5], seed: 12)
                assertGradients([a, b]) { try matmul($0[0], $0[1], transposeA: transposeA, transposeB: transposeB) }
                assertGradients([a, shared]) { try matmul($0[0], $0[1], transposeA: transposeA, transposeB: transposeB) }
            }
        }
    }

    func testShapeOps() throws {
        let x = randomTensor([2, 3, 4], seed: 13), y = randomTensor([2, 2, 4], seed: 14)
        assertGradients([x]) { try $0[0].reshaped([4, -1]) }
        assertGradients([x]) { try $0[0].permuted([2, 0, 1]) }
        assertGradients([x]) { try $0[0].transposed(0, 2) }
        assertGradients([x]) { try $0[0].slice(axis: 1, 1..<3) }
        assertGradients([x, y]) { try concat([$0[0], $0[1]], axis: 1) }
        assertGradients([x]) { try concat($0[0].split(sizes: [1, 3], axis: 2).reversed(), axis: 2) }
        assertGradients([x]) { try $0[0].indexSelect(axis: 1, [2, 0, 2, 1]) }
        assertGradients([x]) { try $0[0].gather(axis: 2, index: [0, 3, 3, 1, 2, 0, 1, 1, 0, 2, 2, 2], indexShape: [2, 3, 2]) }
        let table = randomTensor([6, 3], seed: 15)
        assertGradients([table]) { try embedding($0[0], ids: [1, 5, 1, 0], shape: [2, 2]) }
    }

    func testConv2dStrideAndPadding() {
        for (stride, padding, kernel) in [(1, 1, 3), (2, 1, 3), (1, 0, 1), (2, 0, 2), (1, 2, 3)] {
            let x = randomTensor([2, 3, 5, 6], seed: 16)
            let w = randomTensor([4, 3, kernel, kernel], seed: 17, scale: 0.5)
            let b = randomTensor([4], seed: 18)
            assertGradients([x, w, b]) { try conv2d($0[0], weight: $0[1], bias: $0[2], stride: stride, padding: padding) }
        }
        let x = randomTensor([1, 2, 4, 4], seed: 19), w = randomTensor([3, 2, 3, 3], seed: 20)
        assertGradients([x, w]) { try conv2d($0[0], weight: $0[1], bias: nil, padding: 1) }
        // A frozen kernel (LoRA training): dx alone, without the column matrix that dW needs.
        for (stride, padding) in [(1, 1), (1, 0), (2, 1)] {
            let frozen = randomTensor([3, 2, 3, 3], seed: 21)
            assertGradients([x]) { try conv2d($0[0], weight: frozen, bias: nil, stride: stride, padding: padding) }
        }
    }

    /// The Winograd path (3×3, stride 1, 16 images and 512 output pixels: taken even by a lone call): forward, dx by
    /// the adjoint and dW by the transposed transforms, against finite differences — an odd plane
    /// width, so the last tile column lies half outside.
    func testConv2dWinogradGradients() {
        XCTAssertTrue(ConvGeometry(n: 16, c: 8, h: 4, w: 9, o: 8, kh: 3, kw: 3, stride: 1, padding: 1, ho: 4, wo: 9).prefersWinograd)
        let x = randomTensor([16, 8, 4, 9], seed: 22), w = randomTensor([8, 8, 3, 3], seed: 23, scale: 0.5), b = randomTensor([8], seed: 24)
        assertGradients([x, w, b]) { try conv2d($0[0], weight: $0[1], bias: $0[2], padding: 1) }
    }

    /// linear(x, W, b) = x·Wᵀ + b in one op: by hand, and its gradients with and without a bias.
    func testLinear() throws {
        let x = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], dtype: .float64)
        let w = try Tensor([1, 0, -1, 2, 1, 0], shape: [2, 3], dtype: .float64), b = try Tensor([0.5, -1], shape: [2], dtype: .float64)
        // Rows (1, 2, 3) and (4, 5, 6) against W's rows (1, 0, −1) and (2, 1, 0), plus b = (0.5, −1).
        let expected: [Double] = [-1.5, 3, -1.5, 12]
        XCTAssertEqual(try linear(x, weight: w, bias: b).values, expected)
        let xs = randomTensor([5, 4], seed: 60), ws = randomTensor([3, 4], seed: 61), bs = randomTensor([3], seed: 62)
        assertGradients([xs, ws, bs]) { try linear($0[0], weight: $0[1], bias: $0[2]) }
        assertGradients([xs, ws]) { try linear($0[0], weight: $0[1], bias: nil) }
    }

    /// The low-rank linear map y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ by hand, and its gradients in x, W, b, A
    /// and B — with a frozen base (LoRA's case: dx, dA, dB only) and without a bias.
    func testLowRankLinear() throws {
        // x = (1, 2), W = I, b = (½, −½): 1.5, 1.5; h = x·Aᵀ = 3 with A = (1, 1); s·h·Bᵀ = ½·3·(2, 3).
        let x = try Tensor([1, 2], shape: [1, 2], dtype: .float64), w = try Tensor([1, 0, 0, 1], shape: [2, 2], dtype: .float64)
        let b = try Tensor([0.5, -0.5], shape: [2], dtype: .float64)
        let a = try Tensor([1, 1], shape: [1, 2], dtype: .float64), u = try Tensor([2, 3], shape: [2, 1], dtype: .float64)
        XCTAssertEqual(try lowRankLinear(x, weight: w, bias: b, down: a, up: u, scale: 0.5).values, [4.5, 6])
        let xs = randomTensor([5, 4], seed: 63), ws = randomTensor([3, 4], seed: 64), bs = randomTensor([3], seed: 65)
        let down = randomTensor([2, 4], seed: 66), up = randomTensor([3, 2], seed: 67)
        assertGradients([xs, ws, bs, down, up]) { try lowRankLinear($0[0], weight: $0[1], bias: $0[2], down: $0[3], up: $0[4], scale: 0.7) }
        assertGradients([xs, down, up]) { try lowRankLinear($0[0], weight: ws, bias: bs, down: $0[1], up: $0[2], scale: 2) }
        assertGradients([xs, ws, down, up]) { try lowRankLinear($0[0], weight: $0[1], bias: nil, down: $0[2], up: $0[3], scale: 0.25) }
        XCTAssertThrowsError(try lowRankLinear(xs, weight: ws, bias: nil, down: randomTensor([2, 3], seed: 68), up: up, scale: 1)) {
            XCTAssertTrue("\($0)".contains("down [2, 3]"), "\($0)")
        }
    }

    func testResampling() {
        let x = randomTensor([2, 3, 4, 6], seed: 21)
        assertGradients([x]) { try upsampleNearest($0[0], scale: 2) }
        assertGradients([x]) { try avgPool2d($0[0], kernel: 2) }
    }

    func testNormalizations() {
        let x = randomTensor([2, 6, 3, 3], seed: 22)
        let gamma = randomTensor([6], seed: 23), beta = randomTensor([6], seed: 24)
        assertGradients([x, gamma, beta]) { try groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2]) }
        assertGradients([x]) { try groupNorm($0[0], groups: 2, weight: nil, bias: nil) }
        // Frozen γ and β (LoRA training): dx is right and no parameter gradient is made.
        let frozenGamma = randomTensor([6], seed: 26), frozenBeta = randomTensor([6], seed: 27)
        assertGradients([x]) { try groupNorm($0[0], groups: 3, weight: frozenGamma, bias: frozenBeta) }
        let frozenTokens = randomTensor([2, 5, 6], seed: 28)
        assertGradients([frozenTokens]) { try layerNorm($0[0], weight: frozenGamma, bias: frozenBeta) }
        XCTAssertNil(frozenGamma.grad)
        XCTAssertNil(frozenBeta.grad)
        let tokens = randomTensor([2, 5, 8], seed: 25)
        let g8 = randomTensor([8], seed: 26), b8 = randomTensor([8], seed: 27)
        assertGradients([tokens, g8, b8]) { try layerNorm($0[0], weight: $0[1], bias: $0[2]) }
        assertGradients([tokens, g8]) { try rmsNorm($0[0], weight: $0[1]) }
    }

    func testAttentionWithMasks() {
        let q = randomTensor([2, 2, 4, 3], seed: 28), k = randomTensor([2, 2, 5, 3], seed: 29)
        let v = randomTensor([2, 2, 5, 2], seed: 30)
        assertGradients([q, k, v]) { try scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2]) }
        let padding = AttentionMask(keyValid: [[true, true, true, false, false], [true, true, true, true, true]])
        assertGradients([q, k, v]) { try scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: padding) }
        let selfQ = randomTensor([1, 2, 4, 3], seed: 31), selfK = randomTensor([1, 2, 4, 3], seed: 32)
        let selfV = randomTensor([1, 2, 4, 3], seed: 33)
        let causal = AttentionMask(causal: true, keyValid: [[true, true, true, false]])
        assertGradients([selfQ, selfK, selfV]) {
            try scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: causal)
        }
    }

    func testLosses() throws {
        let p = randomTensor([4, 3], seed: 34), t = randomTensor([4, 3], seed: 35)
        assertGradients([p]) { try mseLoss($0[0], t) }
        assertGradients([p]) { try mseLoss($0[0], t, reduction: .none) }
        assertGradients([p]) { try crossEntropy(logits: $0[0], targets: [2, 0, 1, 1]) }
        assertGradients([p]) { try crossEntropy(logits: $0[0], targets: [2, -100, 1, 0], ignoreIndex: -100, reduction: .none) }
        let labels = try Tensor([1, 0, 0.3, 1, 0, 1, 0, 1, 0.5, 0, 1, 1], shape: [4, 3], dtype: .float64)
        assertGradients([p]) { try binaryCrossEntropyWithLogits($0[0], labels) }
    }

    func testDropoutGradientUsesTheSameMask() {
        let x = randomTensor([3, 7], seed: 36)
        // Each evaluation draws the same mask from a fresh generator with one seed.
        assertGradients([x]) { inputs in
            var rng = RandomGenerator(seed: 99)
            return try dropout(inputs[0], p: 0.3, training: true, using: &rng)
        }
    }

    /// The checks have teeth: an op whose backward is off by 1% fails.
    func testGradientCheckCatchesAOnePercentError() throws {
        let x = randomTensor([3, 4], seed: 37)
        let report = try gradientCheck([x]) { inputs in
            let input = inputs[0]
            let output = withNoGrad { exp(input) }
            return Tensor.custom("wrongExp", inputs: [input], output: output) { g in [try g * output * 1.01] }
        }
        XCTAssertGreaterThan(report.maxRelativeError, 1e-3)
        let correct = try gradientCheck([x]) { inputs in
            let input = inputs[0]
            let output = withNoGrad { exp(input) }
            return Tensor.custom("exp", inputs: [input], output: output) { g in [try g * output] }
        }
        XCTAssertLessThanOrEqual(correct.maxRelativeError, gradientTolerance)
    }
}

/// The interleaved-heads attention equals splitting heads, attending, and merging them back.
final class AttentionLayoutTests: XCTestCase {
    func testInterleavedHeadsMatchHeadsFirstAndPassGradientCheck() throws {
        let q = randomTensor([2, 3, 8], seed: 40), k = randomTensor([2, 5, 8], seed: 41), v = randomTensor([2, 5, 6], seed: 42)
        let mask = AttentionMask(keyValid: [[true, true, true, true, false], [true, false, true, true, true]])
        let fused = try multiHeadAttention(query: q, key: k, value: v, heads: 2, mask: mask)
        func split(_ t: Tensor) throws -> Tensor { try t.reshaped([2, t.shape[1], 2, -1]).permuted([0, 2, 1, 3]) }
        let reference = try scaledDotProductAttention(query: split(q), key: split(k), value: split(v), mask: mask)
            .permuted([0, 2, 1, 3]).reshaped([2, 3, 6])
        assertClose(fused.values, reference.values, tolerance: 1e-12)
        assertGradients([q, k, v]) { try multiHeadAttention(query: $0[0], key: $0[1], value: $0[2], heads: 2, mask: mask) }
    }
}
