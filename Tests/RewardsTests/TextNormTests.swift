import XCTest
import Engine
import World
@testable import Rewards

/// TextNorm (Kim et al. 2024): r̃ by hand, its gradient by finite differences, and contrastive
/// sets that never hold the prompt.
final class TextNormTests: XCTestCase {
    /// r̃ = exp(r₀/τ) / Σ exp(r_j/τ) per set: rewards (1, 0, −1) at τ = 0.5 give
    /// e² / (e² + 1 + e⁻²) = 0.866813; a set whose prompts score alike gives 1/n whatever the score.
    func testTextNormByHand() throws {
        let rewards = try Tensor([1, 0, -1, 0.3, 0.3], shape: [5], dtype: .float64)
        let r = try textNormalized(rewards, setSizes: [3, 2], temperature: 0.5).values
        let e2 = exp(2.0)
        XCTAssertEqual(r[0], e2 / (e2 + 1 + 1 / e2), accuracy: 1e-12)
        XCTAssertEqual(r[0], 0.866813, accuracy: 1e-6)
        XCTAssertEqual(r[1], 0.5, accuracy: 1e-12)
        // A set of one prompt (no near miss) is certain.
        XCTAssertEqual(try textNormalized(try Tensor([-3], shape: [1], dtype: .float64), setSizes: [1], temperature: 1).values[0], 1, accuracy: 1e-12)
        XCTAssertThrowsError(try textNormalized(rewards, setSizes: [3, 3], temperature: 1))
        XCTAssertThrowsError(try textNormalized(rewards, setSizes: [3, 2], temperature: 0))
    }

    func testTextNormGradientByFiniteDifferences() throws {
        var rng = RandomGenerator(seed: 11)
        let rewards = Tensor.randn([8], std: 1.5, dtype: .float64, using: &rng)
        let report = try gradientCheck([rewards]) { try textNormalized($0[0], setSizes: [3, 1, 4], temperature: 0.7) }
        XCTAssertLessThan(report.maxRelativeError, 1e-6, "\(report)")
    }

    /// C(y) never holds y, has no repeats and at most k prompts — from the world or from a file.
    func testContrastiveSetsNeverHoldThePrompt() throws {
        var settings = TextNormSettings()
        settings.contrastivePrompts = 6
        let sets = try ContrastiveSets(settings)
        let world = WorldGenerator(seed: 4)
        for split in [Split.train, .validation, .heldout] {
            for scene in world.scenes(split, count: 100) {
                let set = try sets.contrastive(scene.caption)
                XCTAssertFalse(set.contains(scene.caption), scene.caption)
                XCTAssertEqual(Set(set).count, set.count, "\(scene.caption): \(set)")
                XCTAssertLessThanOrEqual(set.count, 6)
                XCTAssertGreaterThan(set.count, 0)
            }
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("contrastive-\(UUID()).jsonl")
        try """
        {"prompt": "a cat on a mat", "contrastive": ["a dog on a mat", "a cat on a mat", "a cat under a mat", "a dog on a mat"]}
        """.write(to: file, atomically: true, encoding: .utf8)
        settings.contrastiveFile = file.path
        let given = try ContrastiveSets(settings)
        XCTAssertEqual(try given.contrastive("a cat on a mat"), ["a dog on a mat", "a cat under a mat"])
        XCTAssertFalse(try given.contrastive("a red circle").isEmpty, "world prompts still come from the world")
        XCTAssertThrowsError(try given.contrastive("a horse in a field"))
    }
}
