import Images

// Compositing: a correct image of a caption the model cannot yet draw, assembled from objects it
// can draw alone. The world's scenes sit on a flat background, so an object is cut out of an
// image as the largest 4-connected region of pixels far from the background color (a blurred edge
// stays with its object), and pasted at a new place on an empty canvas. Whether a composite shows
// its caption is not decided here: callers propose several layouts and keep what their reward
// accepts (a verifier, as in rejection sampling).

/// An object cut out of an image: its pixels inside a bounding box, and which of them it covers.
public struct ObjectCutout: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// RGB, row-major over the box.
    public let pixels: [UInt8]
    /// Whether each pixel of the box belongs to the object.
    public let mask: [Bool]

    /// The largest 4-connected region of pixels whose color differs from `background` by more than
    /// `threshold` (the largest channel difference, 0–255), cut out of `image` (RGB); nil when no
    /// pixel differs or the region is smaller than `minimumPixels`.
    public init?(from image: RGBImage, background: (UInt8, UInt8, UInt8) = WorldColors.background, threshold: Int = 48,
                 minimumPixels: Int = 4) {
        let rgb = image.rgb()
        let (w, h) = (rgb.width, rgb.height)
        let reference = [Int(background.0), Int(background.1), Int(background.2)]
        var foreground = [Bool](repeating: false, count: w * h)
        for i in 0..<(w * h) {
            let difference = (0..<3).map { abs(Int(rgb.pixels[i * 3 + $0]) - reference[$0]) }.max()!
            foreground[i] = difference > threshold
        }
        // The largest component (the first of equal ones).
        var best: [Int] = []
        for component in connectedComponents(labels: foreground.map { $0 ? 1 : 0 }, width: w, height: h, ignored: { $0 == 0 })
        where component.pixels.count > best.count {
            best = component.pixels
        }
        guard best.count >= minimumPixels else { return nil }
        let xs = best.map { $0 % w }, ys = best.map { $0 / w }
        let (x0, y0) = (xs.min()!, ys.min()!)
        width = xs.max()! - x0 + 1
        height = ys.max()! - y0 + 1
        var pixels = [UInt8](repeating: 0, count: width * height * 3), mask = [Bool](repeating: false, count: width * height)
        for p in best {
            let (bx, by) = (p % w - x0, p / w - y0)
            mask[by * width + bx] = true
            for c in 0..<3 { pixels[(by * width + bx) * 3 + c] = rgb.pixels[p * 3 + c] }
        }
        self.pixels = pixels
        self.mask = mask
    }
}

/// One object of a composite: a cutout and the canvas position of its box's top-left corner.
public struct Placement: Equatable, Sendable {
    public var cutout: ObjectCutout
    public var x: Int
    public var y: Int

    public init(_ cutout: ObjectCutout, x: Int, y: Int) {
        self.cutout = cutout
        self.x = x
        self.y = y
    }

    /// Whether the two boxes, each grown by `margin` pixels, overlap.
    public func overlaps(_ other: Placement, margin: Int = 1) -> Bool {
        x - margin < other.x + other.cutout.width && other.x - margin < x + cutout.width
            && y - margin < other.y + other.cutout.height && other.y - margin < y + cutout.height
    }
}

/// The placements pasted in order (later on top) on a `size` × `size` canvas of `background`.
public func composite(_ placements: [Placement], size: Int, background: (UInt8, UInt8, UInt8) = WorldColors.background) -> RGBImage {
    var image = RGBImage(width: size, height: size, fill: [background.0, background.1, background.2])
    for placement in placements {
        let c = placement.cutout
        for by in 0..<c.height {
            for bx in 0..<c.width where c.mask[by * c.width + bx] {
                let (x, y) = (placement.x + bx, placement.y + by)
                guard x >= 0, x < size, y >= 0, y < size else { continue }
                image[x, y] = Array(c.pixels[(by * c.width + bx) * 3 ..< (by * c.width + bx) * 3 + 3])
            }
        }
    }
    return image
}

/// A random layout of `cutouts` on a `size` × `size` canvas: each box inside the canvas and apart
/// from the others; nil when `attempts` random tries do not find one.
public func randomLayout(_ cutouts: [ObjectCutout], size: Int, attempts: Int = 50,
                         next: () -> UInt64) -> [Placement]? {
    for _ in 0..<attempts {
        var placements: [Placement] = []
        for cutout in cutouts {
            guard cutout.width <= size, cutout.height <= size else { return nil }
            let x = Int(next() % UInt64(size - cutout.width + 1)), y = Int(next() % UInt64(size - cutout.height + 1))
            let placement = Placement(cutout, x: x, y: y)
            if placements.contains(where: { $0.overlaps(placement) }) { break }
            placements.append(placement)
        }
        if placements.count == cutouts.count { return placements }
    }
    return nil
}

/// For each prompt, up to `proposals` random layouts of cutouts of its parts (`cutouts` by part
/// caption, one drawn at random per object), all scored by `score` against the prompt's caption in
/// one call; the `keep` best layouts of each prompt that reach `threshold` are returned, best first.
/// A prompt with a part that has no cutout gets none.
public func bestComposites(for prompts: [Prompt], cutouts: [String: [ObjectCutout]], proposals: Int, keep: Int = 1, size: Int, threshold: Double,
                           score: ([RGBImage], [String]) throws -> [Double],
                           next: () -> UInt64) rethrows -> [(prompt: Prompt, image: RGBImage, score: Double)] {
    var images: [RGBImage] = [], captions: [String] = [], owners: [(prompt: Prompt, range: Range<Int>)] = []
    for prompt in prompts {
        let parts = prompt.parts.map(\.caption)
        guard parts.allSatisfy({ !(cutouts[$0] ?? []).isEmpty }) else { continue }
        let first = images.count
        for _ in 0..<proposals {
            let chosen = parts.map { part in cutouts[part]![Int(next() % UInt64(cutouts[part]!.count))] }
            guard let layout = randomLayout(chosen, size: size, next: next) else { continue }
            images.append(composite(layout, size: size))
            captions.append(prompt.caption)
        }
        if images.count > first { owners.append((prompt, first ..< images.count)) }
    }
    guard !images.isEmpty else { return [] }
    let scores = try score(images, captions)
    precondition(scores.count == images.count, "\(scores.count) scores for \(images.count) composites")
    return owners.flatMap { owner in
        // Best first; among equal scores the earlier proposal.
        owner.range.filter { scores[$0] >= threshold }.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
            .prefix(keep).map { (owner.prompt, images[$0], scores[$0]) }
    }
}

extension Prompt {
    /// The prompts of the single objects a composite of this prompt is made of, one per object:
    /// "two small blue squares" → "a small blue square" twice; a relation → its two entities. A
    /// position is left out (the layout decides it).
    public var parts: [Prompt] {
        switch self {
        case let .group(entity, count, _): return [Prompt](repeating: .group(entity, count: 1, position: nil), count: count)
        case let .relation(first, _, second): return [.group(first, count: 1, position: nil), .group(second, count: 1, position: nil)]
        }
    }
}
