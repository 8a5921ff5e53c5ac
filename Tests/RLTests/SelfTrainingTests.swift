import Foundation
import XCTest
import Diffusion
import Engine
import Images
import Rewards
import RunLog
import World
@testable import RL

/// Filtered self-training: the selection by hand, the anchor's share, an update that fits the
/// kept sample, the buffer across a resume; and the trainer's skip of a non-finite gradient.
final class SelfTrainingTests: XCTestCase {
    func settings(_ selection: SelfTrainingSelection, k: Int = 1, threshold: Double = 0, temperature: Double = 0.25) -> SelfTrainingSettings {
        var s = SelfTrainingSettings()
        s.selection = selection
        s.k = k
        s.threshold = threshold
        s.temperature = temperature
        return s
    }

    /// Two groups of three: top-1 keeps each group's best (the earlier of a tie), top-2 the two
    /// best; the threshold drops what is below it in every mode.
    func testSelectionByHand() {
        let rewards = [0.2, 0.9, 0.9, 1.5, -0.3, 0.4], groups = [0, 0, 0, 1, 1, 1]
        func kept(_ s: SelfTrainingSettings) -> [Int] { selfTrainingSelection(rewards: rewards, groups: groups, settings: s).map(\.index) }
        XCTAssertEqual(kept(settings(.topK, k: 1)), [1, 3])
        XCTAssertEqual(kept(settings(.topK, k: 2)), [1, 2, 3, 5])
        XCTAssertEqual(kept(settings(.topK, k: 5)), [0, 1, 2, 3, 5], "the −0.3 is below the threshold 0")
        XCTAssertEqual(kept(settings(.topK, k: 1, threshold: 1)), [3], "group 0 has no sample at or above 1")
        XCTAssertEqual(kept(settings(.threshold, threshold: 0.5)), [1, 2, 3])
        XCTAssertTrue(selfTrainingSelection(rewards: rewards, groups: groups, settings: settings(.topK, k: 1)).allSatisfy { $0.weight == 1 })
        // weights: n·exp(r/τ)/Σ exp(r/τ) over the kept, by hand for rewards 0.9, 0.9, 1.5 at τ = 0.5.
        let weighted = selfTrainingSelection(rewards: rewards, groups: groups, settings: settings(.weights, threshold: 0.5, temperature: 0.5))
        let e = [exp(1.8), exp(1.8), exp(3.0)], sum = e.reduce(0, +)
        XCTAssertEqual(weighted.map(\.index), [1, 2, 3])
        for (w, x) in zip(weighted.map(\.weight), e) { XCTAssertEqual(w, 3 * x / sum, accuracy: 1e-12) }
    }

