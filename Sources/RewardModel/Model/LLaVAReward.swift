import Diffusion
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

    public init(_ config: RewardModelConfig, vocabularySize: Int, dtype: DType = .float32, using rng: inout RandomGenerator) throws {
        self.config = config
        decoder = try MultimodalDecoder(config, vocabularySize: vocabularySize, dtype: dtype, using: &rng)
        skipCrossAttention = config.skipCrossAttention
            ? SkipCrossAttention(width: config.width, heads: config.heads, dtype: dtype, using: &rng) : nil
        valueHead = Linear(config.width, config.perspectives.count, bias: false, dtype: dtype, using: &rng)
    }

    public var children: [(name: String, module: any Module)] {
        [("model", decoder as any Module)] + (skipCrossAttention.map { [("skip_ca", $0 as any Module)] } ?? [])
            + [("value_head", valueHead)]
    }

    /// The reward heads' parameters and SkipCA's (what preference training always trains).
    public var headModules: [any Module] { (skipCrossAttention.map { [$0 as any Module] } ?? []) + [valueHead] }

    /// Rewards [B, P] (P = perspectives in config order) for images [B, 3, S, S] in [−1, 1] and
    /// token ids with validity (any padding; see `MultimodalDecoder`).
    public func callAsFunction(_ images: Tensor, tokens: [[Int]], valid: [[Bool]]) throws -> Tensor {
        let states = try decoder(images, tokens: tokens, valid: valid)
        let (b, t, width) = (tokens.count, states.hidden.shape[1], config.width)
        let rows = states.endOfSequence.enumerated().map { $0.offset * t + $0.element }
        var h = try states.hidden.reshaped([b * t, width]).indexSelect(axis: 0, rows).reshaped([b, 1, width])
        if let skipCrossAttention { h = try skipCrossAttention(h, visual: states.imageTokens) }
        return try valueHead(h.reshaped([b, width]))
    }

    /// Column `perspective` of rewards [B, P] as [B].
    public func column(_ rewards: Tensor, _ perspective: String) throws -> Tensor {
        guard let index = config.perspectives.firstIndex(of: perspective) else {
            throw EngineError.invalidArgument(op: "LLaVAReward", "no value head for '\(perspective)' (heads: \(config.perspectives.joined(separator: ", ")))")
        }
        return try rewards.slice(axis: 1, index..<(index + 1)).reshaped([rewards.shape[0]])
    }
}
