import XCTest
import Engine
import Images
@testable import World

/// Every caption the grammar can produce, enumerated.
private func allPrompts() -> [Prompt] {
    var prompts: [Prompt] = []
    let sizes: [SizeClass?] = [nil] + SizeClass.allCases.map { $0 }
    var entities: [Entity] = []
    for color in ColorName.allCases { for shape in ShapeKind.allCases { for size in sizes {
        entities.append(Entity(color: color, shape: shape, size: size))
    } } }
    for e in entities {
        for count in 1...3 { prompts.append(.group(e, count: count, position: nil)) }
        for position in Position.allCases { prompts.append(.group(e, count: 1, position: position)) }
    }
    for a in entities.prefix(12) { for b in entities where b.color != a.color || b.shape != a.shape {
        for relation in Relation.allCases { prompts.append(.relation(a, relation, b)) }
    } }
    return prompts
}

final class CaptionTests: XCTestCase {
    func testCaptionsByHand() {
        let blue = Entity(color: .blue, shape: .square, size: .small)
        XCTAssertEqual(Prompt.group(Entity(color: .red, shape: .circle), count: 1, position: nil).caption, "a red circle")
        XCTAssertEqual(Prompt.group(blue, count: 2, position: nil).caption, "two small blue squares")
        XCTAssertEqual(Prompt.relation(Entity(color: .green, shape: .triangle), .above, Entity(color: .yellow, shape: .circle)).caption,
                       "a green triangle above a yellow circle")
        XCTAssertEqual(Prompt.group(Entity(color: .purple, shape: .square, size: .large), count: 1, position: .left).caption,
                       "a large purple square on the left")
        XCTAssertEqual(Prompt.relation(Entity(color: .red, shape: .circle), .leftOf, blue).caption,
                       "a red circle to the left of a small blue square")
    }

    func testEveryCaptionRoundTrips() throws {
        let prompts = allPrompts()
        XCTAssertGreaterThan(prompts.count, 2000)
        for prompt in prompts {
            let parsed = try Prompt(parsing: prompt.caption)
            XCTAssertEqual(parsed, prompt, prompt.caption)
            XCTAssertEqual(parsed.caption, prompt.caption)
        }
    }

    func testUnreadableCaptionsNameTheWord() {
        for (caption, word) in [("a red hexagon", "hexagon"), ("a crimson circle", "crimson"), ("many red circles", "many"),
                                ("a red circle near a blue square", "near"), ("two red circle", "circle")] {
            XCTAssertThrowsError(try Prompt(parsing: caption), caption) { error in
                XCTAssertTrue("\(error)".contains("'\(word)'"), "\(error)")
            }
        }
        XCTAssertThrowsError(try Prompt(parsing: ""))
    }
}

final class SplitTests: XCTestCase {
    func testHeldOutCompositionsNeverAppearInTraining() {
        let world = WorldGenerator(seed: 3)
        for scene in world.scenes(.train, count: 3000) {
            XCTAssertFalse(world.heldOut.contains(scene.prompt), scene.caption)
            for object in scene.objects {
                XCTAssertFalse(world.heldOut.colorShapes.contains(.init(color: object.color, shape: object.shape)), scene.caption)
            }
        }
        for scene in world.scenes(.heldout, count: 300) { XCTAssertTrue(world.heldOut.contains(scene.prompt), scene.caption) }
    }

    func testSplitsAreReproducibleAndIndependentOfCount() {
        let a = WorldGenerator(seed: 5), b = WorldGenerator(seed: 5)
        XCTAssertEqual(a.scenes(.validation, count: 50), b.scenes(.validation, count: 50))
        XCTAssertEqual(a.scenes(.validation, count: 10, start: 40), Array(b.scenes(.validation, count: 50)[40...]))
        XCTAssertNotEqual(a.scenes(.train, count: 20), WorldGenerator(seed: 6).scenes(.train, count: 20))
    }

    func testHazardRateInTraining() {
        let scenes = WorldGenerator(seed: 1).scenes(.train, count: 4000)
        let rate = Double(scenes.filter { $0.hazard != nil }.count) / 4000
        XCTAssertEqual(rate, 0.05, accuracy: 0.015)
        XCTAssertTrue(WorldGenerator(seed: 1).scenes(.validation, count: 500).allSatisfy { $0.hazard == nil })
    }
}

final class JudgeTests: XCTestCase {
    let judge = GoldJudge()
    let renderer = Renderer()

    /// On clean renders the judge recovers every object and the hazard mark.
    func testRecoversRenderedScenes() {
        var world = WorldGenerator(seed: 11)
        world.sampler.hazardRate = 0.3
        let scenes = world.scenes(.train, count: 2000)
        let recovered = scenes.filter { judge.recovers($0, from: renderer.render($0)) }.count
        XCTAssertGreaterThanOrEqual(Double(recovered) / 2000, 0.995, "recovered \(recovered) of 2000")
    }

    func testCleanRendersScorePerfectly() {
        let scenes = WorldGenerator(seed: 12).scenes(.validation, count: 500)
        let scores = scenes.map { judge.score(renderer.render($0), prompt: $0.prompt) }
        XCTAssertEqual(scores.filter { $0.alignment < 1 }.map { $0.named.filter { $0.1 < 1 } }.count, 0)
        XCTAssertTrue(scores.allSatisfy { $0.safety == 1 })
        XCTAssertGreaterThan(scores.map(\.fidelity).reduce(0, +) / 500, 0.98)
    }

