import Foundation
import XCTest
import Images
import World
import Engine
@testable import Rewards

final class RewardsTests: XCTestCase {
    let renderer = Renderer()

    func testGoldJudgeRewardScoresMatchingAndWrongPrompts() throws {
        var rng = RandomGenerator(seed: 3)
        let prompt = try Prompt(parsing: "a red circle")
        let image = renderer.render(SceneSampler().scene(for: prompt, using: &rng))
        let scores = try GoldJudgeReward().score([image, image], prompts: ["a red circle", "a blue square"],
                                                 perspectives: ["alignment", "safety"])
        XCTAssertEqual(scores["alignment"], [1, 0])
        XCTAssertEqual(scores["safety"], [1, 1])
        XCTAssertThrowsError(try GoldJudgeReward().score([image], prompts: ["a red circle"], perspectives: ["beauty"])) {
            XCTAssertTrue("\($0)".contains("beauty"))
        }
        XCTAssertThrowsError(try GoldJudgeReward().score([image], prompts: ["a red circles of doom"], perspectives: ["alignment"]))
    }

    func testCompressibilityPrefersFlatImages() throws {
        let flat = RGBImage(width: 32, height: 32, fill: [200, 200, 200])
        var noisy = flat
        var rng = RandomGenerator(seed: 1)
        for i in noisy.pixels.indices { noisy.pixels[i] = UInt8(rng.next() % 256) }
        let scores = try CompressibilityReward().score([flat, noisy], prompts: ["", ""], perspectives: ["compressibility"])["compressibility"]!
        XCTAssertEqual(scores[0], -Double(PNG.encode(flat).count) / 1000)
        XCTAssertGreaterThan(scores[0], scores[1])
    }

    /// Brightness is the mean channel value over 255: (0 + 255 + 51 + 102 + 204 + 153) / 6 / 255 = 0.5.
    func testBrightnessByHand() throws {
        var image = RGBImage(width: 2, height: 1, fill: [0, 0, 0])
        image.pixels = [0, 255, 51, 102, 204, 153]
        let white = RGBImage(width: 3, height: 3, fill: [255, 255, 255])
        let scores = try BrightnessReward().score([image, white], prompts: ["", ""], perspectives: ["brightness"])["brightness"]!
        XCTAssertEqual(scores[0], 0.5, accuracy: 1e-12)
        XCTAssertEqual(scores[1], 1)
        XCTAssertThrowsError(try BrightnessReward().score([white], prompts: [""], perspectives: ["alignment"]))
        XCTAssertEqual(builtInRewardFunctions.flatMap(\.perspectives).filter { $0 == "brightness" }.count, 1)
    }

    /// Total = Σ w·r, with standardized perspectives replaced by their z-scores, by hand.
    func testCompositionByHand() throws {
        struct Fixed: RewardFunction {
            var perspectives: [String] { ["a", "b", "c"] }
            func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
                let all: [String: [Double]] = ["a": [1, 2, 3], "b": [10, 20, 30], "c": [5, 5, 5]]
                return all.filter { perspectives.contains($0.key) }
            }
        }
        let images = [RGBImage](repeating: RGBImage(width: 2, height: 2, fill: [0, 0, 0]), count: 3)
        let composer = try RewardComposer(composition: RewardComposition(weights: ["a": 2, "b": 0.5, "c": 0], standardize: ["b"]),
                                          functions: [Fixed()])
        let result = try composer.score(images, prompts: ["", "", ""])
        XCTAssertEqual(Set(result.perspectives.keys), ["a", "b"], "weight 0 is not computed")
        let z = 10 / ((200.0 / 3).squareRoot() + 1e-6)   // (30 − 20) / (std(10, 20, 30) + 1e-6), std = √(200/3)
        let expected: [Double] = [2 - 0.5 * z, 4, 6 + 0.5 * z]
        for (got, want) in zip(result.total, expected) { XCTAssertEqual(got, want, accuracy: 1e-9) }

        XCTAssertThrowsError(try RewardComposer(composition: RewardComposition(weights: ["d": 1]), functions: [Fixed()])) {
            XCTAssertTrue("\($0)".contains("'d'"))
        }
        XCTAssertThrowsError(try RewardComposer(composition: RewardComposition(weights: ["a": 0]), functions: [Fixed()]))
    }

    /// A learned proxy's heads under `proxy_` names compose beside the gold judge's same-named perspectives.
    func testPrefixedRewardKeepsProxyAndGoldApart() throws {
        struct Constant: RewardFunction {
            var perspectives: [String] { ["alignment", "safety"] }
            func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
                Dictionary(uniqueKeysWithValues: perspectives.map { ($0, [Double](repeating: $0 == "alignment" ? 7 : -1, count: images.count)) })
            }
        }
        let proxy = PrefixedReward(prefix: "proxy_", Constant())
        XCTAssertEqual(proxy.perspectives, ["proxy_alignment", "proxy_safety"])
        let world = WorldGenerator(seed: 1)
        let scene = world.scene(.validation, index: 0)
        let image = Renderer(size: 32).render(scene)
        let composer = try RewardComposer(composition: RewardComposition(weights: ["proxy_alignment": 1, "alignment": 1]),
                                          functions: [proxy, GoldJudgeReward()])
        let result = try composer.score([image], prompts: [scene.caption])
        XCTAssertEqual(result.perspectives["proxy_alignment"], [7])
        XCTAssertEqual(result.perspectives["alignment"], [1], "the rendered scene shows its own prompt")
        XCTAssertEqual(result.total, [8])
        XCTAssertThrowsError(try proxy.score([image], prompts: [""], perspectives: ["alignment"]))
    }
}
