import Inputs
import XCTest
import Diffusion
import Engine
import Rewards
import World
@testable import RewardModel

/// TextNorm on a tiny reward model: the image side shared by a prompt set equals scoring each
/// pair, r̃ is differentiable in the image, and the batched score equals the differentiable values.
final class TextNormRewardTests: XCTestCase {
    let captions = ["a red circle", "two blue squares", "a green square to the right of a blue circle"]

    /// `score` (batched, no graph, what sampling-time rewards use) gives the differentiable values.
    func testScoreEqualsTheDifferentiableValues() throws {
        let base = try reward(dtype: .float32)
        let textNorm = try TextNormReward(base, settings: TextNormSettings())
        base.batchSize = 2
        let rendered = try ImageTensors.images(images(3))
        let prompts = captions
        let scores = try textNorm.score(rendered, prompts: prompts, perspectives: ["textnorm_alignment", "textnorm_overall"])
        let direct = try textNorm.differentiableScores(ImageTensors.tensor(rendered), prompts: prompts, perspectives: ["textnorm_overall"])
        XCTAssertEqual(scores["textnorm_alignment"]!.count, 3)
        XCTAssertTrue(scores["textnorm_alignment"]!.allSatisfy { $0 > 0 && $0 < 1 })
        for (a, b) in zip(scores["textnorm_overall"]!, direct["textnorm_overall"]!.values) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    func reward(dtype: DType = .float64) throws -> LearnedReward {
        var world: [String] = captions
        for caption in captions { world += try Prompt(parsing: caption).contrastive(limit: 8).map(\.prompt.caption) }
        var rng = RandomGenerator(seed: 2)
        let tokenizer = Tokenizer(captions: world)
        var config = RewardModelConfig.tiny
        config.perspectives = ["alignment", "safety", "overall"]
        let model = try LLaVAReward(config, vocabularySize: tokenizer.count, dtype: dtype, using: &rng)
        return LearnedReward(model: model, tokenizer: tokenizer)
    }

    func images(_ count: Int) -> Tensor {
        var rng = RandomGenerator(seed: 5)
        return Tensor.uniform([count, 3, 8, 8], low: -1, high: 1, dtype: .float64, using: &rng)
    }

    /// Sharing each image's tokens among its prompts gives the rewards that scoring every
    /// (image, prompt) pair on its own gives; r̃ is differentiable in the image.
    func testSharedImageSideEqualsScoringEachPairAndIsDifferentiable() throws {
        let base = try reward()
        var settings = TextNormSettings()
        settings.contrastivePrompts = 3
        let textNorm = try TextNormReward(base, settings: settings)
        let x = images(2), prompts = Array(captions.prefix(2))
        let (shared, sizes) = try textNorm.setRewards(x, prompts: prompts, heads: ["alignment"])
        XCTAssertEqual(sizes, [4, 4])
        let sets = try prompts.map { [$0] + (try textNorm.sets.contrastive($0)) }
        let rows = sets.enumerated().flatMap { [Int](repeating: $0.offset, count: $0.element.count) }
        let separate = try base.model.column(try base.rewards(x.indexSelect(axis: 0, rows), prompts: sets.flatMap { $0 }), "alignment")
        for (a, b) in zip(shared["alignment"]!.values, separate.values) { XCTAssertEqual(a, b, accuracy: 1e-10) }
        let report = try gradientCheck([x]) { try textNorm.differentiableScores($0[0], prompts: prompts, perspectives: ["textnorm_alignment"])["textnorm_alignment"]! }
        XCTAssertLessThan(report.maxRelativeError, 1e-5, "\(report)")
        XCTAssertThrowsError(try TextNormReward(base, settings: { var s = settings; s.heads = ["beauty"]; return s }()))
    }

}
