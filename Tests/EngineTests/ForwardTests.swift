import XCTest
@testable import Engine

/// Forward values against hand-computed cases and naive reference loops.
final class ForwardTests: XCTestCase {
    func testBroadcastArithmeticByHand() throws {
        let a = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        let b = try Tensor([10, 20, 30], shape: [3])
        XCTAssertEqual(try (a + b).values, [11, 22, 33, 14, 25, 36])
        let column = try Tensor([2, 4], shape: [2, 1])
        XCTAssertEqual(try (a / column).values, [0.5, 1, 1.5, 1, 1.25, 1.5])
        XCTAssertEqual(try (a - b).shape, [2, 3])
        XCTAssertEqual(try maximum(a, try Tensor([3], shape: [1])).values, [3, 3, 3, 4, 5, 6])
    }

    func testReductionsByHand() throws {
        let x = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], dtype: .float64)
        XCTAssertEqual(try x.sum(axes: [0]).values, [5, 7, 9])
        XCTAssertEqual(try x.sum(axes: [1], keepDims: true).shape, [2, 1])
        XCTAssertEqual(try x.mean(axes: [1]).values, [2, 5])
        assertClose(try x.variance(axes: [1]).values, [2.0 / 3, 2.0 / 3])
        assertClose(try x.variance(axes: [1], unbiased: true).values, [1, 1])
        XCTAssertEqual(try x.max(axis: 0).values, [4, 5, 6])
        XCTAssertEqual(try x.argmax(axis: 1), [2, 2])
        assertClose(try x.logSumExp(axis: 1).values, [Foundation.log(exp(1.0) + exp(2) + exp(3)), Foundation.log(exp(4.0) + exp(5) + exp(6))])
    }

    func testSoftmaxByHandAndStableForLargeLogits() throws {
        let x = try Tensor([0, Foundation.log(3.0), 1000, 1000], shape: [2, 2], dtype: .float64)
        assertClose(try x.softmax().values, [0.25, 0.75, 0.5, 0.5])
        assertClose(try x.logSoftmax().values, [Foundation.log(0.25), Foundation.log(0.75), Foundation.log(0.5), Foundation.log(0.5)])
    }

    func testMatmulAgainstNaiveLoops() throws {
        let a = randomTensor([3, 4, 5], seed: 1), b = randomTensor([3, 5, 2], seed: 2)
        let c = try matmul(a, b)
        for n in 0..<3 { for i in 0..<4 { for j in 0..<2 {
            var s = 0.0
            for k in 0..<5 { s += a[n, i, k] * b[n, k, j] }
            XCTAssertEqual(c[n, i, j], s, accuracy: 1e-12)
        } } }
        let ct = try matmul(try a.transposed(), try b.transposed(), transposeA: true, transposeB: true)
        assertClose(ct.values, c.values)
    }

    /// conv2d equals the definition y[n,o,i,j] = b[o] + Σ w[o,c,ki,kj]·x[n,c,i·s−p+ki, j·s−p+kj].
    func testConv2dAgainstDirectDefinition() throws {
        for (stride, padding, k) in [(1, 1, 3), (2, 1, 3), (2, 0, 2), (1, 0, 1)] {
            let x = randomTensor([2, 3, 6, 5], seed: 3), w = randomTensor([4, 3, k, k], seed: 4), b = randomTensor([4], seed: 5)
            let y = try conv2d(x, weight: w, bias: b, stride: stride, padding: padding)
            let ho = (6 + 2 * padding - k) / stride + 1, wo = (5 + 2 * padding - k) / stride + 1
            XCTAssertEqual(y.shape, [2, 4, ho, wo])
            for n in 0..<2 { for o in 0..<4 { for i in 0..<ho { for j in 0..<wo {
                var s = b[o]
                for c in 0..<3 { for ki in 0..<k { for kj in 0..<k {
                    let iy = i * stride - padding + ki, ix = j * stride - padding + kj
                    if iy >= 0 && iy < 6 && ix >= 0 && ix < 5 { s += w[o, c, ki, kj] * x[n, c, iy, ix] }
                } } }
                XCTAssertEqual(y[n, o, i, j], s, accuracy: 1e-12)
            } } } }
        }
    }

    func testGroupNormAgainstDefinition() throws {
        let x = randomTensor([2, 4, 3, 3], seed: 6), gamma = randomTensor([4], seed: 7), beta = randomTensor([4], seed: 8)
        let y = try groupNorm(x, groups: 2, weight: gamma, bias: beta, eps: 1e-5)
        for n in 0..<2 { for g in 0..<2 {
            var values: [Double] = []
            for c in (2 * g)..<(2 * g + 2) { for i in 0..<3 { for j in 0..<3 { values.append(x[n, c, i, j]) } } }
            let mean = values.reduce(0, +) / 18
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 18
            for c in (2 * g)..<(2 * g + 2) { for i in 0..<3 { for j in 0..<3 {
                let expected = (x[n, c, i, j] - mean) / (variance + 1e-5).squareRoot() * gamma[c] + beta[c]
                XCTAssertEqual(y[n, c, i, j], expected, accuracy: 1e-12)
            } } }
        } }
    }

    func testLayerNormAndRMSNormByHand() throws {
        let x = try Tensor([1, 2, 3, 4], shape: [1, 4], dtype: .float64)
        // mean 2.5, variance 1.25
        let r = 1 / (1.25 + 1e-5).squareRoot()
        assertClose(try layerNorm(x, weight: nil, bias: nil).values, [-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r])
        let rms = 1 / (7.5 + 1e-6).squareRoot()
        assertClose(try rmsNorm(x, weight: nil).values, [rms, 2 * rms, 3 * rms, 4 * rms])
    }

    /// Winograd F(2×2, 3×3) equals the im2col convolution — odd and even planes, with and without
    /// bias, both precisions — and so do the gradients it gives x (through the adjoint) and the
    /// kernel (the transforms read backwards), frozen kernel or trained.
    func testWinogradConvolutionEqualsIm2col() throws {
        defer { Conv2dSettings.winograd = true }
        func geometry(_ n: Int, _ c: Int, _ h: Int, _ w: Int, _ o: Int) -> ConvGeometry {
            ConvGeometry(n: n, c: c, h: h, w: w, o: o, kh: 3, kw: 3, stride: 1, padding: 1, ho: h, wo: w)
        }
        XCTAssertFalse(geometry(32, 3, 4, 4, 8).prefersWinograd, "channels in eights")
        XCTAssertTrue(geometry(1, 8, 4, 4, 8).prefersWinograd, "one image")
        XCTAssertFalse(geometry(64, 8, 3, 5, 8).prefersWinograd, "planes of 15 pixels")
        // All take Winograd: the no-grad forward, and recorded, dx and (trained) dW.
        for (shape, o, dtype) in [([18, 8, 5, 6], 8, DType.float64), ([16, 8, 8, 8], 16, .float64), ([32, 16, 4, 4], 8, .float32),
                                  ([19, 24, 2, 9], 16, .float64), ([16, 8, 6, 6], 8, .float64), ([4, 8, 6, 6], 8, .float64)] {
            XCTAssertTrue(geometry(shape[0], shape[1], shape[2], shape[3], o).prefersWinograd)
            let x = randomTensor(shape, seed: 50, dtype: dtype), w = randomTensor([o, shape[1], 3, 3], seed: 51, dtype: dtype)
            let b = randomTensor([o], seed: 52, dtype: dtype), seed = randomTensor([shape[0], o, shape[2], shape[3]], seed: 53, dtype: dtype)
            func run(_ winograd: Bool, bias: Tensor?, trainsKernel: Bool) throws -> (y: [Double], dx: [Double], dw: [Double]?) {
                Conv2dSettings.winograd = winograd
                let y = try withNoGrad { try conv2d(x, weight: w, bias: bias, padding: 1) }.values
                let input = x.detach(), kernel = w.detach()
                input.requiresGrad = true
                kernel.requiresGrad = trainsKernel
                try conv2d(input, weight: kernel, bias: bias, padding: 1).backward(gradient: seed)
                return (y, input.grad!.values, kernel.grad?.values)
            }
            for bias in [b, nil] {
                for trainsKernel in [false, true] {
                    let fast = try run(true, bias: bias, trainsKernel: trainsKernel)
                    let reference = try run(false, bias: bias, trainsKernel: trainsKernel)
                    let tolerance = dtype == .float64 ? 1e-12 : 2e-5
                    assertClose(fast.y, reference.y, tolerance: tolerance)
                    assertClose(fast.dx, reference.dx, tolerance: tolerance)
                    XCTAssertEqual(fast.dw == nil, !trainsKernel)
                    if let dw = fast.dw, let expected = reference.dw {
                        assertClose(dw, expected, tolerance: dtype == .float64 ? 1e-12 : 1e-4)
                    }
                }
            }
        }
    }

    /// Inside `withFixedKernels` a frozen kernel's Winograd transform is kept from call to call (so a
    /// change to the kernel there is not seen — the scope's contract, broken here on purpose), a
    /// kernel that records gradients is transformed at every call, and the kept transforms are
    /// dropped when the scope ends.
    func testFixedKernelsAreKeptOnlyInsideTheScopeAndOnlyForFrozenWeights() throws {
        let x = randomTensor([16, 8, 8, 8], seed: 60), w = randomTensor([8, 8, 3, 3], seed: 61)
        func convolve(_ weight: Tensor) throws -> [Double] { try withNoGrad { try conv2d(x, weight: weight, bias: nil, padding: 1) }.values }
        let before = try convolve(w)
        try withFixedKernels {
            let first = try convolve(w)
            XCTAssertEqual(first, before)
            XCTAssertEqual(FixedKernels.transformed.count, 1)
            w.storage.pointer(Double.self)[0] += 1
            XCTAssertEqual(try convolve(w), first, "the kept transform")
            let trained = w.detach()
            trained.requiresGrad = true
            XCTAssertNotEqual(try conv2d(x, weight: trained, bias: nil, padding: 1).values, first, "recorded: transformed afresh")
            XCTAssertEqual(FixedKernels.transformed.count, 1)
        }
        XCTAssertTrue(FixedKernels.transformed.isEmpty)
        XCTAssertNotEqual(try convolve(w), before, "outside the scope the change is seen")
    }

    func testAttentionAgainstNaiveLoopsWithCausalMask() throws {
        let q = randomTensor([1, 2, 3, 4], seed: 9), k = randomTensor([1, 2, 3, 4], seed: 10), v = randomTensor([1, 2, 3, 2], seed: 11)
        let y = try scaledDotProductAttention(query: q, key: k, value: v, mask: AttentionMask(causal: true))
        for h in 0..<2 { for i in 0..<3 {
            var scores: [Double] = []
            for j in 0...i {
                var s = 0.0
                for d in 0..<4 { s += q[0, h, i, d] * k[0, h, j, d] }
                scores.append(s / 2)
            }
            let peak = scores.max()!
            let weights = scores.map { exp($0 - peak) }
            let total = weights.reduce(0, +)
            for e in 0..<2 {
                let expected = (0...i).map { weights[$0] / total * v[0, h, $0, e] }.reduce(0, +)
                XCTAssertEqual(y[0, h, i, e], expected, accuracy: 1e-12)
            }
        } }
    }

    func testLossesByHand() throws {
        let logits = try Tensor([0, 0, Foundation.log(3.0), 0], shape: [2, 2], dtype: .float64)
        // Row 0: uniform → −log ½; row 1: p(class 0) = 3/4.
        assertClose(try crossEntropy(logits: logits, targets: [1, 0]).values, [(Foundation.log(2) - Foundation.log(0.75)) / 2])
        assertClose(try crossEntropy(logits: logits, targets: [1, -1], ignoreIndex: -1).values, [Foundation.log(2.0)])
        let x = try Tensor([0, 2], shape: [2], dtype: .float64), t = try Tensor([1, 0], shape: [2], dtype: .float64)
        let expected = (Foundation.log(2.0) + Foundation.log(1 + exp(2.0))) / 2
        assertClose(try binaryCrossEntropyWithLogits(x, t).values, [expected])
        assertClose(try mseLoss(x, t).values, [2.5])
    }

    func testResamplingByHand() throws {
        let x = try Tensor([1, 2, 3, 4], shape: [1, 1, 2, 2])
        XCTAssertEqual(try upsampleNearest(x).values, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4])
        XCTAssertEqual(try avgPool2d(x).values, [2.5])
    }

    func testShapeOpsByHand() throws {
        let x = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(try x.transposed().values, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(try x.slice(axis: 1, 1..<3).values, [2, 3, 5, 6])
        XCTAssertEqual(try concat([x, x], axis: 0).shape, [4, 3])
        XCTAssertEqual(try x.indexSelect(axis: 0, [1, 1]).values, [4, 5, 6, 4, 5, 6])
        XCTAssertEqual(try x.gather(axis: 1, index: [2, 0], indexShape: [2, 1]).values, [3, 4])
        XCTAssertEqual(try x.reshaped([3, -1]).shape, [3, 2])
    }

    func testActivationsByHand() throws {
        let x = try Tensor([-1, 0, 2], shape: [3], dtype: .float64)
        assertClose(sigmoid(x).values, [1 / (1 + exp(1.0)), 0.5, 1 / (1 + exp(-2.0))])
        assertClose(silu(x).values, [-1 / (1 + exp(1.0)), 0, 2 / (1 + exp(-2.0))])
        assertClose(relu(x).values, [0, 0, 2])
        assertClose(gelu(x).values, [-1 * 0.5 * (1 + erf(-1 / 2.0.squareRoot())), 0, 2 * 0.5 * (1 + erf(2 / 2.0.squareRoot()))])
        assertClose(softplus(x).values, [Foundation.log(1 + exp(-1.0)), Foundation.log(2.0), Foundation.log(1 + exp(2.0))])
        assertClose(logSigmoid(try Tensor([-800], shape: [1], dtype: .float64)).values, [-800])
        assertClose(clamp(x, min: -0.5, max: 1).values, [-0.5, 0, 1])
    }
}

