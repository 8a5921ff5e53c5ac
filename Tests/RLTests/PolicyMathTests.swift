import Foundation
import XCTest
import Engine
import Layers
@testable import RL

/// The closed forms of DDPO's pieces on hand-computed numbers.
final class PolicyMathTests: XCTestCase {
    /// Ratios 1.5, 0.5, 1.1 with advantages 1, 1, −2 and ε = 0.2:
    /// max(−Aρ, −A·clip(ρ)) = max(−1.5, −1.2), max(−0.5, −0.8), max(2.2, 2.2) → loss (−1.2 − 0.5 + 2.2)/3.
    func testPPOClipLossClipFractionAndApproxKLByHand() throws {
        let old = [-3.0, -2.0, 0.5]
        let logRatios = [log(1.5), log(0.5), log(1.1)]
        let logProb = try Tensor(zip(old, logRatios).map { $0 + $1 }, shape: [3], dtype: .float64)
        logProb.requiresGrad = true
        let result = try PolicyLoss.ppo(logProb: logProb, oldLogProb: old, advantages: [1, 1, -2], clipRange: 0.2)
        XCTAssertEqual(result.loss.item, 0.5 / 3, accuracy: 1e-12)
        XCTAssertEqual(result.clipFraction, 2.0 / 3)
        XCTAssertEqual(result.approxKL, 0.5 * (log(1.5) * log(1.5) + log(0.5) * log(0.5) + log(1.1) * log(1.1)) / 3, accuracy: 1e-12)
        XCTAssertEqual(result.meanRatio, (1.5 + 0.5 + 1.1) / 3, accuracy: 1e-12)
        try result.loss.backward()
        // The clipped branch (sample 0) passes no gradient; d(−Aρ)/d log π = −Aρ for the others.
        let grad = logProb.grad!.values
        XCTAssertEqual(grad[0], 0, accuracy: 1e-12)
        XCTAssertEqual(grad[1], -0.5 / 3, accuracy: 1e-12)
        XCTAssertEqual(grad[2], 2.2 / 3, accuracy: 1e-12)
    }

    func testReinforceLossAndGradient() throws {
        let logProb = try Tensor([-1, -2], shape: [2], dtype: .float64)
        logProb.requiresGrad = true
        let result = try PolicyLoss.reinforce(logProb: logProb, oldLogProb: [-1, -2], advantages: [2, -1], clipRange: 0.2)
        XCTAssertEqual(result.loss.item, -(2 * -1 + -1 * -2) / 2)
        try result.loss.backward()
        XCTAssertEqual(logProb.grad!.values, [-1, 0.5])
        let report = try gradientCheck([try Tensor([-1.3, 0.2, 2], shape: [3], dtype: .float64)]) { inputs in
            try PolicyLoss.ppo(logProb: inputs[0], oldLogProb: [-1.2, 0.1, 2.5], advantages: [1, -1, 0.5], clipRange: 0.2).loss
        }
        XCTAssertLessThanOrEqual(report.maxRelativeError, 1e-6, "\(report)")
    }

    func testPolicyLossRejectsMismatchedLengths() throws {
        let logProb = try Tensor([0, 0], shape: [2], dtype: .float64)
        XCTAssertThrowsError(try PolicyLoss.ppo(logProb: logProb, oldLogProb: [0], advantages: [0, 0], clipRange: 0.2))
    }

    /// Buffer 3, minimum 2: a prompt with fewer than 2 rewards uses the batch's statistics.
    func testPerPromptStatTrackerByHand() {
        var tracker = PerPromptStatTracker(bufferSize: 3, minCount: 2)
        let first = tracker.update(prompts: ["a", "a", "b"], rewards: [1, 3, 5])
        let batchStd = (8.0 / 3).squareRoot()
        XCTAssertEqual(first[0], -1, accuracy: 1e-5)
        XCTAssertEqual(first[1], 1, accuracy: 1e-5)
        XCTAssertEqual(first[2], 2 / batchStd, accuracy: 1e-5)
        let second = tracker.update(prompts: ["a", "a"], rewards: [5, 7])
        XCTAssertEqual(tracker.buffers["a"], [3, 5, 7], "only the last 3 are kept")
        XCTAssertEqual(second[0], 0, accuracy: 1e-9)
        XCTAssertEqual(second[1], 2 / batchStd, accuracy: 1e-5)
    }

    func testGroupAdvantagesByHand() {
        let advantages = groupAdvantages(rewards: [1, 3, 10, 10, 20], groups: [0, 0, 1, 1, 1])
        let std1 = (200.0 / 9).squareRoot()   // of (10, 10, 20): mean 40/3
        let expected = [-1, 1, (10 - 40.0 / 3) / std1, (10 - 40.0 / 3) / std1, (20 - 40.0 / 3) / std1]
        for (got, want) in zip(advantages, expected) { XCTAssertEqual(got, want, accuracy: 1e-5) }
        XCTAssertEqual(clipAdvantages([-7, 0.5, 9], maximum: 5), [-5, 0.5, 5])
    }

