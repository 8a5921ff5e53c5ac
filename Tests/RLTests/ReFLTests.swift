import Foundation
import Inputs
import XCTest
import Diffusion
import Engine
import Images
import Rewards
@testable import RL

/// A reward model with two differentiable heads (`BrightnessReward`'s score and its negative)
/// that counts how often it scores a batch.
final class TwoHeadedReward: DifferentiableReward {
    var calls = 0
    var perspectives: [String] { ["light", "dark"] }
    var differentiablePerspectives: [String] { perspectives }
    func differentiableScores(_ images: Tensor, prompts: [String], perspectives: [String]) throws -> [String: Tensor] {
        calls += 1
        let brightness = try BrightnessReward().differentiableScores(images, prompts: prompts, perspectives: ["brightness"])["brightness"]!
        return ["light": brightness, "dark": -brightness].filter { perspectives.contains($0.key) }
    }
    func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        try differentiableScores(ImageTensors.tensor(images), prompts: prompts, perspectives: perspectives).mapValues(\.values)
    }
}

/// ReFL / DRaFT-K through the sampler: the gradient matches finite differences, an update raises
/// a differentiable reward, and non-differentiable perspectives are refused.
final class ReFLTests: XCTestCase {
    func reflTrainer(gradientSteps: Int, detachUNetInput: Bool = false) throws -> FineTuningTrainer {
        var config = FineTuningTrainerTests.tinyConfig()
        config.objective = "refl"
        config.refl.gradientSteps = gradientSteps
        config.refl.detachUNetInput = detachUNetInput
        config.rewards = RewardComposition(weights: ["brightness": 1])
        config.trainBatch = 4
        config.weightDecay = 0
        config.learningRate = 1e-2
        config.evaluation.prompts = 0
        return try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("refl-\(UUID())"),
                               commandLine: "test", rewardFunctions: [BrightnessReward()])
    }

    /// The loss's gradient along a random direction of the trainable parameters matches a central
    /// difference, with K = all 4 steps and K = 2 (the last step alone, t = 1 → 0, moves the image
    /// too little for a float32 difference to resolve).
    func testLossGradientMatchesFiniteDifferences() throws {
        for (k, beta) in [(4, 0.0), (2, 0.0), (2, 5.0)] {
            let trainer = try reflTrainer(gradientSteps: k)
            var rng = trainer.epochRNG(0)
            let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
            // Move the LoRA off zero so that every parameter has a gradient.
            var draws = RandomGenerator(seed: 4)
            for p in trainer.parameters { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &draws)) }
            let sources = try differentiableSources(trainer.config.rewards, functions: [BrightnessReward()])
            let batch = [0, 1, 2, 3]
            let loss = try trainer.reflLoss(trajectories, batch: batch, sources: sources, beta: beta)
            try loss.backward()
            var direction: [[Double]] = [], analytic = 0.0
            for p in trainer.parameters {
                let d = Tensor.randn(p.tensor.shape, using: &draws).values
                direction.append(d)
                analytic += zip(p.tensor.grad!.values, d).map { $0 * $1 }.reduce(0, +)
                p.tensor.grad = nil
            }
            // The KL term is quartic in a step along A and B of a LoRA at once: a smaller step.
            let h = beta > 0 ? 1e-3 : 1e-2
            func shifted(_ sign: Double) throws -> Double {
                let saved = trainer.parameters.map(\.tensor.values)
                for (p, d) in zip(trainer.parameters, direction) {
                    p.tensor.assign(try Tensor(zip(p.tensor.values, d).map { $0 + sign * h * $1 }, shape: p.tensor.shape))
                }
                let value = try withNoGrad { try trainer.reflLoss(trajectories, batch: batch, sources: sources, beta: beta).item }
                for (p, v) in zip(trainer.parameters, saved) { p.tensor.assign(try Tensor(v, shape: p.tensor.shape)) }
                return value
            }
            let numeric = (try shifted(1) - shifted(-1)) / (2 * h)
            XCTAssertEqual(analytic, numeric, accuracy: 0.03 * abs(numeric) + 1e-7, "K = \(k), β = \(beta)")
            XCTAssertGreaterThan(abs(numeric), 1e-6, "K = \(k): the reward must depend on the parameters")
        }
    }

    /// The β·KL penalty: zero while the policy is the reference (LoRA starts at zero); after the
    /// LoRA moves, with K = 1 (the re-run step starts from the stored latent) the loss grows by
    /// exactly β times the mean KL of the last step that the trainer's KL drift measures on the
    /// same trajectories. An objective without the penalty refuses β > 0.
    func testKLPenaltyIsBetaTimesTheMeasuredKL() throws {
        let trainer = try reflTrainer(gradientSteps: 1)
        var rng = trainer.epochRNG(0)
        let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
        let sources = try differentiableSources(trainer.config.rewards, functions: [BrightnessReward()])
        let batch = [0, 1, 2, 3]
        func loss(_ beta: Double) throws -> Double { try withNoGrad { try trainer.reflLoss(trajectories, batch: batch, sources: sources, beta: beta).item } }
        XCTAssertEqual(try loss(3), try loss(0), accuracy: 1e-9)
        var draws = RandomGenerator(seed: 4)
        for p in trainer.parameters { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &draws)) }
        let kl = try trainer.klDrift(trajectories, indices: batch)
        let last = kl.byStep.last!
        XCTAssertGreaterThan(last, 1e-6)
        // Within 1e-3: the difference of two float32 losses, and the two computations batch the
        // UNet differently (rounding enters μ − μ_ref, divided by the last step's small σ).
        XCTAssertEqual(try loss(3) - loss(0), 3 * last, accuracy: 1e-3 * 3 * last + 1e-7)

        var config = trainer.config
        config.objective = "selfTraining"
        config.kl.beta = 0.1
        config.rewards = RewardComposition(weights: ["alignment": 1])
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("refl-\(UUID())"),
                                                   commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("kl.beta") && "\($0)".contains("refl"), "\($0)")
        }
    }

    /// With K = 1 a detached UNet input changes nothing (the re-run starts from a stored latent);
    /// with K = 2 it drops the path through the UNet's input, so the gradient differs, while the
    /// loss itself is the same.
    func testDetachedUNetInputDropsOnlyThatPath() throws {
        for k in [1, 2] {
            var losses: [Double] = [], gradients: [[Double]] = []
            for detach in [false, true] {
                let trainer = try reflTrainer(gradientSteps: k, detachUNetInput: detach)
                var rng = trainer.epochRNG(0)
                let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
                var draws = RandomGenerator(seed: 4)
                for p in trainer.parameters { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &draws)) }
                let sources = try differentiableSources(trainer.config.rewards, functions: [BrightnessReward()])
                let loss = try trainer.reflLoss(trajectories, batch: [0, 1, 2, 3], sources: sources)
                try loss.backward()
                losses.append(loss.item)
                gradients.append(trainer.parameters.flatMap { $0.tensor.grad!.values })
            }
            XCTAssertEqual(losses[0], losses[1], "K = \(k)")
            if k == 1 {
                XCTAssertEqual(gradients[0], gradients[1])
            } else {
                let difference = zip(gradients[0], gradients[1]).map { abs($0 - $1) }.max()!
                XCTAssertGreaterThan(difference, 1e-9, "K = 2: the detached gradient must differ")
            }
        }
    }

    /// At the sampling parameters the loss replays the samples (−mean brightness of the sampled
    /// images, up to 8-bit rounding); one update makes the same samples (same noise) brighter.
    func testAnUpdateRaisesTheReward() throws {
        let trainer = try reflTrainer(gradientSteps: 4)
        func brightness() throws -> Double {
            var rng = trainer.epochRNG(0)
            let images = try trainer.sampleEpoch(using: &rng).trajectories.images
            return try BrightnessReward().score(images, prompts: [], perspectives: ["brightness"])["brightness"]!.reduce(0, +)
        }
        let before = try brightness()
        var rng = trainer.epochRNG(0)
        let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
        let figures = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], rng: &rng)
        XCTAssertEqual(figures["loss"]!, -before / 4, accuracy: 0.005)
        XCTAssertGreaterThan(try brightness(), before)
    }

    /// The gold judge cannot be differentiated: a ReFL config that weights it is refused at once.
    /// Perspectives of one reward model are scored in one pass and weighted by hand:
    /// 1·b + 0.5·b − 2·b = −0.5·b, so the loss is −0.5 times the brightness-only loss.
    func testPerspectivesOfOneFunctionAreScoredInOnePass() throws {
        let trainer = try reflTrainer(gradientSteps: 2)
        var rng = trainer.epochRNG(0)
        let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
        let twoHeaded = TwoHeadedReward()
        let composition = RewardComposition(weights: ["brightness": 1, "light": 0.5, "dark": 2])
        let sources = try differentiableSources(composition, functions: [twoHeaded, BrightnessReward()])
        XCTAssertEqual(sources.map { $0.perspectives.map(\.name) }, [["brightness"], ["dark", "light"]], "grouped by function, in the composition's order")
        let combined = try withNoGrad { try trainer.reflLoss(trajectories, batch: [0, 1, 2, 3], sources: sources).item }
        XCTAssertEqual(twoHeaded.calls, 1, "one pass of the two-headed model for both of its perspectives")
        let brightnessOnly = try differentiableSources(RewardComposition(weights: ["brightness": 1]), functions: [BrightnessReward()])
        let single = try withNoGrad { try trainer.reflLoss(trajectories, batch: [0, 1, 2, 3], sources: brightnessOnly).item }
        XCTAssertEqual(combined, -0.5 * single, accuracy: 1e-6 * max(1, abs(single)))
    }

    func testNonDifferentiablePerspectivesAreRefused() throws {
        var config = FineTuningTrainerTests.tinyConfig()
        config.objective = "refl"
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("refl-\(UUID())"),
                                             commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("not differentiable"), "\($0)")
        }
        config.refl.gradientSteps = 5
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("gradientSteps"), "\($0)") }
        let prefixed = PrefixedReward(prefix: "proxy_", BrightnessReward())
        XCTAssertEqual(prefixed.differentiablePerspectives, ["proxy_brightness"])
        let images = Tensor(repeating: 0.5, shape: [2, 3, 4, 4])
        XCTAssertEqual(try prefixed.differentiableScores(images, prompts: ["a", "b"], perspectives: ["proxy_brightness"])["proxy_brightness"]!.values,
                       [0.75, 0.75], "(0.5 + 1) / 2")
        XCTAssertTrue(PrefixedReward(prefix: "p_", GoldJudgeReward()).differentiablePerspectives.isEmpty)
    }
}