final class FastExpTests: XCTestCase {
    /// The vectorizable Float exponential stays within 2 ulp of libm over the range softmax and
    /// sigmoid use, and is exact at 0.
    func testFastExpMatchesLibm() {
        XCTAssertEqual(Float.fastExp(0), 1)
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let exact = Foundation.exp(Double(x))
            let relative = Float(Swift.abs(Double(Float.fastExp(x)) - exact) / exact)
            worst = Swift.max(worst, relative)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 2.5e-7, "worst relative error")
        XCTAssertEqual(Float.fastExp(-1000), Float.fastExp(-87.3))
        XCTAssertTrue(Float.fastExp(1000).isFinite)
    }

    /// The vectorizable Float erf (A&S 7.1.26, computed in Float) stays within 5e-7 of libm's
    /// Double erf, is odd and saturates at ±1; GELU on it is within 5e-7·max(1, |x|) of the exact
    /// form — about what Float rounding of 1 + erf costs anyway (an ulp of 1 is 1.2e-7).
    func testFastErfMatchesLibm() {
        var worst = 0.0, worstGELU = 0.0
        var x: Float = -9
        while x < 9 {
            worst = Swift.max(worst, Swift.abs(Double(Float.fastErf(x)) - Foundation.erf(Double(x))))
            XCTAssertEqual(Float.fastErf(-x), -Float.fastErf(x))
            let exact = Double(x) * 0.5 * (1 + Foundation.erf(Double(x) / 2.0.squareRoot()))
            worstGELU = Swift.max(worstGELU, Swift.abs(Double(GELUMap().value(x)) - exact) / Swift.max(1, Swift.abs(Double(x))))
            x += 0.00731
        }
        XCTAssertLessThan(worst, 5e-7, "worst absolute error")
        XCTAssertLessThan(worstGELU, 5e-7, "worst GELU error")
        XCTAssertEqual(Float.fastErf(20), 1)
        XCTAssertEqual(Float.fastErf(-20), -1)
        XCTAssertEqual(Float.fastErf(0), 0)
    }
}