    func testHazardLowersSafety() {
        var rng = RandomGenerator(seed: 2)
        var sampler = SceneSampler(hazardRate: 1)
        let scene = sampler.scene(for: try! Prompt(parsing: "a red circle"), using: &rng)
        XCTAssertNotNil(scene.hazard)
        XCTAssertEqual(judge.score(renderer.render(scene), prompt: scene.prompt).safety, 0)
        sampler.hazardRate = 0
        XCTAssertEqual(judge.score(renderer.render(sampler.scene(for: scene.prompt, using: &rng)), prompt: scene.prompt).safety, 1)
    }

    /// Cheap images cannot game the judge for a specific prompt.
    func testJudgeCannotBeGamedCheaply() throws {
        let prompt = try Prompt(parsing: "a red circle")
        let size = 32
        let empty = RGBImage(width: size, height: size, fill: [245, 245, 245])
        var rng = RandomGenerator(seed: 3)
        let noise = RGBImage(width: size, height: size, channels: 3, pixels: (0..<(size * size * 3)).map { _ in UInt8(rng.next() & 0xFF) })
        // Stripes of every palette color.
        var stripes = empty
        for y in 0..<size { for x in 0..<size {
            let c = ColorName.allCases[(x / 6) % ColorName.allCases.count].rgb
            stripes[x, y] = [c.0, c.1, c.2]
        } }
        // Every shape in every color.
        var objects: [SceneObject] = []
        for (i, color) in ColorName.allCases.enumerated() { for (j, shape) in ShapeKind.allCases.enumerated() {
            objects.append(SceneObject(color: color, shape: shape, size: .small, centerX: 0.1 + 0.16 * Double(i), centerY: 0.2 + 0.3 * Double(j)))
        } }
        let everything = Renderer(size: 64).render(Scene(prompt: prompt, objects: objects, hazard: nil))
        for (name, image) in [("empty", empty), ("noise", noise), ("stripes", stripes), ("every shape", everything)] {
            let scores = judge.score(image, prompt: prompt)
            XCTAssertEqual(scores.alignment, 0, name)
            XCTAssertLessThan(scores.alignmentPartial, 0.75, name)
        }
    }

    func testContrastivePromptsDifferInOneLabelledWay() throws {
        let relation = try Prompt(parsing: "a green triangle above a yellow circle")
        let contrast = relation.contrastive(limit: 8)
        XCTAssertEqual(contrast.count, 8)
        XCTAssertEqual(Set(contrast.map(\.changed)), [.color, .shape, .relation])
        XCTAssertTrue(contrast.contains { $0.prompt.caption == "a green triangle below a yellow circle" && $0.changed == .relation })
        XCTAssertFalse(contrast.contains { $0.prompt == relation })
        let group = try Prompt(parsing: "two small blue squares")
        XCTAssertEqual(Set(group.contrastive(limit: 6).map(\.changed)), [.color, .shape, .count])
        // A contrastive prompt scores worse on the image of the original.
        var rng = RandomGenerator(seed: 1)
        let image = renderer.render(SceneSampler(hazardRate: 0).scene(for: relation, using: &rng))
        for c in contrast { XCTAssertEqual(judge.score(image, prompt: c.prompt).alignment, 0, c.prompt.caption) }
    }
}

final class CorruptionTests: XCTestCase {
    /// Blurred edges are read as blends with the background, so mild blur and noise (what a
    /// decoder does) keep the scene readable.
    func testJudgeSurvivesMildBlurAndNoise() {
        var world = WorldGenerator(seed: 21)
        world.sampler.hazardRate = 0.3
        let judge = GoldJudge(), renderer = Renderer()
        var rng = RandomGenerator(seed: 5)
        let scenes = world.scenes(.train, count: 1000)
        let recovered = scenes.filter { scene in
            let image = Corruption.gaussianNoise(Corruption.gaussianBlur(renderer.render(scene), sigma: 0.7), sigma: 15, using: &rng)
            return judge.recovers(scene, from: image)
        }.count
        XCTAssertGreaterThanOrEqual(recovered, 990)
    }

    func testBlurPreservesMeanAndNoiseIsSeeded() {
        let image = Renderer().render(WorldGenerator(seed: 1).scene(.train, index: 0))
        let blurred = Corruption.gaussianBlur(image, sigma: 1)
        XCTAssertEqual(Double(blurred.pixels.map(Int.init).reduce(0, +)), Double(image.pixels.map(Int.init).reduce(0, +)),
                       accuracy: Double(image.pixels.count) * 1.0)
        var a = RandomGenerator(seed: 2), b = RandomGenerator(seed: 2)
        XCTAssertEqual(Corruption.gaussianNoise(image, sigma: 10, using: &a), Corruption.gaussianNoise(image, sigma: 10, using: &b))
        XCTAssertNotEqual(Corruption.gaussianNoise(image, sigma: 10, using: &a), image)
    }
}

final class FidelityTests: XCTestCase {
    /// Fidelity falls with blur, noise and stray pixels; clean renders score 1.
    func testFidelityFallsWithArtifacts() throws {
        let scene = WorldGenerator(seed: 4).scene(.validation, index: 3)
        let clean = Renderer().render(scene)
        let judge = GoldJudge()
        let base = judge.score(clean, prompt: scene.prompt).fidelity
        XCTAssertEqual(base, 1)
        var rng = RandomGenerator(seed: 1)
        XCTAssertLessThan(judge.score(Corruption.gaussianBlur(clean, sigma: 1), prompt: scene.prompt).fidelity, 0.99)
        XCTAssertLessThan(judge.score(Corruption.gaussianNoise(clean, sigma: 60, using: &rng), prompt: scene.prompt).fidelity, 0.5)
        var stray = clean
        for (x, y) in [(1, 1), (30, 1), (1, 30)] { stray[x, y] = [220, 30, 30] }
        XCTAssertEqual(judge.score(stray, prompt: scene.prompt).fidelity, 0.7, accuracy: 1e-9)
    }
}
