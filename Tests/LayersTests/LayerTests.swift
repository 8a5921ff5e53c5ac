import XCTest
import Engine
@testable import Layers

private func input(_ shape: [Int], seed: UInt64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return Tensor.randn(shape, dtype: .float64, using: &rng)
}

private func assertGradients(_ module: any Module, inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
                             _ forward: ([Tensor]) throws -> Tensor) {
    let parameters = module.namedParameters().map(\.tensor).filter { $0.requiresGrad }
    do {
        let report = try gradientCheck(inputs + parameters) { all in try forward(Array(all.prefix(inputs.count))) }
        XCTAssertLessThanOrEqual(report.maxRelativeError, 1e-6, "\(report)", file: file, line: line)
    } catch {
        XCTFail("\(error)", file: file, line: line)
    }
}

/// Finite-difference checks of every layer, with its parameters, in Float64.
final class LayerGradientTests: XCTestCase {
    var rng = RandomGenerator(seed: 1)

    func testLinear() {
        let layer = Linear(4, 3, dtype: .float64, using: &rng)
        assertGradients(layer, inputs: [input([2, 5, 4], seed: 2)]) { try layer($0[0]) }
        XCTAssertEqual(layer.namedParameters().map(\.name), ["weight", "bias"])
    }

    func testConv2d() {
        let layer = Conv2d(3, 4, kernelSize: 3, stride: 2, padding: 1, dtype: .float64, using: &rng)
        assertGradients(layer, inputs: [input([2, 3, 5, 5], seed: 3)]) { try layer($0[0]) }
    }

    func testNormalizationLayers() {
        let group = GroupNorm(groups: 2, channels: 4, dtype: .float64)
        // Move γ and β off their initial 1 and 0 so their gradients are exercised in general.
        group.weight!.assign(input([4], seed: 4)); group.bias!.assign(input([4], seed: 5))
        assertGradients(group, inputs: [input([2, 4, 3, 3], seed: 6)]) { try group($0[0]) }
        let layer = LayerNorm(6, dtype: .float64)
        layer.weight!.assign(input([6], seed: 7))
        assertGradients(layer, inputs: [input([3, 6], seed: 8)]) { try layer($0[0]) }
        let rms = RMSNorm(6, dtype: .float64)
        rms.weight.assign(input([6], seed: 9))
        assertGradients(rms, inputs: [input([3, 6], seed: 10)]) { try rms($0[0]) }
    }

    func testEmbedding() {
        let table = Embedding(7, 3, dtype: .float64, using: &rng)
        assertGradients(table, inputs: []) { _ in try table([1, 6, 1], shape: [3]) }
    }

    func testSelfAndCrossAttentionWithMasks() {
        let attention = MultiHeadAttention(queryDimension: 8, heads: 2, headDimension: 4, dtype: .float64, using: &rng)
        XCTAssertEqual(attention.namedParameters().map(\.name),
                       ["to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"])
        let causal = AttentionMask(causal: true)
        assertGradients(attention, inputs: [input([2, 3, 8], seed: 11)]) { try attention($0[0], mask: causal) }
        let cross = MultiHeadAttention(queryDimension: 8, contextDimension: 5, heads: 4, headDimension: 2, dtype: .float64, using: &rng)
        let padding = AttentionMask(keyValid: [[true, true, false, false], [true, true, true, true]])
        assertGradients(cross, inputs: [input([2, 3, 8], seed: 12), input([2, 4, 5], seed: 13)]) {
            try cross($0[0], context: $0[1], mask: padding)
        }
    }

    func testTransformerLayerCausalWithPadding() {
        let layer = TransformerLayer(8, heads: 2, dtype: .float64, using: &rng)
        XCTAssertEqual(layer.namedParameters().map(\.name).filter { $0.hasPrefix("mlp") },
                       ["mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"])
        let mask = AttentionMask(causal: true, keyValid: [[true, true, false], [true, true, true]])
        assertGradients(layer, inputs: [input([2, 3, 8], seed: 16)]) { try layer($0[0], mask: mask) }
    }

    func testLoRA() throws {
        let base = Linear(5, 4, dtype: .float64, using: &rng)
        let lora = LoRALinear(base: base, rank: 2, alpha: 4, using: &rng)
        lora.up.assign(input([4, 2], seed: 14))   // a trained adapter, not the zero init
        XCTAssertEqual(lora.trainableParameters().map(\.name), ["lora_down.weight", "lora_up.weight"])
        assertGradients(lora, inputs: [input([3, 5], seed: 15)]) { try lora($0[0]) }
        XCTAssertNil(base.weight.grad, "the base weight is frozen")
    }

    /// A gated adapter: the gradient reaches A and B only through the open rows.
    func testGatedLoRA() throws {
        let base = Linear(5, 4, dtype: .float64, using: &rng)
        let lora = LoRALinear(base: base, rank: 2, alpha: 4, using: &rng)
        lora.up.assign(input([4, 2], seed: 17))
        lora.gate = AdapterGate(open: [true, false, true])
        assertGradients(lora, inputs: [input([3, 2, 5], seed: 18)]) { try lora($0[0]) }
    }
}

