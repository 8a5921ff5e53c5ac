import Foundation
import XCTest
import Diffusion
import Engine
import Rewards
@testable import RL

/// DiffusionNFT: the optimality probabilities and the negative-aware loss by hand, its gradient
/// against finite differences and its minimizers, and that an update on the policy's own samples
/// pulls it toward the positives and away from the negatives — and holds it where samples are
/// average.
final class DiffusionNFTTests: XCTestCase {
    /// r = ½ + ½·clip(A / 2, −1, 1).
    func testOptimalityProbabilitiesByHand() {
        XCTAssertEqual(optimalityProbabilities(advantages: [-4, -1, 0, 1, 4], scale: 2), [0, 0.25, 0.5, 0.75, 1])
    }

    /// Two rows of two values, β = ½: prediction p, old o, target ε, r = (¾, 0).
    /// Row 0: ε⁺ = ½o + ½p = (0.2, −0.05), ε⁺ − ε = (−0.3, 0.45), mean square 0.14625;
    /// ε⁻ = 1.5o − ½p = (0, 0.05), ε⁻ − ε = (−0.5, 0.55), mean square 0.27625;
    /// L₀ = (¾·0.14625 + ¼·0.27625) / ½ = 0.3575.
    /// Row 1: ε⁻ = (0.35, 0.5), ε⁻ − ε = (0.35, −0.5), mean square 0.18625; L₁ = 0.3725.
    /// ∂ΣL/∂p = (2β·(p − o) + 2(2r − 1)(o − ε)) / 2 = ((−0.1, 0.2), (−0.35, 0.5)); finite differences agree.
    func testLossAndGradientByHand() throws {
        let p = [0.3, -0.1, 0.5, 0.2], o = [0.1, 0.0, 0.4, 0.4], e = [0.5, -0.5, 0.0, 1.0]
        func loss(_ values: [Double]) throws -> Tensor {
            try negativeAwareLoss(prediction: Tensor(values, shape: [2, 2], dtype: .float64), old: Tensor(o, shape: [2, 2], dtype: .float64),
                                  target: Tensor(e, shape: [2, 2], dtype: .float64), optimality: [0.75, 0], beta: 0.5)
        }
        let prediction = try Tensor(p, shape: [2, 2], dtype: .float64)
        prediction.requiresGrad = true
        let rows = try negativeAwareLoss(prediction: prediction, old: Tensor(o, shape: [2, 2], dtype: .float64),
                                         target: Tensor(e, shape: [2, 2], dtype: .float64), optimality: [0.75, 0], beta: 0.5)
        XCTAssertEqual(rows.shape, [2])
        XCTAssertEqual(rows.values[0], 0.3575, accuracy: 1e-12)
        XCTAssertEqual(rows.values[1], 0.3725, accuracy: 1e-12)
        try rows.sum().backward()
        let expected = [-0.1, 0.2, -0.35, 0.5]
        let h = 1e-6
        for i in 0..<4 {
            XCTAssertEqual(prediction.grad!.values[i], expected[i], accuracy: 1e-12)
            var up = p, down = p
            up[i] += h
            down[i] -= h
            let difference = (try loss(up).sum().item - loss(down).sum().item) / (2 * h)
            XCTAssertEqual(difference, prediction.grad!.values[i], accuracy: 1e-7)
        }
        XCTAssertThrowsError(try negativeAwareLoss(prediction: prediction, old: Tensor(o, shape: [4], dtype: .float64),
                                                   target: Tensor(e, shape: [2, 2], dtype: .float64), optimality: [1, 1], beta: 1)) {
            XCTAssertTrue("\($0)".contains("[4]") && "\($0)".contains("[2, 2]"), "\($0)")
        }
        XCTAssertThrowsError(try negativeAwareLoss(prediction: prediction, old: prediction, target: prediction, optimality: [1, 1], beta: 0)) {
            XCTAssertTrue("\($0)".contains("β"), "\($0)")
        }
    }

    /// The loss is smallest at ε_θ = ε_old + (2r − 1)(ε − ε_old)/β: the target itself for a pure
    /// positive at β = 1, its mirror image in the old prediction for a pure negative, the old
    /// prediction for r = ½ — where the gradient is exactly zero.
    func testMinimizers() throws {
        let o = [0.2, -0.4], e = [1.0, 0.6]
        for (r, beta) in [(1.0, 1.0), (0.0, 1.0), (0.5, 1.0), (0.8, 2.0)] {
            let minimizer = zip(o, e).map { $0 + (2 * r - 1) * ($1 - $0) / beta }
            let prediction = try Tensor(minimizer, shape: [1, 2], dtype: .float64)
            prediction.requiresGrad = true
            try negativeAwareLoss(prediction: prediction, old: Tensor(o, shape: [1, 2], dtype: .float64),
                                  target: Tensor(e, shape: [1, 2], dtype: .float64), optimality: [r], beta: beta).sum().backward()
            for g in prediction.grad!.values { XCTAssertEqual(g, 0, accuracy: 1e-12, "r \(r), β \(beta)") }
        }
    }

