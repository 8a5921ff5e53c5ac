import Foundation
import Inputs
import XCTest
import Diffusion
import Engine
import Evaluation
import Images
import Rewards
import RunLog
import World
@testable import RL

/// A reward that gives every image the same score (zero advantages), or NaN for chosen samples.
struct FixedReward: RewardFunction {
    var value: Double
    var nanAt: Set<Int> = []
    var perspectives: [String] { ["fixed"] }
    func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        ["fixed": images.indices.map { nanAt.contains($0) ? .nan : value }]
    }
}

/// The trainer end to end on a tiny model (16×16 images, 4 DDIM steps).
final class FineTuningTrainerTests: XCTestCase {
    static let modelFolder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ddpo-tiny-model-\(UUID())")
        var rng = RandomGenerator(seed: 11)
        let captions = WorldGenerator(seed: 0).scenes(.train, count: 3000).map(\.caption)
        let model = try! LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: captions), using: &rng)
        // Move the UNet away from its initialization (zero output convolution) so that it draws.
        for p in model.unet.namedParameters() { p.tensor.assign(try! p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &rng)) }
        try! model.save(to: folder)
        return folder
    }()

    static func tinyConfig() -> FineTuningConfig {
        var config = FineTuningConfig()
        config.model = FineTuningTrainerTests.modelFolder.path
        config.threads = 1
        config.epochs = 3
        config.promptPool = 4
        config.promptsPerEpoch = 2
        config.imagesPerPrompt = 2
        config.sampling.steps = 4
        config.samplingBatch = 4
        config.trainBatch = 2
        config.gradientAccumulation = 1
        config.learningRate = 1e-2
        config.kl.samples = 0
        config.statMinCount = 2
        config.evaluation.prompts = 2
        config.evaluation.imagesPerPrompt = 1
        config.evaluation.every = 2
        config.rewards = RewardComposition(weights: ["alignment_partial": 1, "compressibility": 0.1])
        return config
    }

    func temporaryRun() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("ddpo-run-\(UUID())") }

    /// At the first epoch policy and reference are the same model: the KL is exactly 0 and the
    /// importance ratio is 1. Training then moves the policy, so the KL grows.
    func testKLIsZeroAtFirstEpochThenGrowsAndRatioStartsAtOne() throws {
        var config = Self.tinyConfig()
        config.rewards = RewardComposition(weights: ["compressibility": 1])
        config.learningRate = 3e-2
        config.gradientAccumulation = 100   // one update per epoch: epoch 0 trains on its own policy's samples
        let output = temporaryRun()
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test")
        var summaries: [EpochSummary] = []
        var lines: [String] = []
        try trainer.run(progress: { lines.append($0) }, epochDone: { summaries.append($0) })
        XCTAssertEqual(summaries.count, 3)
        XCTAssertEqual(summaries[0].kl!.mean, 0)
        XCTAssertEqual(summaries[0].kl!.byStep, [0, 0, 0, 0])
        XCTAssertGreaterThan(summaries[2].kl!.mean, 0)
        XCTAssertTrue(lines.contains { $0.hasPrefix("epoch 3/3") }, "\(lines)")
        try trainer.close()
        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        XCTAssertEqual(try reader.epochs(), 3)
        let ratio = try reader.metric("ratio_mean")
        XCTAssertEqual(ratio[0], 1, accuracy: 1e-3, "the first update's samples come from the same policy")
        XCTAssertTrue(try reader.metric("base_eval_alignment")[0].isFinite)
        XCTAssertTrue(try reader.metric("eval_alignment")[1].isFinite)
        XCTAssertTrue(try reader.metric("eval_alignment")[2].isFinite)
        XCTAssertTrue(try reader.metric("eval_alignment")[0].isNaN)
        XCTAssertEqual(try reader.sampleColumn("reward").count, 12)
        XCTAssertTrue(reader.attributes["config"]!.contains("\"clipRange\""))
        // The fine-tuned model loads like the base one.
        XCTAssertNoThrow(try LatentDiffusionModel.load(from: output.appendingPathComponent("model")))
    }

    /// Zero advantages (every image scores the same) leave the parameters exactly where they were.
    func testZeroAdvantagesDoNotMoveTheParameters() throws {
        var config = Self.tinyConfig()
        config.rewards = RewardComposition(weights: ["fixed": 1])
        config.weightDecay = 0
        config.epochs = 2
        let trainer = try FineTuningTrainer(config: config, output: temporaryRun(), commandLine: "test", rewardFunctions: [FixedReward(value: 0.7)])
        let before = trainer.parameters.map(\.tensor.values)
        try trainer.run()
        XCTAssertEqual(trainer.parameters.map(\.tensor.values), before)
    }

    /// A NaN reward skips its sampling batch and says so in the log; nothing reaches the parameters.
    func testNaNRewardSkipsTheBatch() throws {
        var config = Self.tinyConfig()
        config.rewards = RewardComposition(weights: ["fixed": 1])
        config.epochs = 1
        let output = temporaryRun()
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test",
                                      rewardFunctions: [FixedReward(value: 1, nanAt: [1])])
        let before = trainer.parameters.map(\.tensor.values)
        var summaries: [EpochSummary] = []
        try trainer.run(epochDone: { summaries.append($0) })
        XCTAssertEqual(summaries[0].skippedBatches, 1)
        XCTAssertEqual(trainer.parameters.map(\.tensor.values), before)
        try trainer.close()
        let events = try RunLogReader(url: output.appendingPathComponent("run.h5")).events()
        XCTAssertTrue(events.contains { $0.kind == "skipped" && $0.message.contains("non-finite reward") }, "\(events)")
    }

    /// A run whose every reward is NaN does not train on and on doing nothing: after three empty
    /// epochs it stops with a message, and the log says so.
    func testARunWithNoUsableSampleStops() throws {
        var config = Self.tinyConfig()
        config.rewards = RewardComposition(weights: ["fixed": 1])
        config.epochs = 10
        config.evaluation.prompts = 0
        let output = temporaryRun()
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test",
                                            rewardFunctions: [FixedReward(value: 1, nanAt: Set(0..<64))])
        XCTAssertThrowsError(try trainer.run()) { XCTAssertTrue("\($0)".contains("3 epochs in a row had no usable sample"), "\($0)") }
        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        XCTAssertEqual(try reader.epochs(), 2)
        XCTAssertEqual(try reader.events().last?.kind, "stopped")
    }

    /// A NaN in the sampler (here a UNet weight) is caught in the trajectories, where it appears —
    /// decoded, it would only be black pixels with a finite reward: every batch is skipped and
    /// logged as a non-finite latent, nothing is trained, and after three such epochs the run stops.
    func testANonFiniteLatentSkipsItsBatchWhereItAppears() throws {
        var config = Self.tinyConfig()
        config.epochs = 10
        config.evaluation.prompts = 0
        let output = temporaryRun()
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test")
        let weight = try XCTUnwrap(trainer.policy.unet.namedParameters().first { $0.name.hasSuffix("weight") && $0.tensor.values.count > 1 })
        var values = weight.tensor.values
        values[0] = .nan
        weight.tensor.assign(try Tensor(values, shape: weight.tensor.shape))
        XCTAssertThrowsError(try trainer.run()) { XCTAssertTrue("\($0)".contains("3 epochs in a row had no usable sample"), "\($0)") }
        let events = try RunLogReader(url: output.appendingPathComponent("run.h5")).events()
        XCTAssertTrue(events.contains { $0.kind == "skipped" && $0.message.contains("non-finite latent or log-probability") }, "\(events)")
        XCTAssertFalse(events.contains { $0.kind == "skipped" && $0.message.contains("non-finite reward") }, "\(events)")
    }

    /// Stopping after epoch 2 and resuming gives the same weights, byte for byte, as a run never
    /// interrupted, and the log holds each epoch once.
    func testResumedRunEqualsUninterruptedRun() throws {
        let config = Self.tinyConfig()
        let whole = temporaryRun(), pieces = temporaryRun()
        try FineTuningTrainer(config: config, output: whole, commandLine: "test").run()
        do {
            let first = try FineTuningTrainer(config: config, output: pieces, commandLine: "test")
            try first.run(stopAfter: 2)
        }
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: pieces, commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("--resume"), "\($0)")
        }
        let resumed = try FineTuningTrainer(config: config, output: pieces, commandLine: "test", resume: true)
        XCTAssertEqual(resumed.epoch, 2)
        try resumed.run()
        try resumed.close()
        let a = try Data(contentsOf: whole.appendingPathComponent("model/unet.safetensors"))
        let b = try Data(contentsOf: pieces.appendingPathComponent("model/unet.safetensors"))
        XCTAssertEqual(a, b)
        let reader = try RunLogReader(url: pieces.appendingPathComponent("run.h5"))
        XCTAssertEqual(try reader.epochs(), 3)
        XCTAssertEqual(try reader.sampleColumn("reward").count, 12)
        XCTAssertEqual(try reader.metric("loss"), try RunLogReader(url: whole.appendingPathComponent("run.h5")).metric("loss"))
        var other = config
        other.learningRate = 1
        XCTAssertThrowsError(try FineTuningTrainer(config: other, output: pieces, commandLine: "test", resume: true))
    }

    /// With `evaluation.keepModels`, every evaluated epoch keeps its model (LoRA merged): the last
    /// one is byte for byte the run's final model, an earlier one differs; the evaluation scores
    /// the prompt file's captions, which the log's prompt table holds after the trained ones.
    func testEvaluatedEpochsKeepTheirModels() throws {
        var config = Self.tinyConfig()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("tuning-\(UUID()).txt")
        try "a small red circle\n\na large blue square\na small red circle\ntwo green triangles\n".write(to: file, atomically: true, encoding: .utf8)
        config.evaluation.promptFile = file.path
        config.evaluation.keepModels = true
        let run = temporaryRun()
        let trainer = try FineTuningTrainer(config: config, output: run, commandLine: "test")
        try trainer.run()
        try trainer.close()
        let models = run.appendingPathComponent("models")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: models.path).sorted(), ["epoch-0002", "epoch-0003"])
        let final = try Data(contentsOf: run.appendingPathComponent("model/unet.safetensors"))
        XCTAssertEqual(try Data(contentsOf: models.appendingPathComponent("epoch-0003/unet.safetensors")), final)
        XCTAssertNotEqual(try Data(contentsOf: models.appendingPathComponent("epoch-0002/unet.safetensors")), final)
        _ = try LatentDiffusionModel.load(from: models.appendingPathComponent("epoch-0002"))
        let reader = try RunLogReader(url: run.appendingPathComponent("run.h5"))
        XCTAssertEqual(Array(try reader.prompts().suffix(2)), ["a small red circle", "a large blue square"])
        XCTAssertEqual(try reader.metric("eval_alignment").filter(\.isFinite).count, 2)

        config.evaluation.prompts = 0
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: temporaryRun(), commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("keepModels"), "\($0)")
        }
        config.evaluation.prompts = 2
        config.evaluation.promptFile = "/nonexistent/tuning.txt"
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: temporaryRun(), commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("/nonexistent/tuning.txt"), "\($0)")
        }
    }

    func testBadSettingsAreClearErrors() throws {
        var config = Self.tinyConfig()
        config.sampling.eta = 0
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: temporaryRun(), commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("η = 0"), "\($0)")
        }
        config = Self.tinyConfig()
        config.model = "/nonexistent/model"
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: temporaryRun(), commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("/nonexistent/model"), "\($0)")
        }
        config = Self.tinyConfig()
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("empty-prompts-\(UUID()).txt")
        try "\n  \n".write(to: empty, atomically: true, encoding: .utf8)
        config.prompts = empty.path
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: temporaryRun(), commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("no prompts"), "\($0)")
        }
        XCTAssertThrowsError(try ConfigLoader.decode(FineTuningConfig.self, from: Data(#"{"kl": {"betta": 1}}"#.utf8), defaults: FineTuningConfig())) {
            XCTAssertTrue("\($0)".contains("kl.betta"), "\($0)")
        }
    }
}

