import Engine
import Layers

/// Skip-connection Cross Attention (SkipCA, LLaVA-Reward §3.2): the final-layer hidden states
/// attend to early-layer visual tokens, and the result is added back and RMS-normalized:
///     h′ = RMSNorm(h + Attn(Q = h W_q, K = v W_k, V = v W_v) W_o)
/// It reconnects the reward's read-out to visual detail that deep decoder layers wash out.
public final class SkipCrossAttention: Module {
    let attention: MultiHeadAttention
    let norm: RMSNorm

    public init(width: Int, heads: Int, dtype: DType = .float32, using rng: inout RandomGenerator) {
        attention = MultiHeadAttention(queryDimension: width, contextDimension: width, heads: heads,
                                       headDimension: width / heads, dtype: dtype, using: &rng)
        norm = RMSNorm(width, dtype: dtype)
    }

    public var children: [(name: String, module: any Module)] { [("cross_attn", attention), ("norm", norm)] }

    /// hidden [B, Lq, D] attends to visual tokens [B, N, D]; result [B, Lq, D].
    public func callAsFunction(_ hidden: Tensor, visual: Tensor) throws -> Tensor {
        try norm(hidden + attention(hidden, context: visual))
    }
}
