import Diffusion
import Engine
import Evaluation
import Foundation
import Inputs
import RunLog
import Statistics
import World
import XCTest
@testable import Studies

/// Best-of-N selection from a candidate table, by hand; and a study run, stopped and resumed.
final class CandidateTableTests: XCTestCase {
    /// Three candidates × four slots (two prompts), columns "a" (scale 1) and "b" (scale 100).
    func table() throws -> CandidateTable {
        var table = CandidateTable(columnNames: ["a", "b", "gold"], slotPrompts: [0, 0, 1, 1])
        try table.append(["a": [0, 1, 2, 3], "b": [0, 100, 0, 100], "gold": [0, 0, 1, 0]])
        try table.append(["a": [1, 0, 5, 3], "b": [300, 0, 0, -100], "gold": [1, 0, 0, 1]])
        try table.append(["a": [2, .nan, 1, 4], "b": [0, 200, 100, 0], "gold": [1, 1, 1, 1]])
        return table
    }

    func testSelectionIsTheArgmaxPerSlotAmongTheFirstN() throws {
        let t = try table()
        let byA = StudySelector(name: "a", weights: ["a": 1])
        XCTAssertEqual(try t.chosen(byA, n: 1), [0, 0, 0, 0])
        XCTAssertEqual(try t.chosen(byA, n: 2), [1, 0, 1, 0], "slot 3 ties at 3: broken at random, here for candidate 0")
        XCTAssertEqual(try t.chosen(byA, n: 3), [2, 0, 1, 2], "a NaN never wins")
        // Weights act on standardized columns: candidate 0's "a" has mean 1.5, s.d. √1.25; "b" mean 50, s.d. 50.
        // Slot 0 by a + b: z = (0−1.5)/1.118 + (0−50)/50 = −2.34; (1−1.5)/1.118 + (300−50)/50 = 4.55; (2−1.5)/1.118 − 1 = −0.55.
        let both = StudySelector(name: "both", weights: ["a": 1, "b": 1])
        XCTAssertEqual(try t.chosen(both, n: 3)[0], 1)
        // Slot 2: −b alone prefers candidates 0 and 1 (b = 0) over 2; a·1 − b·1: z_a(5) = 3.13 wins.
        XCTAssertEqual(try t.chosen(StudySelector(name: "x", weights: ["a": 1, "b": -1]), n: 3)[2], 1)
        XCTAssertThrowsError(try t.chosen(byA, n: 4))
        XCTAssertThrowsError(try t.chosen(StudySelector(name: "c", weights: ["c": 1]), n: 2))
    }

