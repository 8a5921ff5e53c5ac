import Engine
import Foundation
import Images
import Inputs
import Layers

/// Everything that defines a latent diffusion model's shape.
public struct ModelConfig: Codable, Equatable, Sendable {
    public var imageSize = 32
    public var vae = VAEConfig()
    public var unet = UNetConfig()
    public var text = TextEncoderConfig()
    public var schedule = NoiseSchedule.Settings()
    /// A LoRA adapter on the UNet's attention that acts only at some timesteps; nil: none.
    public var unetAdapter: UNetAdapter?

    public init() {}

    /// Fails with one line naming the first part that does not fit the others.
    public func validate() throws {
        guard imageSize >= 1, imageSize % vae.downsamplingFactor == 0 else {
            throw DiffusionError.invalidSettings("model.imageSize \(imageSize) must be a positive multiple of the VAE's downsampling factor \(vae.downsamplingFactor)")
        }
        guard unet.inChannels == vae.latentChannels, unet.outChannels == vae.latentChannels else {
            throw DiffusionError.invalidSettings("model.unet channels in/out \(unet.inChannels)/\(unet.outChannels) must equal model.vae.latentChannels \(vae.latentChannels)")
        }
        guard unet.crossAttentionDimension == text.width else {
            throw DiffusionError.invalidSettings("model.unet.crossAttentionDimension \(unet.crossAttentionDimension) must equal model.text.width \(text.width)")
        }
        try unet.validate()
    }

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

/// A LoRA adapter on every attention projection of the UNet that acts only on samples whose
/// timestep lies in [first, end) — fine-tuning that changes the noisy steps, where layout is
/// decided, and leaves the base model at the others. It cannot be merged, so a model folder keeps
/// it apart: `unet.safetensors` holds the base UNet, `unet_lora.safetensors` the adapter.
public struct UNetAdapter: Codable, Equatable, Sendable {
    public var rank: Int
    public var alpha: Double
    /// [first, end) in the training timesteps (0 … T − 1).
    public var timestepRange: [Double]

    public init(rank: Int, alpha: Double, timestepRange: [Double]) {
        self.rank = rank
        self.alpha = alpha
        self.timestepRange = timestepRange
    }

    /// One line for people: "LoRA rank 4, α 4, acting only at timesteps [750, 1000)".
    public var summary: String {
        let range = timestepRange.map { String(format: "%g", $0) }.joined(separator: ", ")
        return "LoRA rank \(rank), α \(String(format: "%g", alpha)), acting only at timesteps [\(range))"
    }

    /// The range the adapter acts on; a malformed range is an error naming it.
    public func timesteps() throws -> Range<Double> {
        guard timestepRange.count == 2, timestepRange[0] < timestepRange[1] else {
            throw DiffusionError.invalidSettings("UNet adapter: timestepRange \(timestepRange) is not [first, end) with first < end")
        }
        return timestepRange[0]..<timestepRange[1]
    }
}

/// The text-to-image model: VAE, tokenizer, text encoder, UNet and noise schedule, saved as one
/// folder (`config.json`, `tokenizer.json`, `vae.safetensors`, `text_encoder.safetensors`,
/// `unet.safetensors`, and `unet_lora.safetensors` with a timestep-gated adapter).
public final class LatentDiffusionModel {
    public private(set) var config: ModelConfig
    public let vae: AutoencoderKL
    public let tokenizer: Tokenizer
    public let textEncoder: TextEncoder
    public let unet: UNet2DConditionModel
    public let schedule: NoiseSchedule

    public init(config: ModelConfig, tokenizer: Tokenizer, using rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        self.tokenizer = tokenizer
        vae = AutoencoderKL(config.vae, using: &rng)
        textEncoder = TextEncoder(config.text, vocabularySize: tokenizer.count, using: &rng)
        unet = try UNet2DConditionModel(config.unet, using: &rng)
        schedule = NoiseSchedule(config.schedule)
    }

    /// Wraps the UNet's attention projections in LoRA adapters that act only at the adapter's
    /// timesteps and records the adapter in the config, so `save` keeps it. Returns the
    /// adapters' parameters (the only trainable ones afterwards).
    @discardableResult
    public func attachUNetAdapter(_ adapter: UNetAdapter, using rng: inout RandomGenerator) throws -> [(name: String, tensor: Tensor)] {
        guard config.unetAdapter == nil, unet.timestepGate == nil else {
            throw DiffusionError.invalidSettings("the model already has a timestep-gated UNet adapter")
        }
        let timesteps = try adapter.timesteps()
        let gate = AdapterGate()
        let parameters = try applyLoRA(to: unet, rank: adapter.rank, alpha: adapter.alpha, gate: gate, using: &rng)
        unet.timestepGate = (gate, timesteps)
        config.unetAdapter = adapter
        return parameters
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
        let unetState = unet.stateDict()
        let isAdapter = { (name: String) in name.contains(".lora_") }
        // Adapter weights are written only for a recorded (gated) adapter; any other LoRA would be
        // dropped from unet.safetensors without a trace, so it must be merged first.
        guard config.unetAdapter != nil || !unetState.keys.contains(where: isAdapter) else {
            throw DiffusionError.invalidSettings("the UNet has unmerged LoRA adapters; merge them (mergeAndRemoveLoRA) before saving")
        }
        try Safetensors.write(unetState.filter { !isAdapter($0.key) }, to: directory.appendingPathComponent("unet.safetensors"),
                              as: stored, metadata: ["format": "pt"])
        if config.unetAdapter != nil {
            try Safetensors.write(unetState.filter { isAdapter($0.key) }, to: directory.appendingPathComponent("unet_lora.safetensors"),
                                  as: stored, metadata: ["format": "pt"])
        }
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
        // A file that is there but unreadable is an error naming it, whatever the decoder's words.
        func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
            let data = try read(name)
            do { return try JSONDecoder().decode(type, from: data) } catch {
                throw DiffusionError.invalidSettings("\(directory.appendingPathComponent(name).path): not a valid \(name) (\(String(describing: error).prefix(160)))")
            }
        }
        let config = try decode(ModelConfig.self, "config.json")
        let tokenizer = try decode(Tokenizer.self, "tokenizer.json")
        var rng = RandomGenerator(seed: 0)
        var baseConfig = config
        baseConfig.unetAdapter = nil
        let model = try LatentDiffusionModel(config: baseConfig, tokenizer: tokenizer, using: &rng)
        if let adapter = config.unetAdapter { try model.attachUNetAdapter(adapter, using: &rng) }
        let unetFiles = ["unet.safetensors"] + (config.unetAdapter == nil ? [] : ["unet_lora.safetensors"])
        for (files, module) in [(["vae.safetensors"], model.vae as any Module), (["text_encoder.safetensors"], model.textEncoder),
                                (unetFiles, model.unet)] {
            var tensors: [String: Tensor] = [:]
            for file in files {
                _ = try read(file)
                tensors.merge(try Safetensors.read(directory.appendingPathComponent(file)).tensors) { first, _ in first }
            }
            do { try module.loadParameters(tensors) } catch {
                throw DiffusionError.invalidSettings("\(directory.appendingPathComponent(files[0]).path): \(error)")
            }
        }
        return model
    }
}
