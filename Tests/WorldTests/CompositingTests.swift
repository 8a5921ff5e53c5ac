import Engine
import Images
import XCTest
@testable import World

/// Objects cut out of single-object renders and pasted into a layout make an image the gold judge
/// reads as the composed caption.
final class CompositingTests: XCTestCase {
    func render(_ color: ColorName, _ shape: ShapeKind, x: Double = 0.5, y: Double = 0.5, size: SizeClass = .small) -> RGBImage {
        let prompt = Prompt.group(Entity(color: color, shape: shape, size: size), count: 1, position: nil)
        return Renderer(size: 32).render(Scene(prompt: prompt, objects: [SceneObject(color: color, shape: shape, size: size, centerX: x, centerY: y)],
                                               hazard: nil))
    }

    func testTheCutoutIsTheObjectsPixelsInATightBox() throws {
        let image = render(.red, .square, x: 0.3, y: 0.6)
        let cutout = try XCTUnwrap(ObjectCutout(from: image))
        let objectPixels = (0..<(32 * 32)).filter { image.pixels[$0 * 3] != WorldColors.background.0 || image.pixels[$0 * 3 + 1] != WorldColors.background.1 }
        XCTAssertEqual(cutout.mask.filter { $0 }.count, objectPixels.count)
        XCTAssertEqual(cutout.width * cutout.height, objectPixels.count, "a square fills its box")
        XCTAssertEqual(Array(cutout.pixels[0..<3]), [ColorName.red.rgb.0, ColorName.red.rgb.1, ColorName.red.rgb.2])
        XCTAssertNil(ObjectCutout(from: RGBImage(width: 32, height: 32, fill: [245, 245, 245])), "nothing to cut from a blank canvas")
        // A stray pixel far from the object is left behind: the largest region wins.
        var noisy = image
        noisy[1, 1] = [0, 0, 255]
        XCTAssertEqual(ObjectCutout(from: noisy), cutout)
    }

    func testACompositeOfTwoSingleObjectsShowsTheirRelation() throws {
        let circle = try XCTUnwrap(ObjectCutout(from: render(.red, .circle, x: 0.7, y: 0.7)))
        let square = try XCTUnwrap(ObjectCutout(from: render(.green, .square, x: 0.2, y: 0.3)))
        // Circle at the top, square at the bottom: moved from where each was drawn.
        let image = composite([Placement(circle, x: 12, y: 2), Placement(square, x: 12, y: 20)], size: 32)
        let judge = GoldJudge()
        let above = try Prompt(parsing: "a small red circle above a small green square")
        let below = try Prompt(parsing: "a small red circle below a small green square")
        XCTAssertEqual(judge.score(image, prompt: above).alignment, 1)
        XCTAssertEqual(judge.score(image, prompt: below).alignment, 0)
        XCTAssertEqual(judge.score(image, prompt: try Prompt(parsing: "two small red circles")).alignment, 0)
        let pair = composite([Placement(circle, x: 2, y: 2), Placement(circle, x: 20, y: 20)], size: 32)
        XCTAssertEqual(judge.score(pair, prompt: try Prompt(parsing: "two small red circles")).alignment, 1)
    }

    func testRandomLayoutsKeepBoxesInsideAndApart() throws {
        let square = try XCTUnwrap(ObjectCutout(from: render(.blue, .square, size: .large)))
        var rng = RandomGenerator(seed: 4)
        for _ in 0..<100 {
            let layout = try XCTUnwrap(randomLayout([square, square], size: 32) { rng.next() })
            XCTAssertEqual(layout.count, 2)
            for p in layout { XCTAssertTrue(p.x >= 0 && p.y >= 0 && p.x + square.width <= 32 && p.y + square.height <= 32) }
            XCTAssertFalse(layout[0].overlaps(layout[1]))
        }
        XCTAssertNil(randomLayout([square, square, square, square, square, square, square, square, square, square], size: 32) { rng.next() },
                     "ten large squares do not fit apart")
    }

    func testPartsAreTheSingleObjectsWithoutPosition() throws {
        XCTAssertEqual(try Prompt(parsing: "two small blue squares on the left").parts.map(\.caption), ["a small blue square", "a small blue square"])
        XCTAssertEqual(try Prompt(parsing: "a green triangle above a large yellow circle").parts.map(\.caption),
                       ["a green triangle", "a large yellow circle"])
        XCTAssertEqual(try Prompt(parsing: "a red circle at the top").parts.map(\.caption), ["a red circle"])
    }

    func testBestCompositesKeepsAVerifiedLayoutPerPromptAndNoneWithoutParts() throws {
        let cutouts = ["a small red circle": [try XCTUnwrap(ObjectCutout(from: render(.red, .circle)))],
                       "a small green square": [try XCTUnwrap(ObjectCutout(from: render(.green, .square)))]]
        let prompts = try ["a small red circle above a small green square", "two small red circles",
                           "a small red circle to the left of a small blue square"].map(Prompt.init(parsing:))
        let judge = GoldJudge()
        var rng = RandomGenerator(seed: 9), scored = 0
        let found = try bestComposites(for: prompts, cutouts: cutouts, proposals: 16, size: 32, threshold: 1, score: { images, captions in
            scored += images.count
            return zip(images, captions).map { judge.score($0, prompt: try! Prompt(parsing: $1)).alignment }
        }, next: { rng.next() })
        XCTAssertEqual(found.map(\.prompt.caption), ["a small red circle above a small green square", "two small red circles"],
                       "no composite for a prompt whose blue square was never cut out")
        for item in found { XCTAssertEqual(judge.score(item.image, prompt: item.prompt).alignment, 1) }
        XCTAssertEqual(scored, 32, "16 proposals for each composable prompt, scored in one call")
        // A threshold no layout reaches keeps nothing.
        XCTAssertTrue(bestComposites(for: prompts, cutouts: cutouts, proposals: 4, size: 32, threshold: 2,
                                     score: { images, _ in [Double](repeating: 1, count: images.count) }, next: { rng.next() }).isEmpty)
    }
}