final class DDPOConfigTests: XCTestCase {
    /// Reward weights are the user's keys: given weights replace the default ones whole; other
    /// unknown keys stay errors.
    func testRewardWeightsAreAnOpenMap() throws {
        let config = try ConfigLoader.decode(FineTuningConfig.self, from: Data(#"{"rewards": {"weights": {"safety": 0.5, "fidelity": 1}}}"#.utf8),
                                             defaults: FineTuningConfig())
        XCTAssertEqual(config.rewards.weights, ["safety": 0.5, "fidelity": 1])
        XCTAssertThrowsError(try ConfigLoader.decode(FineTuningConfig.self, from: Data(#"{"rewards": {"weight": {}}}"#.utf8), defaults: FineTuningConfig()))
    }
}

final class PolicyGradientDirectionTests: XCTestCase {
    /// The score-function gradient DDPO follows estimates ∇θ E[reward]. For a differentiable reward
    /// (brightness) the same gradient comes from the reparameterization trick: backpropagate the
    /// reward through the sampling step with its noise held fixed (ReFL). For the last step, on
    /// 1,024 trajectories in 32 batches, the pathwise gradient of the first 16 batches
    /// gives a direction d; along d, the score-function estimates of the other 16 batches are
    /// positive by more than 3 standard errors (over batches) — they see the reward's direction —
    /// while with the advantages shuffled among the samples (what attaching them to the wrong
    /// samples would do) they are within 3 standard errors of 0. A sign error, a log π of the wrong
    /// action or a mismatched forward breaks it. (A cosine between the two whole gradients is no
    /// test here: the tiny LoRA's gradients span few directions, so even unrelated combinations
    /// of them point alike.)
    func testScoreFunctionGradientAgreesWithThePathwiseGradient() throws {
        var config = FineTuningTrainerTests.tinyConfig()
        config.objective = "reinforce"
        config.advantages = .leaveOneOut
        config.rewards = RewardComposition(weights: ["brightness": 1])
        config.promptsPerEpoch = 64
        config.imagesPerPrompt = 16
        config.samplingBatch = 64
        config.trainBatch = 32
        config.evaluation.prompts = 0
        // The last step alone, with every earlier draw shared by a prompt's 16 images: the images
        // of a prompt differ only by the last step's noise, so the leave-one-out advantages carry
        // that step's effect on the reward alone (common random numbers), and ReFL with K = 1
        // gives the same step's pathwise gradient.
        let last = config.sampling.steps - 1
        config.shareInitialNoise = true
        config.sharedNoiseStepRange = [0, last]
        config.trainStepRange = [last, last + 1]
        config.refl.gradientSteps = 1
        let trainer = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("gradients-\(UUID())"),
                                      commandLine: "test")
        var rng = trainer.epochRNG(0)
        let (groups, _, trajectories) = try trainer.sampleEpoch(using: &rng)
        let rewards = try trainer.composer.score(trajectories.images, prompts: trajectories.prompts).total
        var statistics = trainer.tracker
        let advantages = trainer.clippedAdvantages(rewards: rewards, prompts: trajectories.prompts, groups: groups, tracker: &statistics)
        var shuffled = advantages
        shuffled.shuffle(using: &rng)
        let sources = try differentiableSources(config.rewards, functions: trainer.rewardFunctions)
        let batches = stride(from: 0, to: trajectories.count, by: config.trainBatch).map { Array($0 ..< $0 + config.trainBatch) }
        var norms = [Double](repeating: 0, count: trainer.trainableSteps.count)
        func pathwise(_ batch: [Int]) throws -> [Double] {
            try trainer.reflLoss(trajectories, batch: batch, sources: sources).backward()
            defer { for p in trainer.parameters { p.tensor.grad = nil } }
            return trainer.parameters.flatMap { $0.tensor.grad!.values }
        }
        func scoreFunction(_ batch: [Int], _ advantages: [Double]) throws -> [Double] {
            try trainer.policyGradient(trajectories.subset(batch), loss: .reinforce, advantages: batch.map { advantages[$0] }, stepNorms: &norms)
        }
        let half = batches.count / 2
        var direction = try pathwise(batches[0])
        for batch in batches[1..<half] { direction = zip(direction, try pathwise(batch)).map { $0 + $1 } }
        let length = norm(direction)
        direction = direction.map { $0 / length }
        func along(_ gradient: [Double]) -> Double { zip(gradient, direction).reduce(0) { $0 + $1.0 * $1.1 } }
        func zScore(_ values: [Double]) -> Double {
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)
            return mean / (variance / Double(values.count)).squareRoot()
        }
        let held = Array(batches[half...])
        let signal = zScore(try held.map { along(try scoreFunction($0, advantages)) })
        let control = zScore(try held.map { along(try scoreFunction($0, shuffled)) })
        let pathwiseHeld = zScore(try held.map { along(try pathwise($0)) })
        // Both are gradients of losses (−reward): along the pathwise loss gradient they are positive.
        XCTAssertGreaterThan(pathwiseHeld, 3, "the pathwise gradient of held-out batches along d")
        XCTAssertGreaterThan(signal, 3, "score-function gradient along the pathwise direction, in standard errors")
        XCTAssertLessThan(abs(control), 3, "with shuffled advantages, in standard errors")
        // Measured: 4.9 standard errors, shuffled −0.7, pathwise 11.3.
    }

    /// One update raises the log-probability of positive-advantage trajectories relative to
    /// negative ones: Σ_i A_i · Δ log π(τ_i) > 0, for PPO and REINFORCE.
    func testAnUpdateMovesLogProbabilitiesTowardPositiveAdvantages() throws {
        for loss in ["ppo", "reinforce"] {
            var config = FineTuningTrainerTests.tinyConfig()
            config.objective = loss
            config.learningRate = 1e-3
            config.trainBatch = 4
            config.gradientAccumulation = 1
            config.weightDecay = 0
            config.evaluation.prompts = 0
            config.rewards = RewardComposition(weights: ["fixed": 1])
            let trainer = try FineTuningTrainer.scratch(config, label: "direction")
            var rng = trainer.epochRNG(0)
            let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
            let advantages: [Double] = [1, -1, 1, -1]
            func totalLogProbs() throws -> [Double] {
                let captions = trajectories.prompts
                return try withNoGrad {
                    let context = try trainer.policy.encodeText(captions), empty = try trainer.policy.encodeText(captions.map { _ in "" })
                    var total = [Double](repeating: 0, count: captions.count)
                    for s in 0..<trajectories.stepCount {
                        let values = try trainer.policy.stepLogProb(trajectories, step: s, indices: [0, 1, 2, 3], context: context, empty: empty,
                                                                    settings: config.sampling).logProb.values
                        for i in total.indices { total[i] += values[i] }
                    }
                    return total
                }
            }
            let before = try totalLogProbs()
            _ = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], advantages: advantages, rng: &rng)
            let after = try totalLogProbs()
            let movement = zip(advantages, zip(after, before)).map { $0 * ($1.0 - $1.1) }.reduce(0, +)
            XCTAssertGreaterThan(movement, 0, "\(loss): Δ log π \(zip(after, before).map { $0 - $1 })")
        }
    }
    /// DDPO's steps stacked into one UNet pass (`stepsPerPass`) train exactly as one pass per step:
    /// the same parameters after two updates (the second with the policy away from the
    /// reference, so the KL penalty's gradient counts) and the same statistics.
    func testStackedStepsTrainAsStepsOneByOne() throws {
        var results: [(parameters: [[Double]], metrics: [String: Double])] = []
        for stepsPerPass in [1, 3] {
            var config = FineTuningTrainerTests.tinyConfig()
            config.trainBatch = 4
            config.stepsPerPass = stepsPerPass
            config.kl.beta = 0.5
            config.evaluation.prompts = 0
            config.rewards = RewardComposition(weights: ["fixed": 1])
            let trainer = try FineTuningTrainer.scratch(config, label: "stacked")
            var rng = trainer.epochRNG(0)
            let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
            var metrics: [String: Double] = [:]
            for _ in 0..<2 {
                metrics = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], advantages: [1, -0.5, 2, -1], rng: &rng)
            }
            results.append((trainer.parameters.map { $0.tensor.values }, metrics))
        }
        let (one, stacked) = (results[0], results[1])
        XCTAssertGreaterThan(one.metrics["approx_kl"]!, 0)
        for key in ["loss", "grad_norm", "clip_fraction", "approx_kl", "ratio_mean"] {
            XCTAssertEqual(one.metrics[key]!, stacked.metrics[key]!, accuracy: 1e-4 * max(1, abs(one.metrics[key]!)), key)
        }
        // Adam divides by √v: a component whose gradient is near 0 magnifies the float32 rounding
        // of the two summation orders, so a few may differ by a small fraction of the step size.
        let differences = zip(one.parameters.joined(), stacked.parameters.joined()).map { abs($0 - $1) }
        XCTAssertLessThan(differences.max()!, 0.05 * 1e-2)
        XCTAssertLessThan(Double(differences.filter { $0 > 1e-5 }.count), 0.01 * Double(differences.count))
        var bad = FineTuningTrainerTests.tinyConfig()
        bad.stepsPerPass = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("stepsPerPass"), "\($0)") }
    }
}

