import Foundation
import XCTest
import Engine
import Images
import Inputs
import Rewards
import World
@testable import RewardModel

/// Online reward refresh: steps on annotator-labeled pairs of the given images make the reward
/// model order those pairs as the annotators do; its state round-trips through a checkpoint.
final class OnlineRefreshTests: XCTestCase {
    /// Per group, the render of a caption and the render of one of its near misses, both judged
    /// against the caption: the annotators prefer the correct one for alignment.
    func groups() throws -> (images: [RGBImage], prompts: [String], groups: [Int]) {
        let captions = ["a red circle", "two blue squares", "a green triangle above a red square", "three yellow triangles",
                        "a blue circle to the left of a green square", "a small red triangle"]
        var rng = RandomGenerator(seed: 8)
        let sampler = SceneSampler(hazardRate: 0), renderer = Renderer(size: 32)
        var images: [RGBImage] = [], prompts: [String] = [], groups: [Int] = []
        for (g, caption) in captions.enumerated() {
            let prompt = try Prompt(parsing: caption)
            let miss = try XCTUnwrap(prompt.contrastive(limit: 1).first).prompt
            for shown in [prompt, miss] {
                images.append(renderer.render(sampler.scene(for: shown, using: &rng)))
                prompts.append(caption)
                groups.append(g)
            }
        }
        return (images, prompts, groups)
    }

    func reward() throws -> LearnedReward {
        var config = RewardModelConfig.tiny
        config.imageSize = 32
        config.patchSize = 8
        config.maxTextLength = 12
        config.perspectives = ["alignment", "safety"]
        let tokenizer = Tokenizer(captions: WorldGenerator(seed: 0).scenes(.train, count: 500).map(\.caption))
        var rng = RandomGenerator(seed: 3)
        return LearnedReward(model: try LLaVAReward(config, vocabularySize: tokenizer.count, using: &rng), tokenizer: tokenizer)
    }

    /// Share of groups whose correct render (the first) the alignment head scores above the miss.
    func correctFirst(_ reward: LearnedReward, _ data: (images: [RGBImage], prompts: [String], groups: [Int])) throws -> Double {
        let scores = try reward.score(data.images, prompts: data.prompts, perspectives: ["alignment"])["alignment"]!
        let wins = stride(from: 0, to: scores.count, by: 2).filter { scores[$0] > scores[$0 + 1] }.count
        return Double(wins) / Double(scores.count / 2)
    }

    func testRefreshLearnsTheAnnotatorsPairs() throws {
        let data = try groups(), reward = try reward()
        let before = try correctFirst(reward, data)
        var settings = RewardRefreshSettings()
        settings.steps = 40
        settings.pairsPerStep = 12
        settings.learningRate = 3e-3
        var rng = RandomGenerator(seed: 1)
        let first = try reward.refresh(images: data.images, prompts: data.prompts, groups: data.groups, settings: settings, using: &rng)
        XCTAssertTrue(first.loss.isFinite && first.agreementBefore >= 0 && first.agreementBefore <= 1, "\(first)")
        let after = try correctFirst(reward, data)
        XCTAssertGreaterThanOrEqual(after, 5.0 / 6, "correct render first in \(after) of the groups after the refresh (before: \(before))")
        XCTAssertGreaterThan(after, before)
        // A second refresh starts where the first ended: it agrees with the annotators more at its start.
        let second = try reward.refresh(images: data.images, prompts: data.prompts, groups: data.groups, settings: settings, using: &rng)
        XCTAssertGreaterThan(second.agreementBefore, first.agreementBefore)
        XCTAssertLessThan(second.loss, first.loss)
    }

    /// The refreshed weights and the refresh optimizer's moments come back from a checkpoint:
    /// a restored copy scores and refreshes exactly as the original.
    func testRefreshStateRoundTrips() throws {
        let data = try groups(), original = try reward(), copy = try reward()
        XCTAssertEqual(try original.refreshState().count, 0, "nothing to save before the first refresh")
        var settings = RewardRefreshSettings()
        settings.steps = 3
        var rng = RandomGenerator(seed: 2)
        _ = try original.refresh(images: data.images, prompts: data.prompts, groups: data.groups, settings: settings, using: &rng)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refresh-\(UUID()).safetensors")
        try Safetensors.write(try original.refreshState(), to: url)
        try copy.restoreRefreshState(Safetensors.read(url).tensors)
        XCTAssertEqual(try copy.score(data.images, prompts: data.prompts, perspectives: ["alignment"]),
                       try original.score(data.images, prompts: data.prompts, perspectives: ["alignment"]))
        var a = RandomGenerator(seed: 9), b = RandomGenerator(seed: 9)
        _ = try original.refresh(images: data.images, prompts: data.prompts, groups: data.groups, settings: settings, using: &a)
        _ = try copy.refresh(images: data.images, prompts: data.prompts, groups: data.groups, settings: settings, using: &b)
        XCTAssertEqual(try copy.score(data.images, prompts: data.prompts, perspectives: ["alignment"]),
                       try original.score(data.images, prompts: data.prompts, perspectives: ["alignment"]))
        // Behind the names a fine-tuning run sees it by (proxy_… and its TextNorm), it is found once.
        var heads = TextNormSettings()
        heads.heads = ["alignment"]
        let textNorm = try TextNormReward(original, settings: heads)
        let found = refreshableRewards([PrefixedReward(prefix: "proxy_", original), PrefixedReward(prefix: "proxy_", textNorm)])
        XCTAssertEqual(found.count, 1)
        XCTAssertTrue(found[0] === original)
    }
}
