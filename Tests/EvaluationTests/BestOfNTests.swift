import Diffusion
import Engine
import Foundation
import Images
import Inputs
import World
import XCTest
@testable import Evaluation

/// Best-of-N in the gold evaluation: candidate 0 is the plain sample of the same seed, the kept
/// image is each job's argmax (ties to the earlier candidate), and the candidates' noise differs.
final class BestOfNTests: XCTestCase {
    let model: LatentDiffusionModel = {
        var rng = RandomGenerator(seed: 3)
        let captions = WorldGenerator(seed: 0).scenes(.train, count: 2000).map(\.caption)
        let model = try! LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: captions), using: &rng)
        for p in model.unet.namedParameters() { p.tensor.assign(try! p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &rng)) }
        return model
    }()

    func evaluate(_ selection: GoldEvaluation.Selection?, bestOf: Int = 1,
                  collect: ([Prompt], [RGBImage]) -> Void = { _, _ in }) throws -> GoldEvaluation.Report {
        var settings = SamplingSettings()
        settings.steps = 3
        settings.seed = 40
        let prompts = GoldEvaluation.prompts(split: .validation, count: 3)
        return try GoldEvaluation.run(model: model, prompts: prompts, label: "validation", imagesPerPrompt: 2, settings: settings, batch: 4,
                                      bestOf: bestOf, selection: selection, collect: collect)
    }

    func testSelectionKeepsTheArgmaxOfEachJob() throws {
        var plain: [RGBImage] = []
        _ = try evaluate(nil) { plain += $1 }
        // A scorer that remembers every candidate and scores it by a fixed pseudo-random table.
        var seen: [[UInt8]] = [], scoresGiven: [Double] = []  // ties included: 5 values over 18 candidates
        var candidates: [RGBImage] = []
        let selection = GoldEvaluation.Selection(name: "table") { images, _ in
            let scores = images.indices.map { Double((seen.count + $0) * 7 % 5) }
            for (image, score) in zip(images, scores) { seen.append(image.pixels); candidates.append(image); scoresGiven.append(score) }
            return scores
        }
        var kept: [RGBImage] = []
        let report = try evaluate(selection, bestOf: 3) { kept += $1 }
        XCTAssertEqual(report.bestOf, 3)
        XCTAssertEqual(report.selectedBy, "table")
        let jobs = plain.count
        XCTAssertEqual(candidates.count, 3 * jobs)
        // Candidate 0 of every job is the plain sample; the others differ from it.
        for j in 0..<jobs {
            XCTAssertEqual(candidates[j].pixels, plain[j].pixels, "job \(j): candidate 0 is the plain sample")
            XCTAssertNotEqual(candidates[jobs + j].pixels, plain[j].pixels, "job \(j): candidate 1 has its own noise")
        }
        for j in 0..<jobs {
            let scores = (0..<3).map { scoresGiven[$0 * jobs + j] }
            let best = scores.indices.max { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 > $1) }!
            XCTAssertEqual(kept[j].pixels, candidates[best * jobs + j].pixels, "job \(j): scores \(scores)")
        }
    }

    /// With N = 1 selection changes nothing: the same images and scores as plain sampling.
    func testBestOfOneIsPlainSampling() throws {
        let plain = try evaluate(nil)
        let one = try evaluate(GoldEvaluation.Selection(name: "any") { images, _ in images.map { _ in 0 } }, bestOf: 1)
        XCTAssertEqual(plain.imageScores, one.imageScores)
    }
}