final class ExperimentConfigTests: XCTestCase {
    /// The shipped experiment configs decode strictly, validate, and `safety/demo.json` is the demo's.
    func testShippedConfigsDecodeAndTheDemoMatchesItsConfig() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let names = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Experiments").path)
            .filter { $0.hasPrefix("ddpo-") && $0.hasSuffix(".json") }
            + ["gradient-noise", "ddpo-study", "awr", "dpo", "refl", "gated-lora", "sanity", "self-training", "safety", "diffusion-nft",
               "overoptimization"].flatMap { folder in
                try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Experiments/\(folder)").path)
                    .filter { $0.hasSuffix(".json") }.map { "\(folder)/\($0)" }
            }
        XCTAssertGreaterThanOrEqual(names.count, 13)
        for name in names {
            let config = try ConfigLoader.load(FineTuningConfig.self, from: root.appendingPathComponent("Experiments/\(name)"), defaults: FineTuningConfig())
            XCTAssertNoThrow(try config.validate(), name)
        }
        let demo = try ConfigLoader.load(FineTuningConfig.self, from: root.appendingPathComponent("Experiments/safety/demo.json"), defaults: FineTuningConfig())
        XCTAssertEqual(demo, FineTuningConfig.demo)
    }

    /// The studies' prompt files are what the code computes: the demo's trained captions, and the
    /// tuning and report sets (validation captions not trained on), disjoint by caption.
    func testPromptSetsAreTheDemosAndDisjoint() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        func lines(_ name: String) throws -> [String] {
            try String(contentsOf: root.appendingPathComponent("Experiments/prompts/\(name)"), encoding: .utf8).split(separator: "\n").map(String.init)
        }
        let trained = try FineTuningTrainer.trainingPrompts(FineTuningConfig.demo)
        XCTAssertEqual(trained, try lines("train-256.txt"))
        let tuning = GoldEvaluation.unseenPrompts(split: .validation, excluding: Set(trained), count: 128).map(\.caption)
        let report = GoldEvaluation.unseenPrompts(split: .validation, excluding: Set(trained), skip: 128, count: 128).map(\.caption)
        XCTAssertEqual(tuning, try lines("tuning-128.txt"))
        XCTAssertEqual(report, try lines("report-128.txt"))
        XCTAssertEqual(Set(trained + tuning + report).count, 256 + 128 + 128, "no caption in two sets, none twice")
    }
}