final class LoRATests: XCTestCase {
    func testZeroInitializedAdapterEqualsBase() throws {
        var rng = RandomGenerator(seed: 2)
        let base = Linear(6, 3, dtype: .float64, using: &rng)
        let x = input([4, 6], seed: 3)
        let before = try base(x).values
        let lora = LoRALinear(base: base, rank: 2, using: &rng)
        XCTAssertEqual(try lora(x).values, before)
    }

    /// A gate leaves closed rows exactly at the base layer's output and open rows at the adapted
    /// one; with every row closed no update is computed; a gate of the wrong size is an error
    /// naming both sizes, and a gated adapter refuses to merge.
    func testGatedAdapterActsOnOpenRowsOnly() throws {
        var rng = RandomGenerator(seed: 7)
        let base = Linear(6, 3, dtype: .float64, using: &rng)
        let x = input([3, 2, 6], seed: 8)
        let baseOutput = try base(x).values
        let lora = LoRALinear(base: base, rank: 2, alpha: 8, using: &rng)
        lora.up.assign(input([3, 2], seed: 9))
        let adapted = try lora(x).values
        let rowSize = 2 * 3
        lora.gate = AdapterGate(open: [true, false, true])
        let gated = try lora(x).values
        for row in 0..<3 {
            let expected = row == 1 ? baseOutput : adapted
            for i in row * rowSize ..< (row + 1) * rowSize { XCTAssertEqual(gated[i], expected[i], accuracy: 1e-12, "row \(row)") }
        }
        XCTAssertNotEqual(Array(adapted[0..<rowSize]), Array(baseOutput[0..<rowSize]), "the adapter changes open rows")
        XCTAssertEqual(Array(gated[rowSize ..< 2 * rowSize]), Array(baseOutput[rowSize ..< 2 * rowSize]), "closed rows are bitwise the base output")
        lora.gate!.open = [false, false, false]
        XCTAssertEqual(try lora(x).values, baseOutput)
        lora.gate!.open = nil
        XCTAssertEqual(try lora(x).values, adapted)
        lora.gate!.open = [true, false]
        XCTAssertThrowsError(try lora(x)) { XCTAssertTrue("\($0)".contains("[3, 2, 6]") && "\($0)".contains("2 rows"), "\($0)") }
        XCTAssertThrowsError(try lora.merge()) { XCTAssertTrue("\($0)".contains("gated"), "\($0)") }
    }

    /// Inside `withMergedAdapters`, a pass that records nothing gives the adapted output from the
    /// merged weight, without touching the base weight; a recording pass still trains A and B; a
    /// gated adapter keeps its own path; afterwards no merged weight is left.
    func testMergedAdaptersForPassesWithoutGradients() throws {
        var rng = RandomGenerator(seed: 10)
        let attention = MultiHeadAttention(queryDimension: 6, heads: 2, headDimension: 3, dtype: .float64, using: &rng)
        let baseWeight = (attention.toQ as! Linear).weight, original = baseWeight.values
        let parameters = try applyLoRA(to: attention, rank: 2, alpha: 8, using: &rng)
        for (i, p) in parameters.enumerated() where p.name.hasSuffix("lora_up.weight") { p.tensor.assign(input(p.tensor.shape, seed: 20 + UInt64(i))) }
        let lora = attention.toQ as! LoRALinear
        let x = input([2, 4, 6], seed: 12)
        let adapted = try withNoGrad { try attention(x).values }
        try withMergedAdapters(in: attention) {
            XCTAssertNotNil(lora.mergedWeight)
            let merged = try withNoGrad { try attention(x).values }
            for (a, b) in zip(merged, adapted) { XCTAssertEqual(a, b, accuracy: 1e-12) }
            // The merged weight was taken at the start: a changed adapter shows only in recording passes.
            let up = lora.up.values
            lora.up.assign(try lora.up * 2)
            XCTAssertEqual(try withNoGrad { try attention(x).values }, merged)
            XCTAssertNotEqual(try attention(x).values, merged)
            try attention(x).sum().backward()
            XCTAssertNotNil(lora.down.grad, "a recording pass trains the adapter")
            lora.up.assign(try Tensor(up, shape: lora.up.shape, dtype: .float64))
        }
        XCTAssertNil(lora.mergedWeight)
        XCTAssertEqual(baseWeight.values, original, "the base weight is never written")
        lora.gate = AdapterGate(open: [true, false])
        try withMergedAdapters(in: attention) { XCTAssertNil(lora.mergedWeight, "a gated adapter is not merged") }
    }

    func testMergeAndUnmergeGiveTheSameOutputs() throws {
        var rng = RandomGenerator(seed: 4)
        let base = Linear(6, 3, dtype: .float64, using: &rng)
        let original = base.weight.values
        let lora = LoRALinear(base: base, rank: 2, alpha: 8, using: &rng)
        lora.up.assign(input([3, 2], seed: 5))
        let x = input([4, 6], seed: 6)
        let adapted = try lora(x).values
        // By hand: (α/r)·x·Aᵀ·Bᵀ added to the base output.
        let manual = try base(x) + matmul(matmul(x, lora.down, transposeB: true), lora.up, transposeB: true) * 4
        for (a, b) in zip(adapted, manual.values) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        try lora.merge()
        for (a, b) in zip(try lora(x).values, adapted) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        try lora.unmerge()
        for (a, b) in zip(base.weight.values, original) { XCTAssertEqual(a, b, accuracy: 1e-12) }
    }
}