    /// RLOO: each reward minus the mean of the others in its group; a lone sample gets 0.
    func testLeaveOneOutAdvantagesByHand() {
        let advantages = leaveOneOutAdvantages(rewards: [1, 0, 0, 1, 5, 0.5, 2], groups: [0, 0, 0, 0, 1, 2, 2])
        let expected = [1 - 1.0 / 3, -2.0 / 3, -2.0 / 3, 1 - 1.0 / 3, 0, -1.5, 1.5]
        for (got, want) in zip(advantages, expected) { XCTAssertEqual(got, want, accuracy: 1e-12) }
        // Unlike group standardization, a near-tie stays near zero.
        XCTAssertEqual(leaveOneOutAdvantages(rewards: [1, 1.001], groups: [0, 0])[1], 0.001, accuracy: 1e-12)
        XCTAssertEqual(groupAdvantages(rewards: [1, 1.001], groups: [0, 0])[1], 1, accuracy: 1e-2)
    }

    /// ‖μ − μ_ref‖² / (2σ²) per sample; 0 for equal means; its gradient checks.
    func testStepKLByHandAndGradient() throws {
        let mean = try Tensor([1, 2, 3, 4], shape: [2, 2], dtype: .float64)
        let reference = try Tensor([1, 0, 3, 5], shape: [2, 2], dtype: .float64)
        XCTAssertEqual(try stepKL(mean: mean, referenceMean: reference, sigma: 0.5).values, [4 / 0.5, 1 / 0.5])
        XCTAssertEqual(try stepKL(mean: mean, referenceMean: mean, sigma: 0.1).values, [0, 0])
        XCTAssertThrowsError(try stepKL(mean: mean, referenceMean: reference, sigma: 0))
        let report = try gradientCheck([mean.copy()]) { try stepKL(mean: $0[0], referenceMean: reference, sigma: 0.3) }
        XCTAssertLessThanOrEqual(report.maxRelativeError, 1e-6, "\(report)")
        let summary = KLSummary(perStep: [[1, 2], [3, 6]])
        XCTAssertEqual(summary.perSample, [4, 8])
        XCTAssertEqual(summary.byStep, [1.5, 4.5])
        XCTAssertEqual(summary.mean, 6)
        XCTAssertEqual(summary.max, 8)
        XCTAssertEqual(summary.rootMean, 6.0.squareRoot())
    }

    /// LoRA on every attention projection: only adapters train, the output starts unchanged, and
    /// merging back restores the original names with the adapted function.
    func testApplyAndRemoveLoRAOnAttention() throws {
        var rng = RandomGenerator(seed: 4)
        let attention = MultiHeadAttention(queryDimension: 8, contextDimension: 6, heads: 2, headDimension: 4, using: &rng)
        let names = attention.namedParameters().map(\.name)
        let x = Tensor.randn([2, 3, 8], using: &rng), context = Tensor.randn([2, 5, 6], using: &rng)
        let before = try attention(x, context: context).values
        let trainable = try applyLoRA(to: attention, rank: 2, using: &rng)
        XCTAssertEqual(trainable.count, 8)
        XCTAssertTrue(trainable.allSatisfy { $0.name.contains("lora_") })
        XCTAssertEqual(try attention(x, context: context).values, before)
        for p in trainable where p.name.contains("lora_up") { p.tensor.assign(Tensor.randn(p.tensor.shape, std: 0.1, using: &rng)) }
        let adapted = try attention(x, context: context).values
        XCTAssertNotEqual(adapted, before)
        try mergeAndRemoveLoRA(from: attention)
        XCTAssertEqual(attention.namedParameters().map(\.name), names)
        for (a, b) in zip(try attention(x, context: context).values, adapted) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        XCTAssertThrowsError(try applyLoRA(to: attention, rank: 0, using: &rng))
    }

    /// LoRA on a transformer layer's MLP as well as its attention: both adapt, and merging
    /// restores the names.
    func testLoRAOnFeedForwardProjections() throws {
        var rng = RandomGenerator(seed: 5)
        let layer = TransformerLayer(8, heads: 2, using: &rng)
        let names = layer.namedParameters().map(\.name)
        let onlyAttention = try applyLoRA(to: TransformerLayer(8, heads: 2, using: &rng), rank: 2, using: &rng)
        XCTAssertEqual(onlyAttention.count, 8)
        let trainable = try applyLoRA(to: layer, rank: 2, targets: [.attention, .feedForward], using: &rng)
        XCTAssertEqual(trainable.count, 12)
        XCTAssertTrue(trainable.contains { $0.name == "mlp.fc1.lora_down.weight" })
        for p in trainable where p.name.contains("lora_up") { p.tensor.assign(Tensor.randn(p.tensor.shape, std: 0.1, using: &rng)) }
        let x = Tensor.randn([2, 3, 8], using: &rng)
        let adapted = try layer(x).values
        try mergeAndRemoveLoRA(from: layer)
        XCTAssertEqual(layer.namedParameters().map(\.name), names)
        for (a, b) in zip(try layer(x).values, adapted) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }
}
