/// Scaled dot-product attention with causal and key-padding masks, for self- and
/// cross-attention:
///     A = softmax(Q·Kᵀ/√d + M) · V
/// with q [B, H, Lq, d], k [B, H, Lk, d], v [B, H, Lk, dv], M additive (0 or −10⁹).

/// Which query–key pairs may attend.
public struct AttentionMask {
    /// Query i sees keys j ≤ i + (Lk − Lq) (the usual lower-triangular mask when Lq = Lk).
    public var causal: Bool
    /// Per batch entry and key, whether the key is real (true) or padding (false): [B][Lk].
    public var keyValid: [[Bool]]?

    public init(causal: Bool = false, keyValid: [[Bool]]? = nil) {
        self.causal = causal
        self.keyValid = keyValid
    }

    /// A large negative logit: exp underflows to 0 without making a fully masked row NaN.
    static let blocked = -1e9

    /// The additive mask [B or 1, 1, Lq, Lk], or nil when nothing is masked.
    func additive(batch: Int, queries lq: Int, keys lk: Int, dtype: DType) throws -> Tensor? {
        guard causal || keyValid != nil else { return nil }
        if let keyValid {
            try checkShape(keyValid.count == batch && keyValid.allSatisfy { $0.count == lk }, "attention",
                           "key mask \(keyValid.count)×\(keyValid.first?.count ?? 0) for batch \(batch) and \(lk) keys")
        }
        let b = keyValid == nil ? 1 : batch
        var values = [Double](repeating: 0, count: b * lq * lk)
        for n in 0..<b { for i in 0..<lq { for j in 0..<lk {
            let hidden = (causal && j > i + (lk - lq)) || (keyValid.map { !$0[n][j] } ?? false)
            if hidden { values[(n * lq + i) * lk + j] = AttentionMask.blocked }
        } } }
        return try Tensor(values, shape: [b, 1, lq, lk], dtype: dtype)
    }
}

/// Attention of queries over keys and values; heads are the second dimension.
public func scaledDotProductAttention(query q: Tensor, key k: Tensor, value v: Tensor,
                                      mask: AttentionMask = AttentionMask()) throws -> Tensor {
    try checkShape(q.rank == 4 && k.rank == 4 && v.rank == 4 && q.shape[0] == k.shape[0] && q.shape[1] == k.shape[1]
                   && q.shape[3] == k.shape[3] && k.shape.prefix(3) == v.shape.prefix(3), "attention",
                   "query \(describe(q.shape)), key \(describe(k.shape)), value \(describe(v.shape))")
    let scale = 1 / Double(q.shape[3]).squareRoot()
    var scores = try matmul(q, k, transposeB: true) * scale
    if let additive = try mask.additive(batch: q.shape[0], queries: q.shape[2], keys: k.shape[2], dtype: q.dtype) {
        scores = try scores + additive
    }
    return try matmul(scores.softmax(axis: -1), v)
}
