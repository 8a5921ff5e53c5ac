import Foundation
import XCTest
import Diffusion
import Engine
import Rewards
@testable import RL

/// Advantage-weighted regression: the weights, the weighted guided denoising loss, and that an
/// update fits the heavily weighted sample.
final class AdvantageWeightedRegressionTests: XCTestCase {
    /// w_i = n·exp(A_i/τ)/Σ exp(A_j/τ), by hand; equal advantages give equal weights; the weights
    /// do not overflow for large advantages; Kish's effective sample size by hand.
    func testWeightsAndEffectiveSampleSizeByHand() {
        // advantages 0, 1, 1 at τ = 1: exp(−1) = 0.367879, total 2.367879.
        let weights = advantageWeights(advantages: [0, 1, 1], temperature: 1)
        XCTAssertEqual(weights[0], 3 * 0.367879 / 2.367879, accuracy: 1e-6)
        XCTAssertEqual(weights[1], 3 / 2.367879, accuracy: 1e-6)
        XCTAssertEqual(weights[2], weights[1])
        XCTAssertEqual(weights.reduce(0, +), 3, accuracy: 1e-12)
        // (Σw)² / Σw² = 9 / (0.4660872² + 2 · 1.2669564²) = 9 / 3.427594.
        XCTAssertEqual(effectiveSampleSize(weights), 9 / 3.427594, accuracy: 1e-5)
        XCTAssertEqual(advantageWeights(advantages: [0.4, 0.4, 0.4, 0.4], temperature: 0.1), [1, 1, 1, 1])
        XCTAssertEqual(effectiveSampleSize([1, 1, 1, 1]), 4)
        let sharp = advantageWeights(advantages: [1000, 999], temperature: 0.05)
        XCTAssertTrue(sharp.allSatisfy(\.isFinite))
        XCTAssertEqual(sharp[0], 2, accuracy: 1e-8)
        XCTAssertEqual(effectiveSampleSize(sharp), 1, accuracy: 1e-8)
        XCTAssertEqual(advantageWeights(advantages: [], temperature: 1), [])
    }

    /// The loss is Σ_i w_i · mean((u + g·(c − u) − ε)²) with u, c the UNet's unconditional and
    /// conditional predictions at the drawn timesteps and noise, recomputed here by hand from the
    /// same random stream; guidance 1 uses the conditional branch alone. Rows computed apart (as
    /// the ranks of a data-parallel run do) sum to the whole.
    func testWeightedGuidedDenoisingLossByHand() throws {
        let model = try LatentDiffusionModel.load(from: FineTuningTrainerTests.modelFolder)
        var rng = RandomGenerator(seed: 3)
        let x0 = Tensor.randn([3, model.config.vae.latentChannels, model.latentSize, model.latentSize], using: &rng)
        let captions = ["a red circle", "two blue squares", "a green triangle"], weights = [0.5, 2, 0.25]
        for (guidance, range) in [(1.0, 0 ..< 1000), (5.0, 600 ..< 1000)] {
            var drawn = RandomGenerator(seed: 9), replay = drawn
            let loss = try withNoGrad {
                try model.weightedDenoisingLoss(x0: x0, captions: captions, weights: weights, guidance: guidance, timesteps: range, using: &drawn).item
            }
            let timesteps = (0..<3).map { _ in range.lowerBound + Int(replay.next() % UInt64(range.count)) }
            XCTAssertTrue(timesteps.allSatisfy { range.contains($0) })
            let noise = Tensor.randn(x0.shape, using: &replay)
            let noisy = try model.schedule.addNoise(x0, noise: noise, timesteps: timesteps)
            let expected: Double = try withNoGrad {
                let (context, mask) = try model.encodeText(captions)
                let (empty, emptyMask) = try model.encodeText(["", "", ""])
                let t = timesteps.map(Double.init)
                let conditional = try model.unet(noisy, timesteps: t, context: context, contextMask: mask).values
                let unconditional = try model.unet(noisy, timesteps: t, context: empty, contextMask: emptyMask).values
                let target = noise.values, per = conditional.count / 3
                var total = 0.0
                for i in 0..<3 {
                    var squares = 0.0
                    for j in i * per ..< (i + 1) * per {
                        let guided = unconditional[j] + guidance * (conditional[j] - unconditional[j])
                        squares += (guided - target[j]) * (guided - target[j])
                    }
                    total += weights[i] * squares / Double(per)
                }
                return total
            }
            XCTAssertEqual(loss, expected, accuracy: 1e-4 * max(1, abs(expected)), "guidance \(guidance)")
            // Two ranks' rows {0, 2} and {1} from the same stream: their sums add up to the batch's.
            let parts = try [[0, 2], [1]].map { rows -> Double in
                var stream = RandomGenerator(seed: 9)
                return try withNoGrad {
                    try model.weightedDenoisingLoss(x0: x0, captions: captions, weights: weights, guidance: guidance, timesteps: range,
                                                    rows: rows, using: &stream).item
                }
            }
            XCTAssertEqual(parts[0] + parts[1], loss, accuracy: 1e-5 * max(1, abs(loss)), "guidance \(guidance)")
            XCTAssertGreaterThan(min(parts[0], parts[1]), 0)
        }
        XCTAssertThrowsError(try model.weightedDenoisingLoss(x0: x0, captions: captions, weights: weights, guidance: 5, rows: [3], using: &rng)) {
            XCTAssertTrue("\($0)".contains("outside a batch of 3"), "\($0)")
        }
        XCTAssertThrowsError(try model.weightedDenoisingLoss(x0: x0, captions: captions, weights: [1, 1], guidance: 5, using: &rng)) {
            XCTAssertTrue("\($0)".contains("2 weights"), "\($0)")
        }
        XCTAssertThrowsError(try model.weightedDenoisingLoss(x0: x0, captions: captions, weights: weights, guidance: 5, timesteps: 900 ..< 1001,
                                                             using: &rng)) {
            XCTAssertTrue("\($0)".contains("900..<1001"), "\($0)")
        }
    }

