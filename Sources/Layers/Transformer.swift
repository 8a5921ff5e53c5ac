import Engine

/// The two-layer MLP of a transformer block, x → fc2(GELU(fc1(x))), with `fc1`/`fc2` keys.
/// Its projections are `LinearLayer`s so LoRA can adapt them.
public final class FeedForward: Module {
    public var fc1: any LinearLayer
    public var fc2: any LinearLayer

    public init(_ width: Int, hidden: Int, dtype: DType = .float32, using rng: inout RandomGenerator) {
        fc1 = Linear(width, hidden, dtype: dtype, using: &rng)
        fc2 = Linear(hidden, width, dtype: dtype, using: &rng)
    }

    public var children: [(name: String, module: any Module)] { [("fc1", fc1), ("fc2", fc2)] }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(gelu(fc1(x))) }
}

/// One pre-LayerNorm transformer layer (CLIP's encoder layer): x + attn(LN(x)), then
/// x + MLP(LN(x)). The mask makes it an encoder (padding only) or a decoder (causal).
public final class TransformerLayer: Module {
    public let norm1: LayerNorm, attention: MultiHeadAttention, norm2: LayerNorm, mlp: FeedForward

    public init(_ width: Int, heads: Int, dtype: DType = .float32, using rng: inout RandomGenerator) {
        norm1 = LayerNorm(width, dtype: dtype)
        attention = MultiHeadAttention(queryDimension: width, heads: heads, headDimension: width / heads, dtype: dtype, using: &rng)
        norm2 = LayerNorm(width, dtype: dtype)
        mlp = FeedForward(width, hidden: 4 * width, dtype: dtype, using: &rng)
    }

    public var children: [(name: String, module: any Module)] {
        [("layer_norm1", norm1), ("self_attn", attention), ("layer_norm2", norm2), ("mlp", mlp)]
    }

    /// x [B, L, width] → [B, L, width].
    public func callAsFunction(_ x: Tensor, mask: AttentionMask = AttentionMask()) throws -> Tensor {
        let h = try x + attention(norm1(x), mask: mask)
        return try h + mlp(norm2(h))
    }
}