/// Common random numbers within a prompt's images: a shared x_T, and shared noise at chosen steps.
final class SharedNoiseTests: XCTestCase {
    /// One sampling epoch of the tiny config changed by `configure`.
    func sampledEpoch(_ configure: (inout FineTuningConfig) -> Void) throws -> (config: FineTuningConfig, indices: [Int], trajectories: Trajectories) {
        var config = FineTuningTrainerTests.tinyConfig()
        config.evaluation.prompts = 0
        configure(&config)
        let trainer = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("shared-\(UUID())"),
                                      commandLine: "test")
        var rng = trainer.epochRNG(0)
        let (indices, _, trajectories) = try trainer.sampleEpoch(using: &rng)
        XCTAssertEqual(indices[0], indices[1])
        XCTAssertNotEqual(indices[1], indices[2])
        return (config, indices, trajectories)
    }

    /// With shareInitialNoise, the images of a prompt start from the same x_T and then differ.
    func testImagesOfAPromptShareTheirStartingNoise() throws {
        let (_, _, trajectories) = try sampledEpoch { $0.shareInitialNoise = true }
        let start = try trajectories.latents[0].split(sizes: [1, 1, 1, 1], axis: 0).map(\.values)
        XCTAssertEqual(start[0], start[1])
        XCTAssertNotEqual(start[1], start[2])
        let end = try trajectories.latents.last!.split(sizes: [1, 1, 1, 1], axis: 0).map(\.values)
        XCTAssertNotEqual(end[0], end[1])
    }

    /// With sharedNoiseStepRange, the noise z = (x_t′ − μ)/σ of those steps is the same for the
    /// images of a prompt and differs between prompts; at the other steps it differs.
    func testImagesOfAPromptShareTheNoiseOfTheChosenSteps() throws {
        let sampled = try sampledEpoch { $0.sharedNoiseStepRange = [1, $0.sampling.steps] }
        var config = sampled.config
        let trajectories = sampled.trajectories
        func noise(step: Int) throws -> [[Double]] {
            let z = try (trajectories.latents[step + 1] - trajectories.means[step]) * (1 / trajectories.sigmas[step])
            return try z.split(sizes: [1, 1, 1, 1], axis: 0).map(\.values)
        }
        let first = try noise(step: 0)
        XCTAssertNotEqual(first[0], first[1])
        for step in 1..<config.sampling.steps {
            let z = try noise(step: step)
            for (a, b) in zip(z[0], z[1]) { XCTAssertEqual(a, b, accuracy: 1e-4) }
            XCTAssertGreaterThan(zip(z[1], z[2]).map { abs($0 - $1) }.max()!, 0.1)
        }
        config.sharedNoiseStepRange = [2, config.sampling.steps + 1]
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("sharedNoiseStepRange")) }
    }

    /// With antitheticNoise, the two images of a pair draw opposite noise — x_T and z at every
    /// step not shared — and different pairs draw independent noise; shared steps stay shared.
    func testAntitheticPairsDrawOppositeNoise() throws {
        let sampled = try sampledEpoch { $0.antitheticNoise = true; $0.sharedNoiseStepRange = [2, $0.sampling.steps] }
        let trajectories = sampled.trajectories
        func noise(step: Int) throws -> [[Double]] {
            let z = try (trajectories.latents[step + 1] - trajectories.means[step]) * (1 / trajectories.sigmas[step])
            return try z.split(sizes: [1, 1, 1, 1], axis: 0).map(\.values)
        }
        let start = try trajectories.latents[0].split(sizes: [1, 1, 1, 1], axis: 0).map(\.values)
        XCTAssertEqual(start[0], start[1].map { -$0 })
        XCTAssertEqual(start[2], start[3].map { -$0 })
        XCTAssertGreaterThan(zip(start[0], start[2]).map { abs($0 - $1) }.max()!, 0.1)
        for step in 0..<sampled.config.sampling.steps {
            let z = try noise(step: step)
            let shared = step >= 2
            for (a, b) in zip(z[0], z[1]) { XCTAssertEqual(a, shared ? b : -b, accuracy: 1e-4, "step \(step)") }
            XCTAssertGreaterThan(zip(z[1], z[2]).map { abs($0 - $1) }.max()!, 0.1)
        }
        var config = sampled.config
        config.imagesPerPrompt = 3
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("antitheticNoise")) }
    }
}