    func testGainsArePairedWithPlainSamplingAndClusteredByPrompt() throws {
        let t = try table()
        let gains = try t.gains(StudySelector(name: "a", weights: ["a": 1]), n: 3, in: ["gold"])["gold"]!
        // Kept gold [1, 0, 0, 1] minus plain [0, 0, 1, 0] = [1, 0, −1, 1]: mean 0.25.
        XCTAssertEqual(gains.mean, 0.25, accuracy: 1e-12)
        // Residuals [0.75, −0.25, −1.25, 0.75]: prompt sums 0.5 and −0.5; SE² = 2/1 · 0.5 / 16.
        XCTAssertEqual(gains.standardError, (2.0 * 0.5 / 16).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(gains.clusters, 2)
        XCTAssertEqual(try t.gains(StudySelector(name: "a", weights: ["a": 1]), n: 1, in: ["gold"])["gold"]!.mean, 0)
    }

    func testTiesAreBrokenAtRandomNotTowardTheFirstCandidate() throws {
        var t = CandidateTable(columnNames: ["flat"], slotPrompts: Array(0..<400))
        for _ in 0..<4 { try t.append(["flat": [Double](repeating: 1, count: 400)]) }
        let picks = try t.chosen(StudySelector(name: "flat", weights: ["flat": 1]), n: 4)
        for c in 0..<4 { XCTAssertEqual(Double(picks.filter { $0 == c }.count), 100, accuracy: 35, "candidate \(c)") }
        XCTAssertEqual(picks, try t.chosen(StudySelector(name: "flat", weights: ["flat": 1]), n: 4), "deterministic")
    }

    func testAStudyStoppedMidwayResumesWithoutRedrawingAndEndsAsAnUninterruptedOne() throws {
        var rng = RandomGenerator(seed: 3)
        let captions = WorldGenerator(seed: 0).scenes(.train, count: 2000).map(\.caption)
        let model = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: captions), using: &rng)
        for p in model.unet.namedParameters() { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &rng)) }
        let prompts = GoldEvaluation.prompts(split: .validation, count: 2)
        var sampling = SamplingSettings()
        sampling.steps = 2
        let settings = BestOfNStudySettings(study: "test", model: "tiny", rewardModels: [], promptSource: "validation",
                                            captions: prompts.map(\.caption), imagesPerPrompt: 2, candidates: 4, sampling: sampling,
                                            scorers: ["mean_red"], selectors: [StudySelector(name: "mean_red", weights: ["mean_red": 1])],
                                            reported: ["gold_alignment", "mean_red"])
        var calls = 0, failAt = Int.max
        let scorer = GoldEvaluation.Selection(name: "mean_red") { images, _ in
            calls += 1
            if calls == failAt { throw StudyError("stopped on purpose") }
            return images.map { image in Double(stride(from: 0, to: image.pixels.count, by: 3).map { Int(image.pixels[$0]) }.reduce(0, +)) }
        }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("study-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        let whole = try BestOfNStudy.run(model: model, prompts: prompts, settings: settings, scorers: [scorer],
                                         folder: root.appendingPathComponent("whole"), start: .new, batch: 4)
        XCTAssertEqual(calls, 4, "one scoring batch per candidate")
        // The same study fails while scoring candidate 2 (the third): candidates 0 and 1 are in its log.
        calls = 0
        failAt = 3
        let folder = root.appendingPathComponent("stopped")
        XCTAssertThrowsError(try BestOfNStudy.run(model: model, prompts: prompts, settings: settings, scorers: [scorer],
                                                  folder: folder, start: .new, batch: 4))
        XCTAssertEqual(try RunLogReader(url: folder.appendingPathComponent("run.h5")).epochs(), 2)
        XCTAssertThrowsError(try BestOfNStudy.run(model: model, prompts: prompts, settings: settings, scorers: [scorer],
                                                  folder: folder, start: .new, batch: 4), "a study is never clobbered without --force")
        var other = settings
        other.candidates = 5
        XCTAssertThrowsError(try BestOfNStudy.run(model: model, prompts: prompts, settings: other, scorers: [scorer],
                                                  folder: folder, start: .resume, batch: 4), "resumed under other settings")
        calls = 0
        failAt = .max
        let resumed = try BestOfNStudy.run(model: model, prompts: prompts, settings: settings, scorers: [scorer], folder: folder,
                                           start: .resume, batch: 4)
        XCTAssertEqual(calls, 2, "only candidates 2 and 3 are drawn again")
        for name in whole.columns.keys { XCTAssertEqual(resumed.columns[name], whole.columns[name], name) }
        let log = try RunLogReader(url: folder.appendingPathComponent("run.h5"))
        XCTAssertEqual(try log.epochs(), 4)
        XCTAssertEqual(try log.sampleColumn("epoch"), (0..<4).flatMap { [Double](repeating: Double($0), count: 4) }, "every candidate once")
        XCTAssertEqual(try log.metric("kl_bound")[3], Foundation.log(4.0) - 0.75, accuracy: 1e-12)
        let gain = try whole.gains(settings.selectors[0], n: 4, in: ["mean_red"])["mean_red"]!
        XCTAssertEqual(try log.metric("gain_mean_red_by_mean_red")[3], gain.mean, accuracy: 1e-9)
        XCTAssertGreaterThanOrEqual(gain.mean, 0, "best of 4 by a score is never below plain sampling in it")
    }
}
