import Engine
import Foundation
import Images
import Layers

/// Everything that defines a latent diffusion model's shape.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var imageSize = 32
    public var vae = VAEConfig()
    public var unet = UNetConfig()
    public var text = TextEncoderConfig()
    public var schedule = NoiseSchedule.Settings()

    public init() {}

    /// A tiny model for tests (16×16 images, 4×4×2 latents).
    public static var tiny: ModelConfig {
        var config = ModelConfig()
        config.imageSize = 16
        config.vae = .tiny
        config.vae.blockChannels = [4, 8, 8]
        config.unet = .tiny
        config.unet.inChannels = 2
        config.unet.outChannels = 2
        config.text = .tiny
        config.unet.crossAttentionDimension = config.text.width
        return config
    }
}

/// The text-to-image model: VAE, tokenizer, text encoder, UNet and noise schedule, saved as one
/// folder (`config.json`, `tokenizer.json`, `vae.safetensors`, `text_encoder.safetensors`,
/// `unet.safetensors`).
public final class LatentDiffusionModel {
    public let config: ModelConfig
    public let vae: AutoencoderKL
    public let tokenizer: Tokenizer
    public let textEncoder: TextEncoder
    public let unet: UNet2DConditionModel
    public let schedule: NoiseSchedule

    public init(config: ModelConfig, tokenizer: Tokenizer, using rng: inout RandomGenerator) throws {
        guard config.unet.inChannels == config.vae.latentChannels, config.unet.outChannels == config.vae.latentChannels,
              config.unet.crossAttentionDimension == config.text.width,
              config.imageSize % config.vae.downsamplingFactor == 0 else {
            throw DiffusionError.invalidSettings("model config: UNet channels \(config.unet.inChannels)/\(config.unet.outChannels) for \(config.vae.latentChannels) latent channels, cross-attention \(config.unet.crossAttentionDimension) for text width \(config.text.width)")
        }
        self.config = config
        self.tokenizer = tokenizer
        vae = AutoencoderKL(config.vae, using: &rng)
        textEncoder = TextEncoder(config.text, vocabularySize: tokenizer.count, using: &rng)
        unet = try UNet2DConditionModel(config.unet, using: &rng)
        schedule = NoiseSchedule(config.schedule)
    }

    /// Latent side length.
    public var latentSize: Int { config.imageSize / config.vae.downsamplingFactor }

    /// Text-encoder hidden states and key masks for captions ("" is the unconditional caption).
    public func encodeText(_ captions: [String]) throws -> (context: Tensor, mask: AttentionMask) {
        let encoded = captions.map { tokenizer.encode($0, length: config.text.maxLength) { word in
            FileHandle.standardError.write(Data("note: unknown word '\(word)' maps to <unk>\n".utf8))
        } }
        let valid = encoded.map(\.valid)
        return (try textEncoder(encoded.map(\.ids), valid: valid), AttentionMask(keyValid: valid))
    }

    /// Writes the model folder; weights in F32 or F16.
    public func save(to directory: URL, as stored: Safetensors.StoredType = .f32) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(config).write(to: directory.appendingPathComponent("config.json"))
        try encoder.encode(tokenizer).write(to: directory.appendingPathComponent("tokenizer.json"))
        try Safetensors.write(vae.stateDict(), to: directory.appendingPathComponent("vae.safetensors"), as: stored)
        try Safetensors.write(textEncoder.stateDict(), to: directory.appendingPathComponent("text_encoder.safetensors"), as: stored)
        try Safetensors.write(unet.stateDict(), to: directory.appendingPathComponent("unet.safetensors"), as: stored,
                              metadata: ["format": "pt"])
    }

    /// Loads a model folder written by `save`; a missing file or mismatched tensor is an error naming it.
    public static func load(from directory: URL) throws -> LatentDiffusionModel {
        func read(_ name: String) throws -> Data {
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw DiffusionError.invalidSettings("model folder \(directory.path) has no \(name)")
            }
            return try Data(contentsOf: url)
        }
        let config = try JSONDecoder().decode(ModelConfig.self, from: read("config.json"))
        let tokenizer = try JSONDecoder().decode(Tokenizer.self, from: read("tokenizer.json"))
        var rng = RandomGenerator(seed: 0)
        let model = try LatentDiffusionModel(config: config, tokenizer: tokenizer, using: &rng)
        for (file, module) in [("vae.safetensors", model.vae as any Module), ("text_encoder.safetensors", model.textEncoder),
                               ("unet.safetensors", model.unet)] {
            _ = try read(file)
            try module.loadParameters(Safetensors.read(directory.appendingPathComponent(file)).tensors)
        }
        return model
    }
}