    /// With nearly all weight on one sample, an update lowers that sample's denoising loss more
    /// than the other prompt's samples' (measured on fixed noise; sample 1 shares sample 0's
    /// caption, so fitting one fits the other about as much), and the effective sample size is ≈ 1.
    func testAnUpdateFitsTheHeavilyWeightedSample() throws {
        var config = FineTuningTrainerTests.tinyConfig()
        config.objective = "advantageWeighted"
        config.advantageWeighted.temperature = 0.05
        config.advantageWeighted.timestepsPerSample = 8
        config.trainBatch = 4
        config.innerEpochs = 4
        config.learningRate = 3e-3
        config.weightDecay = 0
        config.evaluation.prompts = 0
        config.rewards = RewardComposition(weights: ["fixed": 1])
        let trainer = try FineTuningTrainer.scratch(config, label: "rwr")
        var rng = trainer.epochRNG(0)
        let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
        func perSampleLoss() throws -> [Double] { try trainer.perSampleDenoisingLoss(trajectories, guidance: config.sampling.guidance) }
        let before = try perSampleLoss()
        let figures = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], advantages: [1, 0, 0, 0], rng: &rng)
        let after = try perSampleLoss()
        XCTAssertEqual(figures["effective_samples"]!, 1, accuracy: 1e-6)
        XCTAssertTrue(figures["clip_fraction"] == nil && figures["loss"]!.isFinite && figures["grad_norm"]! > 0)
        let change = zip(after, before).map { $0 / $1 - 1 }
        XCTAssertLessThan(change[0], 0, "relative change of the weighted sample's loss: \(change)")
        XCTAssertLessThan(change[0], change[2...].min()!, "relative changes \(change)")
    }

    /// The objective is a config choice with its own settings, checked at the boundary.
    func testConfigDecodesAndRejectsBadSettings() throws {
        let config = try ConfigLoader.decode(FineTuningConfig.self, from: Data(#"{"objective": "advantageWeighted", "advantageWeighted": {"temperature": 0.5}}"#.utf8),
                                             defaults: FineTuningConfig())
        XCTAssertEqual(config.objective, "advantageWeighted")
        XCTAssertEqual(config.advantageWeighted.temperature, 0.5)
        XCTAssertEqual(config.advantageWeighted.timestepsPerSample, 2)
        XCTAssertEqual(config.advantageWeighted.timestepRange, [])
        var bad = config
        bad.advantageWeighted.timestepRange = [800, 700]
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("timestepRange"), "\($0)") }
        bad = config
        bad.advantageWeighted.temperature = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("temperature"), "\($0)") }
        XCTAssertThrowsError(try ConfigLoader.decode(FineTuningConfig.self, from: Data(#"{"advantageWeighted": {"tau": 1}}"#.utf8), defaults: FineTuningConfig())) {
            XCTAssertTrue("\($0)".contains("advantageWeighted.tau"), "\($0)")
        }
        XCTAssertThrowsError(try ConfigLoader.decode(FineTuningConfig.self, from: Data(#"{"loss": "ppo"}"#.utf8), defaults: FineTuningConfig())) {
            XCTAssertTrue("\($0)".contains("'loss' is now called 'objective'"), "\($0)")
        }
        bad = config
        bad.objective = "ppo2"
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("objective 'ppo2' is not one of"), "\($0)") }
    }
}
