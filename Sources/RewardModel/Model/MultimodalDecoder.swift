import Engine
import Foundation
import Inputs
import Layers

/// What the decoder saw and produced for a batch of (image, prompt) sequences.
public struct MultimodalHiddenStates {
    /// Final-layer hidden states after the last LayerNorm, [B, T, width], T = image tokens + text length.
    public let hidden: Tensor
    /// The projected image tokens as they enter the first decoder layer (embedding level), [B, N, width];
    /// nil for text-only sequences.
    public let imageTokens: Tensor?
    /// Per sequence, the index in T of its EOS token.
    public let endOfSequence: [Int]
}

/// The compact "MLLM" of LLaVA-Reward: ViT image tokens → a two-layer GELU projector into the
/// decoder's width, followed by the prompt's tokens and EOS, through a causal pre-LN transformer
/// with a language-model head (for captioning pretraining).
///
/// Position ids count only real tokens (as Hugging Face derives them from the attention mask), and
/// padding is masked as keys, so a sequence's states do not depend on where its padding sits.
public final class MultimodalDecoder: Module {
    public let config: RewardModelConfig
    public let vocabularySize: Int
    let vision: VisionEncoder
    let projectorIn: Linear, projectorOut: Linear
    let tokenEmbedding: Embedding, positionEmbedding: Embedding
    let layers: [TransformerLayer]
    let finalNorm: LayerNorm
    let languageModelHead: Linear

    public init(_ config: RewardModelConfig, vocabularySize: Int, dtype: DType = .float32, using rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        self.vocabularySize = vocabularySize
        vision = VisionEncoder(imageSize: config.imageSize, patchSize: config.patchSize, width: config.visionWidth,
                               layers: config.visionLayers, heads: config.visionHeads, dtype: dtype, using: &rng)
        projectorIn = Linear(config.visionWidth, config.width, dtype: dtype, using: &rng)
        projectorOut = Linear(config.width, config.width, dtype: dtype, using: &rng)
        tokenEmbedding = Embedding(vocabularySize, config.width, dtype: dtype, using: &rng)
        tokenEmbedding.weight.assign(tokenEmbedding.weight * 0.02)
        positionEmbedding = Embedding(config.imageTokens + config.maxTextLength, config.width, dtype: dtype, using: &rng)
        positionEmbedding.weight.assign(positionEmbedding.weight * 0.02)
        layers = (0..<config.layers).map { _ in TransformerLayer(config.width, heads: config.heads, dtype: dtype, using: &rng) }
        finalNorm = LayerNorm(config.width, dtype: dtype)
        languageModelHead = Linear(config.width, vocabularySize, bias: false, dtype: dtype, using: &rng)
    }

    public var children: [(name: String, module: any Module)] {
        [("vision_tower", vision as any Module), ("multi_modal_projector.linear_1", projectorIn),
         ("multi_modal_projector.linear_2", projectorOut), ("embed_tokens", tokenEmbedding), ("embed_positions", positionEmbedding)]
            + layers.enumerated().map { ("layers.\($0.offset)", $0.element as any Module) }
            + [("norm", finalNorm), ("lm_head", languageModelHead)]
    }

    /// The vision tower (frozen or not by the trainer's config).
    public var visionTower: any Module { vision }

    /// Image tokens [B, N, width] in the decoder's width: the ViT's output through the projector.
    public func projectedImageTokens(_ images: Tensor) throws -> Tensor {
        try projectorOut(gelu(projectorIn(vision(images))))
    }

    /// Hidden states for images [B, 3, S, S] in [−1, 1] and token ids [B][L] with their validity;
    /// each row must hold an EOS among its real tokens, and at most `maxTextLength` real tokens.
    /// Without images (nil) the text runs alone, at the positions it has after the image tokens
    /// (the dual-encoder baseline's text tower).
    public func callAsFunction(_ images: Tensor?, tokens: [[Int]], valid: [[Bool]]) throws -> MultimodalHiddenStates {
        if let images {
            try checkShape(images.shape.first == tokens.count, "MultimodalDecoder", "images \(describe(images.shape)) for \(tokens.count) prompts")
        }
        return try decode(imageTokens: images.map(projectedImageTokens), tokens: tokens, valid: valid)
    }