final class GradientNoiseTests: XCTestCase {
    func testCosineOnHandNumbers() {
        XCTAssertEqual(cosine([1, 0], [1, 1]), 1 / 2.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(cosine([1, 2], [-2, 1]), 0, accuracy: 1e-12)
        XCTAssertEqual(cosine([0, 0], [1, 1]), 0)
    }

    /// Zero advantages give zero gradients (no signal, nothing to compare); a varying reward gives
    /// nonzero estimates and per-step norms for the trained steps only; neither moves the parameters.
    func testGradientNoiseMeasuresWithoutTraining() throws {
        var config = FineTuningTrainerTests.tinyConfig()
        config.rewards = RewardComposition(weights: ["fixed": 1])
        config.evaluation.prompts = 0
        let fixed = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("noise-\(UUID())"),
                                    commandLine: "test", rewardFunctions: [FixedReward(value: 0.7)])
        let flat = try fixed.gradientNoise(estimates: 3)
        XCTAssertEqual(flat.meanCosine, 0)
        XCTAssertNil(flat.samplesForUnitSNR)
        XCTAssertEqual(flat.stepGradientNorms, [0, 0, 0, 0])

        config.rewards = RewardComposition(weights: ["compressibility": 1])
        config.trainStepRange = [1, 3]
        let trainer = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("noise-\(UUID())"),
                                      commandLine: "test")
        let before = trainer.parameters.map(\.tensor.values), statistics = trainer.tracker
        let report = try trainer.gradientNoise(estimates: 3)
        XCTAssertEqual(report.steps, [1, 2])
        XCTAssertEqual(report.samplesPerEstimate, config.promptsPerEpoch * config.imagesPerPrompt)
        XCTAssertTrue(report.stepGradientNorms.allSatisfy { $0 > 0 }, "\(report.stepGradientNorms)")
        XCTAssertTrue(report.meanCosine.isFinite && abs(report.meanCosine) <= 1)
        XCTAssertEqual(trainer.parameters.map(\.tensor.values), before)
        XCTAssertEqual(trainer.tracker, statistics)
        XCTAssertTrue(trainer.parameters.allSatisfy { $0.tensor.grad == nil })
        XCTAssertThrowsError(try trainer.gradientNoise(estimates: 1))
        var dpo = config
        dpo.objective = "diffusionDPO"
        let other = try FineTuningTrainer(config: dpo, output: FileManager.default.temporaryDirectory.appendingPathComponent("noise-dpo-\(UUID())"),
                                    commandLine: "test")
        XCTAssertThrowsError(try other.gradientNoise(estimates: 2)) { XCTAssertTrue("\($0)".contains("diffusionDPO"), "\($0)") }
    }
}
