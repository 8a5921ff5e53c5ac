import Engine
import Foundation
import Images
import Inputs
import Layers
import Rewards

/// A trained reward model with its tokenizer: saved as a folder (`config.json`, `tokenizer.json`,
/// `reward_model.safetensors`) and usable wherever a `RewardFunction` is (DDPO's rewards).
/// `rewards` keeps the graph, so a ReFL trainer can backpropagate into the images.
public final class LearnedReward: DifferentiableReward {
    public let model: LLaVAReward
    public let tokenizer: Tokenizer
    /// Images per forward pass when scoring.
    public var batchSize = 32
    /// The optimizer of online refreshes (`RefreshableReward`), made at the first one.
    var refreshOptimizer: AdamW?

    public init(model: LLaVAReward, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    public var config: RewardModelConfig { model.config }
    public var perspectives: [String] { model.config.perspectives }

    /// Token ids and validity for prompts, right-padded to the model's text length.
    public func encode(_ prompts: [String]) -> (tokens: [[Int]], valid: [[Bool]]) {
        let encoded = prompts.map { tokenizer.encode($0, length: config.maxTextLength) { word in
            FileHandle.standardError.write(Data("note: unknown word '\(word)' maps to <unk>\n".utf8))
        } }
        return (encoded.map(\.ids), encoded.map(\.valid))
    }

    /// Rewards [B, P] for images [B, 3, S, S] in [−1, 1] (differentiable in the images).
    public func rewards(_ images: Tensor, prompts: [String]) throws -> Tensor {
        let (tokens, valid) = encode(prompts)
        return try model(images, tokens: tokens, valid: valid)
    }

    public var differentiablePerspectives: [String] { perspectives }

    /// Each asked perspective's rewards [B] for images [B, 3, S, S] in [−1, 1], with the graph.
    public func differentiableScores(_ images: Tensor, prompts: [String], perspectives: [String]) throws -> [String: Tensor] {
        let all = try rewards(images, prompts: prompts)
        return Dictionary(uniqueKeysWithValues: try perspectives.map { name in
            guard self.perspectives.contains(name) else {
                throw RewardError("reward model has no '\(name)' head (it has \(self.perspectives.joined(separator: ", ")))")
            }
            return (name, try model.column(all, name))
        })
    }

    /// log p(prompt | image) from the decoder's language-model head, per image (no gradients):
    /// the zero-shot score the captioning pretraining alone gives, before any preference.
    public func captionLogLikelihood(_ images: Tensor, prompts: [String]) throws -> [Double] {
        let (tokens, valid) = encode(prompts)
        return try model.decoder.captionLogLikelihood(images, tokens: tokens, valid: valid)
    }

    public func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        guard images.count == prompts.count else { throw RewardError("reward model: \(images.count) images for \(prompts.count) prompts") }
        let columns = try perspectives.map { name -> Int in
            guard let index = self.perspectives.firstIndex(of: name) else {
                throw RewardError("reward model has no '\(name)' head (it has \(self.perspectives.joined(separator: ", ")))")
            }
            return index
        }
        var result = Dictionary(uniqueKeysWithValues: perspectives.map { ($0, [Double]()) })
        try withNoGrad {
            for first in stride(from: 0, to: images.count, by: batchSize) {
                let range = first..<Swift.min(first + batchSize, images.count)
                let values = try rewards(ImageTensors.tensor(Array(images[range])), prompts: Array(prompts[range])).values
                let p = self.perspectives.count
                for (name, column) in zip(perspectives, columns) {
                    result[name]! += (0..<range.count).map { values[$0 * p + column] }
                }
            }
        }
        return result
    }

    /// Writes the folder (LoRA adapters must be merged first: `mergeAndRemoveLoRA`).
    public func save(to folder: URL) throws {
        try Self.writeConfigAndTokenizer(config, tokenizer, to: folder)
        try Safetensors.write(model.stateDict(), to: folder.appendingPathComponent("reward_model.safetensors"))
    }

    /// Loads a folder written by `save`; a missing file or tensor is an error naming it.
    public static func load(from folder: URL) throws -> LearnedReward {
        let (config, tokenizer) = try readConfigAndTokenizer(folder)
        var rng = RandomGenerator(seed: 0)
        let model = try LLaVAReward(config, vocabularySize: tokenizer.count, using: &rng)
        try model.loadParameters(Safetensors.read(try file(folder, "reward_model.safetensors")).tensors)
        return LearnedReward(model: model, tokenizer: tokenizer)
    }

    static func file(_ folder: URL, _ name: String) throws -> URL {
        let url = folder.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw RewardError("model folder \(folder.path) has no \(name)")
        }
        return url
    }

    /// Creates the folder and writes `config.json` and `tokenizer.json` into it.
    static func writeConfigAndTokenizer(_ config: RewardModelConfig, _ tokenizer: Tokenizer, to folder: URL) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try ConfigLoader.json(config).write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try ConfigLoader.json(tokenizer).write(to: folder.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
    }

    /// A folder's `config.json` (strict) and `tokenizer.json`.
    static func readConfigAndTokenizer(_ folder: URL) throws -> (RewardModelConfig, Tokenizer) {
        let config = try ConfigLoader.load(RewardModelConfig.self, from: file(folder, "config.json"), defaults: RewardModelConfig())
        let tokenizer = try JSONDecoder().decode(Tokenizer.self, from: Data(contentsOf: file(folder, "tokenizer.json")))
        return (config, tokenizer)
    }
}

/// A pretrained multimodal decoder (the "MLLM" after captioning) as a folder: `config.json`,
/// `tokenizer.json`, `decoder.safetensors`.
public enum PretrainedDecoder {
    public static func save(_ decoder: MultimodalDecoder, tokenizer: Tokenizer, to folder: URL) throws {
        try LearnedReward.writeConfigAndTokenizer(decoder.config, tokenizer, to: folder)
        try Safetensors.write(decoder.stateDict(), to: folder.appendingPathComponent("decoder.safetensors"))
    }

    /// The decoder and tokenizer of a folder written by `save`, e.g. to continue pretraining.
    public static func load(from folder: URL) throws -> (MultimodalDecoder, Tokenizer) {
        let (config, tokenizer) = try LearnedReward.readConfigAndTokenizer(folder)
        var rng = RandomGenerator(seed: 0)
        let decoder = try MultimodalDecoder(config, vocabularySize: tokenizer.count, using: &rng)
        try decoder.loadParameters(Safetensors.read(try LearnedReward.file(folder, "decoder.safetensors")).tensors)
        return (decoder, tokenizer)
    }

    /// A fresh reward model (new SkipCA and heads; architecture, `skipCrossAttention` and
    /// `perspectives` as given) whose decoder holds the pretrained weights.
    public static func rewardModel(from folder: URL, architecture: RewardArchitecture = .llava, skipCrossAttention: Bool,
                                   perspectives: [String], captionLikelihoodPerspectives: [String] = [],
                                   using rng: inout RandomGenerator) throws -> LearnedReward {
        var (config, tokenizer) = try LearnedReward.readConfigAndTokenizer(folder)
        config.architecture = architecture
        config.skipCrossAttention = skipCrossAttention
        config.perspectives = perspectives
        config.captionLikelihoodPerspectives = captionLikelihoodPerspectives
        try config.validate()
        let model = try LLaVAReward(config, vocabularySize: tokenizer.count, using: &rng)
        try model.decoder.loadParameters(Safetensors.read(try LearnedReward.file(folder, "decoder.safetensors")).tensors)
        return LearnedReward(model: model, tokenizer: tokenizer)
    }
}