    /// The same for image tokens already projected ([B, N, width], `projectedImageTokens`), so
    /// that one image's tokens can be shared by several prompts (TextNorm's contrastive prompts).
    public func decode(imageTokens: Tensor?, tokens: [[Int]], valid: [[Bool]]) throws -> MultimodalHiddenStates {
        let n = imageTokens == nil ? 0 : config.imageTokens
        let b = imageTokens?.shape.first ?? tokens.count
        let length = tokens.first?.count ?? 0
        try checkShape(tokens.count == b && valid.count == b && tokens.allSatisfy { $0.count == length }
                       && valid.allSatisfy { $0.count == length }, "MultimodalDecoder",
                       "\(tokens.count)×\(length) tokens and \(valid.count) masks for image tokens \(describe(imageTokens?.shape ?? []))")
        if let imageTokens {
            try checkShape(imageTokens.shape == [b, n, config.width], "MultimodalDecoder",
                           "image tokens \(describe(imageTokens.shape)) for [\(b), \(n), \(config.width)]")
        }
        var positions: [Int] = [], keyValid: [[Bool]] = [], endOfSequence: [Int] = []
        positions.reserveCapacity(b * (n + length))
        for row in 0..<b {
            var next = config.imageTokens
            positions += 0..<n
            for j in 0..<length {
                positions.append(valid[row][j] ? next : 0)
                if valid[row][j] { next += 1 }
            }
            try checkArgument(next - config.imageTokens <= config.maxTextLength, "MultimodalDecoder",
                              "prompt \(row) has \(next - config.imageTokens) tokens, more than maxTextLength \(config.maxTextLength)")
            guard let eos = (0..<length).last(where: { valid[row][$0] && tokens[row][$0] == Tokenizer.endOfSequence }) else {
                throw EngineError.invalidArgument(op: "MultimodalDecoder", "prompt \(row) has no EOS token among its real tokens")
            }
            keyValid.append([Bool](repeating: true, count: n) + valid[row])
            endOfSequence.append(n + eos)
        }
        let text = try tokenEmbedding(tokens.flatMap { $0 }, shape: [b, length])
        var h = try (imageTokens.map { try concat([$0, text], axis: 1) } ?? text) + positionEmbedding(positions, shape: [b, n + length])
        let mask = AttentionMask(causal: true, keyValid: keyValid)
        for layer in layers { h = try layer(h, mask: mask) }
        return MultimodalHiddenStates(hidden: try finalNorm(h), imageTokens: imageTokens, endOfSequence: endOfSequence)
    }

    /// Captioning loss: mean next-token cross-entropy of the caption (and its EOS) after the image
    /// tokens, for right-padded token ids as `Tokenizer.encode` makes them.
    public func captionLoss(_ images: Tensor, tokens: [[Int]], valid: [[Bool]]) throws -> Tensor {
        let states = try self(images, tokens: tokens, valid: valid)
        let targets = tokens.indices.flatMap { row in tokens[row].indices.map { valid[row][$0] ? tokens[row][$0] : -1 } }
        return try crossEntropy(logits: captionLogits(states, length: tokens[0].count), targets: targets, ignoreIndex: -1)
    }

    /// The language-model head's logits [B·length, V] that predict the `length` text tokens:
    /// position n − 1 + j (n image tokens) predicts text token j.
    func captionLogits(_ states: MultimodalHiddenStates, length: Int) throws -> Tensor {
        let (n, width) = (config.imageTokens, config.width)
        let b = states.hidden.shape[0]
        return try languageModelHead(states.hidden.slice(axis: 1, (n - 1)..<(n - 1 + length)).reshaped([b * length, width]))
    }

    /// log p(caption | image) per sample, without gradients: the sum over the caption's valid
    /// tokens (its EOS included) of the log-probability the language-model head gives each after
    /// the image tokens — how well the caption describes the image, a zero-shot alignment score.
    /// Minus the sum over samples, divided by the valid tokens, is `captionLoss`.
    public func captionLogLikelihood(_ images: Tensor, tokens: [[Int]], valid: [[Bool]]) throws -> [Double] {
        try withNoGrad { try captionLogLikelihoods(self(images, tokens: tokens, valid: valid), tokens: tokens, valid: valid).values }
    }

    /// The same as a differentiable [B] tensor, from hidden states this decoder computed for
    /// `tokens` (so a reward can add it without a second forward).
    public func captionLogLikelihoods(_ states: MultimodalHiddenStates, tokens: [[Int]], valid: [[Bool]]) throws -> Tensor {
        let (b, length) = (tokens.count, tokens[0].count)
        let logProbabilities = try captionLogits(states, length: length).logSoftmax(axis: 1)
        let targets = (0..<b).flatMap { row in (0..<length).map { valid[row][$0] ? tokens[row][$0] : 0 } }
        let picked = try logProbabilities.gather(axis: 1, index: targets, indexShape: [b * length, 1])
        let mask = try Tensor(valid.flatMap { $0.map { $0 ? 1.0 : 0.0 } }, shape: [b * length, 1], dtype: picked.dtype)
        return try (picked * mask).reshaped([b, length]).sum(axes: [1])
    }
}
