import Engine
import Foundation
import Images
import World

/// Captioned images to train on: the embedded world, or a user's folder.
public protocol TrainingData {
    /// `count` (image, caption) pairs drawn with `rng`.
    func batch(_ count: Int, using rng: inout RandomGenerator) -> (images: [RGBImage], captions: [String])
    /// Captions to build the tokenizer's vocabulary from.
    func vocabularyCaptions() -> [String]
}

/// The world's training split, rendered on the fly: an unbounded stream of distinct scenes.
public struct WorldTrainingData: TrainingData {
    let world: WorldGenerator
    let renderer: Renderer

    public init(seed: UInt64, hazardRate: Double, imageSize: Int) {
        world = WorldGenerator(seed: seed, hazardRate: hazardRate)
        renderer = Renderer(size: imageSize)
    }

    public func batch(_ count: Int, using rng: inout RandomGenerator) -> (images: [RGBImage], captions: [String]) {
        let scenes = (0..<count).map { _ in world.scene(.train, index: Int(rng.next() % 100_000_000)) }
        return (scenes.map(renderer.render), scenes.map(\.caption))
    }

    public func vocabularyCaptions() -> [String] { world.scenes(.train, count: 20_000).map(\.caption) }
}

/// A folder of PNG images with `captions.jsonl` ({"image": "file.png", "caption": "..."} per
/// line), the format `diffusion-rl world export` writes. Loaded into memory once.
public struct FolderTrainingData: TrainingData {
    let images: [RGBImage]
    let captions: [String]

    public init(folder: URL, imageSize: Int) throws {
        let manifest = folder.appendingPathComponent("captions.jsonl")
        guard let text = try? String(contentsOf: manifest, encoding: .utf8) else {
            throw DataError(description: "\(manifest.path): cannot read the captions file")
        }
        var images: [RGBImage] = [], captions: [String] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let file = object["image"] as? String, let caption = object["caption"] as? String else {
                throw DataError(description: "\(manifest.lastPathComponent):\(number + 1): expected {\"image\": ..., \"caption\": ...}")
            }
            let image = try PNG.read(folder.appendingPathComponent(file)).rgb()
            guard image.width == imageSize && image.height == imageSize else {
                throw DataError(description: "\(file) is \(image.width)×\(image.height); the config's image size is \(imageSize)")
            }
            images.append(image)
            captions.append(caption)
        }
        guard !images.isEmpty else { throw DataError(description: "\(manifest.path) lists no images") }
        self.images = images
        self.captions = captions
    }

    public func batch(_ count: Int, using rng: inout RandomGenerator) -> (images: [RGBImage], captions: [String]) {
        let picks = (0..<count).map { _ in Int(rng.next() % UInt64(images.count)) }
        return (picks.map { images[$0] }, picks.map { captions[$0] })
    }

    public func vocabularyCaptions() -> [String] { captions }
}

/// Training data that cannot be read, in one line.
public struct DataError: Error, CustomStringConvertible {
    public let description: String
}