    /// `anchorShare` of a batch's rows are pretraining data: a batch of 4 kept samples gets 4
    /// anchors at 0.5, 1 at 0.2, none at 0.
    func testAnchorShareOfABatch() throws {
        var config = FineTuningTrainerTests.tinyConfig()
        for (share, expected) in [(0.5, 4), (0.2, 1), (0.0, 0), (0.75, 12)] {
            config.selfTraining.anchorShare = share
            let objective = SelfTrainingObjective(config: config)
            XCTAssertEqual(objective.anchorCount(forBatchOf: 4), expected, "share \(share)")
            XCTAssertEqual(Double(expected) / Double(4 + expected), share, accuracy: 1e-12)
        }
        config.selfTraining.anchorShare = 1
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("anchorShare"), "\($0)") }
    }

    /// Anchor scenes never render a caption of the tuning or report sets, which unfiltered
    /// training-split draws do.
    func testAnchorsNeverRenderReservedCaptions() throws {
        let objective = SelfTrainingObjective(config: FineTuningTrainerTests.tinyConfig())
        let pool = ["a red circle", "two blue squares"]
        var rng = RandomGenerator(seed: 3)
        let scenes = objective.anchorScenes(400, pool: pool, using: &rng)
        let reserved = objective.reservedCaptions(pool: pool)
        XCTAssertEqual(reserved.count, 256)
        XCTAssertTrue(scenes.allSatisfy { !reserved.contains($0.caption) })
        var unfiltered = RandomGenerator(seed: 3)
        let raw = (0..<400).map { _ in WorldGenerator(seed: 0).scene(.train, index: Int(unfiltered.next() % 100_000_000)) }
        XCTAssertGreaterThan(raw.filter { reserved.contains($0.caption) }.count, 0, "the filter has something to remove")
    }

    /// With `filterAnchors`, anchor scenes the run's reward puts below the threshold are never
    /// trained on: selecting by the gold judge's safety (threshold 1), no anchor carries the hazard
    /// mark, though about one in twenty drawn does; standardized rewards refuse the filter.
    func testFilteredAnchorsPassTheSelection() throws {
        var config = Self.tinySelfTrainingConfig()
        config.rewards = RewardComposition(weights: ["safety": 1])
        config.selfTraining.filterAnchors = true
        config.selfTraining.threshold = 1
        let trainer = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("fa-\(UUID())"),
                                            commandLine: "test")
        let objective = try XCTUnwrap(trainer.objective as? SelfTrainingObjective)
        var rng = RandomGenerator(seed: 5)
        let (scenes, images) = try objective.anchors(300, trainer: trainer, using: &rng)
        XCTAssertEqual(scenes.count, 300)
        XCTAssertEqual(images.count, 300)
        XCTAssertTrue(scenes.allSatisfy { $0.hazard == nil }, "an anchor with the hazard mark was kept")
        var unfiltered = RandomGenerator(seed: 5)
        let raw = objective.anchorScenes(300, pool: trainer.promptPool, using: &unfiltered)
        XCTAssertGreaterThan(raw.filter { $0.hazard != nil }.count, 3, "the filter has something to remove")

        config.rewards = RewardComposition(weights: ["safety": 1, "fidelity": 1], standardize: ["fidelity"])
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("fa-\(UUID())"),
                                                   commandLine: "test")) { error in
            XCTAssertTrue("\(error)".contains("filterAnchors"), "\(error)")
        }
    }

    static func tinySelfTrainingConfig() -> FineTuningConfig {
        var config = FineTuningTrainerTests.tinyConfig()
        config.objective = "selfTraining"
        config.selfTraining.anchorShare = 0
        config.selfTraining.captionDropout = 0
        config.evaluation.prompts = 0
        config.weightDecay = 0
        return config
    }

    /// With `trainTextEncoder` a run moves the text encoder as well as the UNet, writes it into
    /// the model folder (with its digest in the log), and a resumed run is byte-identical; without
    /// it the text encoder is the base's. A LoRA run cannot train the encoder.
    func testTrainTextEncoderMovesAndSavesTheEncoder() throws {
        var config = Self.tinySelfTrainingConfig()
        config.loraRank = 0
        config.epochs = 2
        config.rewards = RewardComposition(weights: ["fixed": 1])
        let base = try LatentDiffusionModel.load(from: URL(fileURLWithPath: config.model))
        func encoder(_ folder: URL) throws -> [[Double]] {
            try LatentDiffusionModel.load(from: folder.appendingPathComponent("model")).textEncoder.namedParameters().map(\.tensor.values)
        }
        var folders: [URL] = []
        for train in [false, true] {
            config.trainTextEncoder = train
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("st-text-\(UUID())")
            let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test", rewardFunctions: [FixedReward(value: 1)])
            XCTAssertEqual(trainer.parameters.contains { $0.name.hasPrefix("text.") }, train)
            try trainer.run()
            try trainer.close()
            folders.append(output)
        }
        XCTAssertEqual(try encoder(folders[0]), base.textEncoder.namedParameters().map(\.tensor.values))
        XCTAssertNotEqual(try encoder(folders[1]), base.textEncoder.namedParameters().map(\.tensor.values))
        let digests = try RunLogReader(url: folders[1].appendingPathComponent("run.h5")).checkpoints().map(\.path)
        XCTAssertTrue(digests.contains("model/text_encoder.safetensors"), "\(digests)")

        // Stopped after the first epoch and resumed: the same encoder, byte for byte.
        let pieces = FileManager.default.temporaryDirectory.appendingPathComponent("st-text-resume-\(UUID())")
        try FineTuningTrainer(config: config, output: pieces, commandLine: "test", rewardFunctions: [FixedReward(value: 1)]).run(stopAfter: 1)
        let resumed = try FineTuningTrainer(config: config, output: pieces, commandLine: "test", resume: true, rewardFunctions: [FixedReward(value: 1)])
        try resumed.run()
        try resumed.close()
        XCTAssertEqual(try Data(contentsOf: pieces.appendingPathComponent("model/text_encoder.safetensors")),
                       try Data(contentsOf: folders[1].appendingPathComponent("model/text_encoder.safetensors")))

        config.loraRank = 4
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("trainTextEncoder"), "\($0)") }
    }

    /// The relabeling rule by hand: a sample that reached the threshold keeps its own caption; the
    /// best candidate at or above it wins, ties to the earlier; none, or only non-finite: nil.
    func testHindsightCandidateByHand() {
        XCTAssertNil(hindsightCandidate(ownReward: 1, candidateRewards: [2, 3], threshold: 1))
        XCTAssertEqual(hindsightCandidate(ownReward: 0.2, candidateRewards: [0.5, 1.1, 1.4, 1.4], threshold: 1), 2)
        XCTAssertEqual(hindsightCandidate(ownReward: 0.2, candidateRewards: [1, 0.3], threshold: 1), 0, "at the threshold counts")
        XCTAssertNil(hindsightCandidate(ownReward: 0.2, candidateRewards: [0.99, 0.5], threshold: 1))
        XCTAssertNil(hindsightCandidate(ownReward: 0.2, candidateRewards: [.nan, .infinity * 0], threshold: 1))
        XCTAssertNil(hindsightCandidate(ownReward: 0.2, candidateRewards: [], threshold: 1))
    }

    /// A reward that is 1 for exactly one caption: every sample below the threshold is relabeled
    /// with that caption when it is one of its prompt's contrastive prompts, and never with a
    /// caption that holds a composition kept out of training or is a tuning or report caption (the
    /// reward prefers it, the filter refuses it). The relabeled caption is what the buffer fits.
    func testRelabelingKeepsMissesWithTheCaptionTheyMatch() throws {
        var config = Self.tinySelfTrainingConfig()
        config.rewards = RewardComposition(weights: ["caption": 1])
        config.selfTraining.threshold = 1
        config.selfTraining.relabelCandidates = 32
        config.selfTraining.anchorShare = 0
        // Among the near misses of a red circle above a green square: "a yellow circle above a
        // green square" (held out), report captions, and others.
        let pool = ["a red circle above a green square"]
        let promptFile = FileManager.default.temporaryDirectory.appendingPathComponent("relabel-\(UUID()).txt")
        try (pool.joined(separator: "\n") + "\n").write(to: promptFile, atomically: true, encoding: .utf8)
        config.prompts = promptFile.path
        let contrastive = try Prompt(parsing: pool[0]).contrastive(limit: 32).map(\.prompt)
        let reserved = SelfTrainingObjective(config: config).reservedCaptions(pool: pool)
        let allowed = try XCTUnwrap(contrastive.first { !WorldGenerator().heldOut.contains($0) && !reserved.contains($0.caption) }).caption
        XCTAssertTrue(contrastive.map(\.caption).contains("a yellow circle above a green square"), "\(contrastive.map(\.caption))")
        let reservedOne = try XCTUnwrap(contrastive.first { reserved.contains($0.caption) }, "a near miss that is a report caption").caption
        for (liked, expected) in [(allowed, allowed), ("a yellow circle above a green square", nil), (reservedOne, nil)] as [(String, String?)] {
            let trainer = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("rl-\(UUID())"),
                                                commandLine: "test", rewardFunctions: [CaptionReward(liked: [liked])])
            var rng = trainer.epochRNG(0)
            let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
            let figures = try trainer.trainObjective(trajectories, indices: Array(0..<trajectories.count),
                                                     rewards: [Double](repeating: 0, count: trajectories.count), rng: &rng)
            let objective = try XCTUnwrap(trainer.objective as? SelfTrainingObjective)
            if let expected {
                XCTAssertEqual(figures["relabeled"], Double(trajectories.count))
                XCTAssertEqual(figures["selected"], 0)
                XCTAssertEqual(objective.buffer.map(\.caption), [String](repeating: expected, count: trajectories.count))
                XCTAssertTrue(figures["loss"]!.isFinite, "\(figures)")
            } else {
                XCTAssertEqual(figures["relabeled"], 0, "'\(liked)' (held out, or a report caption) was used as a caption")
                XCTAssertTrue(objective.buffer.isEmpty)
            }
        }
    }

    /// Compositing draws `partsPerObject` samples of each object caption of every caption no sample
    /// drew correctly, and only of those; what it keeps enters the buffer with the composed caption.
    /// (Which layouts are kept is `bestComposites`', tested in the world's tests with rendered parts.)
    func testCompositingSamplesThePartsOfMissedCaptions() throws {
        var config = Self.tinySelfTrainingConfig()
        config.rewards = RewardComposition(weights: ["caption": 1])
        config.selfTraining.threshold = 1
        config.selfTraining.composites = 8
        config.selfTraining.partsPerObject = 3
        config.selfTraining.anchorShare = 0
        let promptFile = FileManager.default.temporaryDirectory.appendingPathComponent("composite-\(UUID()).txt")
        try "a red circle above a green square\n".write(to: promptFile, atomically: true, encoding: .utf8)
        config.prompts = promptFile.path
        for (liked, parts) in [(["a red circle", "a green square"], 6.0), (["a red circle above a green square"], 0)] {
            let trainer = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("rl-\(UUID())"),
                                                commandLine: "test", rewardFunctions: [CaptionReward(liked: Set(liked))])
            var rng = trainer.epochRNG(0)
            let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
            let rewards = try trainer.composer.score(trajectories.images, prompts: trajectories.prompts).total
            let figures = try trainer.trainObjective(trajectories, indices: Array(0..<trajectories.count), rewards: rewards, rng: &rng)
            XCTAssertEqual(figures["composite_parts_sampled"], parts, "\(liked): \(figures)")
            let objective = try XCTUnwrap(trainer.objective as? SelfTrainingObjective)
            XCTAssertEqual(Double(objective.buffer.count), figures["selected"]! + figures["composited"]!)
            XCTAssertTrue(objective.buffer.allSatisfy { $0.caption == "a red circle above a green square" })
        }
    }

    /// Captions survive the checkpoint's byte tensor, the empty one and non-ASCII ones included;
    /// bytes that are not such a list are refused.
    func testCaptionTensorRoundTrip() throws {
        let captions = ["a red circle", "", "two blue squares left of a green triangle", "ünïcode ✓"]
        XCTAssertEqual(captionsFromTensor(try captionTensor(captions)), captions)
        XCTAssertEqual(captionsFromTensor(try captionTensor([])), [])
        XCTAssertNil(captionsFromTensor(try Tensor([97, 98], shape: [2], dtype: .float64)), "no terminating 0")
        XCTAssertNil(captionsFromTensor(try Tensor([97, 300, 0], shape: [3], dtype: .float64)))
    }

    /// Training on the one kept sample lowers its conditional denoising loss (guidance 1, the
    /// noise and timesteps fixed) more than the other samples'.
    func testAnUpdateFitsTheKeptSample() throws {
        var config = Self.tinySelfTrainingConfig()
        config.selfTraining.k = 1
        config.trainBatch = 4
        config.innerEpochs = 8
        config.learningRate = 3e-3
        config.rewards = RewardComposition(weights: ["fixed": 1])
        let trainer = try FineTuningTrainer.scratch(config, label: "st")
        var rng = trainer.epochRNG(0)
        let (_, _, trajectories) = try trainer.sampleEpoch(using: &rng)
        func perSampleLoss() throws -> [Double] { try trainer.perSampleDenoisingLoss(trajectories, guidance: 1) }
        let before = try perSampleLoss()
        // One group of four; sample 0 has the best reward, so top-1 keeps it alone.
        let figures = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], rewards: [1, 0.5, 0.2, 0.1], groups: [0, 0, 0, 0], rng: &rng)
        let after = try perSampleLoss()
        XCTAssertEqual(figures["selected"], 1)
        XCTAssertEqual(figures["selected_reward"], 1)
        XCTAssertTrue(figures["loss"]!.isFinite && figures["grad_norm"]! > 0, "\(figures)")
        let change = zip(after, before).map { $0 / $1 - 1 }
        XCTAssertLessThan(change[0], 0, "relative change of the kept sample's loss: \(change)")
        XCTAssertLessThan(change[0], change[1...].min()!, "relative changes \(change)")
    }

    /// With a buffer that grows across epochs, stopping after epoch 2 and resuming gives the same
    /// weights byte for byte as a run never interrupted (the buffer is in the checkpoint), and
    /// anchors and caption dropout draw from the epoch's stream like everything else.
    func testResumedRunWithABufferEqualsUninterruptedRun() throws {
        var config = Self.tinySelfTrainingConfig()
        config.selfTraining.bufferSize = 6
        config.selfTraining.anchorShare = 0.5
        config.selfTraining.captionDropout = 0.2
        config.selfTraining.threshold = -1e9
        let whole = FileManager.default.temporaryDirectory.appendingPathComponent("st-whole-\(UUID())")
        let pieces = FileManager.default.temporaryDirectory.appendingPathComponent("st-pieces-\(UUID())")
        var sizes: [Double] = []
        try FineTuningTrainer(config: config, output: whole, commandLine: "test").run(epochDone: { sizes.append($0.training["buffer_size"]!) })
        XCTAssertEqual(sizes, [2, 4, 6], "one kept sample per prompt group of each epoch, up to the buffer's size")
        try FineTuningTrainer(config: config, output: pieces, commandLine: "test").run(stopAfter: 2)
        let resumed = try FineTuningTrainer(config: config, output: pieces, commandLine: "test", resume: true)
        XCTAssertEqual((resumed.objective as! SelfTrainingObjective).buffer.count, 4)
        try resumed.run()
        try resumed.close()
        XCTAssertEqual(try Data(contentsOf: whole.appendingPathComponent("model/unet.safetensors")),
                       try Data(contentsOf: pieces.appendingPathComponent("model/unet.safetensors")))
        let reader = try RunLogReader(url: pieces.appendingPathComponent("run.h5"))
        XCTAssertEqual(try reader.metric("buffer_size"), [2, 4, 6])
        XCTAssertEqual(try reader.metric("selected").count, 3)
    }

    /// A non-finite gradient norm skips the optimizer step, leaves the weights as they were, and
    /// is logged and counted; the next finite one steps again.
    func testANonFiniteGradientSkipsTheUpdateAndIsLogged() throws {
        var config = Self.tinySelfTrainingConfig()
        config.epochs = 1
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("nan-grad-\(UUID())")
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test")
        let before = trainer.parameters.map(\.tensor.values)
        for (k, p) in trainer.parameters.enumerated() {
            p.tensor.grad = Tensor(repeating: k == 0 ? .nan : 0.1, shape: p.tensor.shape, dtype: p.tensor.dtype)
        }
        XCTAssertNil(try trainer.applyAccumulatedGradients())
        XCTAssertEqual(trainer.parameters.map(\.tensor.values), before)
        XCTAssertTrue(trainer.parameters.allSatisfy { $0.tensor.grad == nil }, "the gradients are cleared")
        XCTAssertEqual(trainer.skippedUpdates, 1)
        for p in trainer.parameters { p.tensor.grad = Tensor(repeating: 0.1, shape: p.tensor.shape, dtype: p.tensor.dtype) }
        XCTAssertNotNil(try trainer.applyAccumulatedGradients())
        XCTAssertNotEqual(trainer.parameters.map(\.tensor.values), before)
        try trainer.run()
        try trainer.close()
        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        XCTAssertTrue(try reader.events().contains { $0.kind == "skipped" && $0.message.contains("non-finite gradient norm") })
        XCTAssertEqual(try reader.metric("skipped_updates"), [1])
    }

    /// Epochs whose every update was skipped stop the run at the third in a row, logged; an epoch
    /// with one update taken, or with none tried, resets the count.
    func testARunWhoseEveryUpdateIsSkippedStops() throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("all-skipped-\(UUID())")
        let trainer = try FineTuningTrainer(config: Self.tinySelfTrainingConfig(), output: output, commandLine: "test")
        try trainer.noteUpdates(attempted: 4, skipped: 4)
        try trainer.noteUpdates(attempted: 4, skipped: 3)
        try trainer.noteUpdates(attempted: 2, skipped: 2)
        try trainer.noteUpdates(attempted: 0, skipped: 0)
        try trainer.noteUpdates(attempted: 2, skipped: 2)
        try trainer.noteUpdates(attempted: 2, skipped: 2)
        XCTAssertThrowsError(try trainer.noteUpdates(attempted: 1, skipped: 1)) { XCTAssertTrue("\($0)".contains("3 epochs in a row"), "\($0)") }
        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        XCTAssertTrue(try reader.events().contains { $0.kind == "stopped" && $0.message.contains("non-finite gradients") })
    }

    /// More prompt groups than prompts: prompts repeat, but each group stays its own, so group
    /// advantages and pairs never mix two groups' images.
    func testPromptGroupsDoNotMergeWhenThePoolIsSmall() throws {
        var config = FineTuningTrainerTests.tinyConfig()
        config.promptPool = 1
        config.promptsPerEpoch = 3
        config.evaluation.prompts = 0
        let trainer = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("groups-\(UUID())"),
                                            commandLine: "test")
        XCTAssertEqual(trainer.promptPool.count, 1)
        var rng = trainer.epochRNG(0)
        let (groups, promptIndices, _) = try trainer.sampleEpoch(using: &rng)
        XCTAssertEqual(groups, [0, 0, 1, 1, 2, 2])
        XCTAssertEqual(promptIndices, [0, 0, 0, 0, 0, 0])
    }
}

/// A reward that is 1 for the captions it likes and 0 for every other, whatever the image.
private struct CaptionReward: RewardFunction {
    var liked: Set<String>
    var perspectives: [String] { ["caption"] }
    func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        ["caption": prompts.map { liked.contains($0) ? 1 : 0 }]
    }
}
