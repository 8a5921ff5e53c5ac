import Engine
import Layers

/// The compact LLaVA-Reward: the multimodal decoder's final hidden state at EOS, through SkipCA
/// (optional, by config), into a bias-free linear value head with one output per perspective.
///
/// Notation (paper §3): r_p(x, y) = w_pᵀ · SkipCA(h_L[EOS], v_0), with h_L the last layer's
/// states, v_0 the embedding-level image tokens and w_p row p of `value_head.weight`.
public final class LLaVAReward: Module {
    public let config: RewardModelConfig
    public let decoder: MultimodalDecoder
    let skipCrossAttention: SkipCrossAttention?
    let valueHead: Linear
    /// The dual-encoder baseline's text-side projection (its image side is `valueHead`).
    let textHead: Linear?
    /// Width of each perspective's embedding in the dual encoder.
    static let dualEncoderWidth = 16

    public init(_ config: RewardModelConfig, vocabularySize: Int, dtype: DType = .float32, using rng: inout RandomGenerator) throws {
        self.config = config
        decoder = try MultimodalDecoder(config, vocabularySize: vocabularySize, dtype: dtype, using: &rng)
        let dual = config.architecture == .dualEncoder
        skipCrossAttention = config.skipCrossAttention && !dual
            ? SkipCrossAttention(width: config.width, heads: config.heads, dtype: dtype, using: &rng) : nil
        let outputs = config.perspectives.count * (dual ? Self.dualEncoderWidth : 1)
        valueHead = Linear(config.width, outputs, bias: false, dtype: dtype, using: &rng)
        textHead = dual ? Linear(config.width, outputs, bias: false, dtype: dtype, using: &rng) : nil
    }

    public var children: [(name: String, module: any Module)] {
        [("model", decoder as any Module)] + (skipCrossAttention.map { [("skip_ca", $0 as any Module)] } ?? [])
            + [("value_head", valueHead)] + (textHead.map { [("text_head", $0 as any Module)] } ?? [])
    }

    /// The reward heads' parameters and SkipCA's (what preference training always trains).
    public var headModules: [any Module] {
        (skipCrossAttention.map { [$0 as any Module] } ?? []) + [valueHead] + (textHead.map { [$0 as any Module] } ?? [])
    }

    /// Rewards [B, P] (P = perspectives in config order) for images [B, 3, S, S] in [−1, 1] and
    /// token ids with validity (any padding; see `MultimodalDecoder`).
    public func callAsFunction(_ images: Tensor, tokens: [[Int]], valid: [[Bool]]) throws -> Tensor {
        try checkShape(images.shape.first == tokens.count, "LLaVAReward", "images \(describe(images.shape)) for \(tokens.count) prompts")
        return try rewards(imageTokens: decoder.projectedImageTokens(images), tokens: tokens, valid: valid)
    }

    /// Rewards [B, P] for image tokens already projected ([B, N, width],
    /// `MultimodalDecoder.projectedImageTokens`): the image side of several (image, prompt) pairs
    /// of one image is then computed once.
    public func rewards(imageTokens: Tensor, tokens: [[Int]], valid: [[Bool]]) throws -> Tensor {
        if let textHead { return try dualEncoderRewards(imageTokens: imageTokens, tokens: tokens, valid: valid, textHead: textHead) }
        let states = try decoder.decode(imageTokens: imageTokens, tokens: tokens, valid: valid)
        let (b, t, width) = (tokens.count, states.hidden.shape[1], config.width)
        let rows = states.endOfSequence.enumerated().map { $0.offset * t + $0.element }
        var h = try states.hidden.reshaped([b * t, width]).indexSelect(axis: 0, rows).reshaped([b, 1, width])
        if let skipCrossAttention { h = try skipCrossAttention(h, visual: states.imageTokens!) }
        let rewards = try valueHead(h.reshaped([b, width]))
        guard !config.captionLikelihoodPerspectives.isEmpty else { return rewards }
        // r_p += log p(prompt | image) for the chosen perspectives: [B, 1] × [1, P] selector.
        let selector = config.perspectives.map { config.captionLikelihoodPerspectives.contains($0) ? 1.0 : 0.0 }
        let likelihood = try decoder.captionLogLikelihoods(states, tokens: tokens, valid: valid).reshaped([b, 1])
        return try rewards + matmul(likelihood, Tensor(selector, shape: [1, selector.count], dtype: rewards.dtype))
    }

    /// The dual encoder: r_p = ⟨U_p · mean(v), T_p · h_text[EOS]⟩ / √k, image and text meeting
    /// only in the dot product.
    func dualEncoderRewards(imageTokens: Tensor, tokens: [[Int]], valid: [[Bool]], textHead: Linear) throws -> Tensor {
        let (b, p, k, width) = (tokens.count, config.perspectives.count, Self.dualEncoderWidth, config.width)
        let image = try valueHead(imageTokens.mean(axes: [1]))
        let states = try decoder(nil, tokens: tokens, valid: valid)
        let t = states.hidden.shape[1]
        let rows = states.endOfSequence.enumerated().map { $0.offset * t + $0.element }
        let text = try textHead(states.hidden.reshaped([b * t, width]).indexSelect(axis: 0, rows))
        try checkShape(image.shape == [b, p * k], "LLaVAReward", "image embeddings \(describe(image.shape)) for batch \(b)")
        return try (image * text).reshaped([b, p, k]).sum(axes: [2]) * (1 / Double(k).squareRoot())
    }

    /// Column `perspective` of rewards [B, P] as [B].
    public func column(_ rewards: Tensor, _ perspective: String) throws -> Tensor {
        guard let index = config.perspectives.firstIndex(of: perspective) else {
            throw EngineError.invalidArgument(op: "LLaVAReward", "no value head for '\(perspective)' (heads: \(config.perspectives.joined(separator: ", ")))")
        }
        return try rewards.slice(axis: 1, index..<(index + 1)).reshaped([rewards.shape[0]])
    }
}
