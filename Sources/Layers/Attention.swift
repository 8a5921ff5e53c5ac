import Engine

/// Multi-head attention as in diffusers' `Attention`: `to_q`, `to_k`, `to_v` (no bias) and
/// `to_out.0` (with bias). Self-attention when no context is given, cross-attention otherwise.
public final class MultiHeadAttention: Module {
    public var toQ: any LinearLayer
    public var toK: any LinearLayer
    public var toV: any LinearLayer
    public var toOut: any LinearLayer
    public let heads: Int

    /// `queryDimension` is the width of x; `contextDimension` that of the context (cross-attention).
    public init(queryDimension: Int, contextDimension: Int? = nil, heads: Int, headDimension: Int,
                dtype: DType = .float32, using rng: inout RandomGenerator) {
        let inner = heads * headDimension
        toQ = Linear(queryDimension, inner, bias: false, dtype: dtype, using: &rng)
        toK = Linear(contextDimension ?? queryDimension, inner, bias: false, dtype: dtype, using: &rng)
        toV = Linear(contextDimension ?? queryDimension, inner, bias: false, dtype: dtype, using: &rng)
        toOut = Linear(inner, queryDimension, bias: true, dtype: dtype, using: &rng)
        self.heads = heads
    }

    public var children: [(name: String, module: any Module)] {
        [(name: "to_q", module: toQ), (name: "to_k", module: toK), (name: "to_v", module: toV),
         (name: "to_out.0", module: toOut)]
    }

    /// x [B, L, D] attends to `context` [B, Lc, Dc] (or to itself); result [B, L, D].
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil, mask: AttentionMask = AttentionMask()) throws -> Tensor {
        let source = context ?? x
        guard x.rank == 3, source.rank == 3, source.shape[0] == x.shape[0] else {
            throw EngineError.shapeMismatch(op: "MultiHeadAttention", "input \(x.shape) and context \(source.shape)")
        }
        return try toOut(multiHeadAttention(query: toQ(x), key: toK(source), value: toV(source), heads: heads, mask: mask))
    }
}