    static func tinyNFTConfig() -> FineTuningConfig {
        var config = FineTuningTrainerTests.tinyConfig()
        config.objective = "diffusionNFT"
        config.diffusionNFT.timestepsPerSample = 8
        config.diffusionNFT.captionDropout = 0
        config.trainBatch = 4
        config.learningRate = 1e-3
        config.weightDecay = 0
        config.evaluation.prompts = 0
        config.epochs = 1
        config.rewards = RewardComposition(weights: ["fixed": 1])
        return config
    }

    func trainer(_ config: FineTuningConfig) throws -> FineTuningTrainer {
        try FineTuningTrainer.scratch(config, label: "nft")
    }

    /// One positive (A = +5, r = 1) among average samples: after an update its conditional
    /// denoising loss falls, more than the other prompt's samples'; one negative (A = −5, r = 0):
    /// its loss rises, more than theirs — on noise the update was not trained on. (Sample 1 shares
    /// sample 0's caption, and moves with it.)
    func testAnUpdatePullsTowardAPositiveAndAwayFromANegative() throws {
        var config = Self.tinyNFTConfig()
        config.innerEpochs = 4
        for sign in [1.0, -1.0] {
            let trainer = try trainer(config)
            var rng = trainer.epochRNG(0)
            let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
            let before = try trainer.perSampleDenoisingLoss(trajectories, guidance: 1)
            let figures = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], advantages: [5 * sign, 0, 0, 0], rng: &rng)
            let after = try trainer.perSampleDenoisingLoss(trajectories, guidance: 1)
            XCTAssertEqual(figures["negative_share"], sign > 0 ? 0 : 0.25)
            XCTAssertEqual(figures["optimality_mean"], sign > 0 ? 0.625 : 0.375)
            XCTAssertTrue(figures["loss"]!.isFinite && figures["grad_norm"]! > 1e-4, "\(figures)")
            let change = zip(after, before).map { $0 / $1 - 1 }
            if sign > 0 {
                XCTAssertLessThan(change[0], 0, "relative changes of the denoising loss \(change)")
                XCTAssertLessThan(change[0], change[2...].min()!, "relative changes \(change)")
            } else {
                XCTAssertGreaterThan(change[0], 0, "relative changes of the denoising loss \(change)")
                XCTAssertGreaterThan(change[0], change[2...].max()!, "relative changes \(change)")
            }
        }
    }

    /// Samples that are all average for their prompt (A = 0, r = ½) give no gradient at the old
    /// policy (up to rounding: the old prediction is computed in other batches); a caption dropped
    /// to "" is fitted as a positive and does give one.
    func testAverageSamplesHoldThePolicy() throws {
        var config = Self.tinyNFTConfig()
        for dropout in [0.0, 1.0] {
            config.diffusionNFT.captionDropout = dropout
            let trainer = try trainer(config)
            var rng = trainer.epochRNG(0)
            let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
            let figures = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], advantages: [0, 0, 0, 0], rng: &rng)
            if dropout == 0 {
                XCTAssertLessThan(figures["grad_norm"]!, 1e-6, "\(figures)")
            } else {
                XCTAssertGreaterThan(figures["grad_norm"]!, 1e-4, "\(figures)")
            }
        }
        var bad = config
        bad.diffusionNFT.beta = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("diffusionNFT.beta"), "\($0)") }
        bad = config
        bad.diffusionNFT.timestepsPerSample = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("timestepsPerSample"), "\($0)") }
    }

    /// A run with the objective logs its figures and writes a model, end to end.
    func testRunLogsAndWritesTheModel() throws {
        var config = Self.tinyNFTConfig()
        config.rewards = RewardComposition(weights: ["indexed": 1])
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("nft-run-\(UUID())")
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test", rewardFunctions: [IndexedReward(values: [1, 0, 0.5, 0.5])])
        var summaries: [EpochSummary] = []
        try trainer.run(epochDone: { summaries.append($0) })
        try trainer.close()
        XCTAssertNotNil(summaries.first?.training["negative_share"])
        XCTAssertTrue(trainer.line(summaries[0]).contains("negatives"))
        XCTAssertNoThrow(try LatentDiffusionModel.load(from: output.appendingPathComponent("model")))
    }
}
