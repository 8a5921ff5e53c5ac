/// Scaled dot-product attention with causal and key-padding masks, for self- and
/// cross-attention, as one op with a fused backward:
///     S = Q·Kᵀ/√d + M,  P = softmax(S) (rows),  O = P·V
///     dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = dS·K/√d,  dK = dSᵀ·Q/√d
/// M is additive (0 or −10⁹). Backward caches P (a recorded call only). Work is split over
/// (batch, head) pairs, each running its small GEMMs single-threaded.

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

    /// The additive mask as [B or 1][Lq·Lk] Doubles, or nil when nothing is masked.
    func additive(batch: Int, queries lq: Int, keys lk: Int) throws -> [[Double]]? {
        guard causal || keyValid != nil else { return nil }
        if let keyValid {
            try checkShape(keyValid.count == batch && keyValid.allSatisfy { $0.count == lk }, "attention",
                           "key mask \(keyValid.count)×\(keyValid.first?.count ?? 0) for batch \(batch) and \(lk) keys")
        }
        return (0..<(keyValid == nil ? 1 : batch)).map { n in
            var values = [Double](repeating: 0, count: lq * lk)
            for i in 0..<lq { for j in 0..<lk {
                let hidden = (causal && j > i + (lk - lq)) || (keyValid.map { !$0[n][j] } ?? false)
                if hidden { values[i * lk + j] = AttentionMask.blocked }
            } }
            return values
        }
    }
}

/// Where head h of batch entry b starts in a tensor, and how far apart its rows are.
struct HeadLayout {
    let batchStride: Int, headStride: Int, rowStride: Int
    @inline(__always) func offset(_ b: Int, _ h: Int) -> Int { b * batchStride + h * headStride }

    /// [B, H, L, D]
    static func headsFirst(heads: Int, length: Int, width: Int) -> HeadLayout {
        HeadLayout(batchStride: heads * length * width, headStride: length * width, rowStride: width)
    }

    /// [B, L, H·D], the layout Linear projections produce.
    static func headsInterleaved(heads: Int, length: Int, width: Int) -> HeadLayout {
        HeadLayout(batchStride: length * heads * width, headStride: width, rowStride: heads * width)
    }
}

/// Sizes and layouts of one attention call.
struct AttentionGeometry {
    let batch, heads, lq, lk, d, dv: Int
    let q, k, v, o: HeadLayout
    var scale: Double { 1 / Double(d).squareRoot() }
}

private func attentionForward<T: Real>(_ q: UnsafeMutablePointer<T>, _ k: UnsafeMutablePointer<T>,
                                       _ v: UnsafeMutablePointer<T>, _ o: UnsafeMutablePointer<T>,
                                       _ probabilities: UnsafeMutablePointer<T>?, _ mask: [[T]]?, _ g: AttentionGeometry) {
    let pairs = g.batch * g.heads
    parallelFor(pairs, costPerItem: g.lq * g.lk * (g.d + g.dv) * 2) { range in
        // Without a backward to keep P for, one pair's P at a time, in cache.
        let scratch = probabilities == nil ? UnsafeMutablePointer<T>.allocate(capacity: g.lq * g.lk) : nil
        defer { scratch?.deallocate() }
        for pair in range {
            let (b, h) = (pair / g.heads, pair % g.heads)
            let p = scratch ?? probabilities! + pair * g.lq * g.lk
            T.blasGemm(transA: false, transB: true, m: g.lq, n: g.lk, k: g.d, alpha: T(g.scale),
                       a: q + g.q.offset(b, h), lda: g.q.rowStride, b: k + g.k.offset(b, h), ldb: g.k.rowStride,
                       beta: 0, c: p, ldc: g.lk)
            let additive = mask.map { $0[$0.count == 1 ? 0 : b] }
            for i in 0..<g.lq {
                let row = p + i * g.lk
                if let additive { additive.withUnsafeBufferPointer { m in for j in 0..<g.lk { row[j] += m[i * g.lk + j] } } }
                softmaxRow(row, g.lk)
            }
            T.blasGemm(transA: false, transB: false, m: g.lq, n: g.dv, k: g.lk, alpha: 1, a: p, lda: g.lk,
                       b: v + g.v.offset(b, h), ldb: g.v.rowStride, beta: 0, c: o + g.o.offset(b, h), ldc: g.o.rowStride)
        }
    }
}

private func attentionBackward<T: Real>(_ q: UnsafeMutablePointer<T>, _ k: UnsafeMutablePointer<T>,
                                        _ v: UnsafeMutablePointer<T>, _ probabilities: UnsafeMutablePointer<T>,
                                        _ dO: UnsafeMutablePointer<T>, _ dQ: UnsafeMutablePointer<T>,
                                        _ dK: UnsafeMutablePointer<T>, _ dV: UnsafeMutablePointer<T>, _ g: AttentionGeometry) {
    let pairs = g.batch * g.heads
    // The incoming gradient has the output's layout; the input gradients have the inputs'.
    parallelFor(pairs, costPerItem: g.lq * g.lk * (g.d + g.dv) * 4) { range in
        let dS = UnsafeMutablePointer<T>.allocate(capacity: g.lq * g.lk)
        defer { dS.deallocate() }
        for pair in range {
            let (b, h) = (pair / g.heads, pair % g.heads)
            let p = probabilities + pair * g.lq * g.lk
            let gradOut = dO + g.o.offset(b, h)
            // dV = Pᵀ·dO
            T.blasGemm(transA: true, transB: false, m: g.lk, n: g.dv, k: g.lq, alpha: 1, a: p, lda: g.lk,
                       b: gradOut, ldb: g.o.rowStride, beta: 0, c: dV + g.v.offset(b, h), ldc: g.v.rowStride)
            // dP = dO·Vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place
            T.blasGemm(transA: false, transB: true, m: g.lq, n: g.lk, k: g.dv, alpha: 1, a: gradOut, lda: g.o.rowStride,
                       b: v + g.v.offset(b, h), ldb: g.v.rowStride, beta: 0, c: dS, ldc: g.lk)
            for i in 0..<g.lq {
                let row = dS + i * g.lk, probability = p + i * g.lk
                let dot = rowDot(row, probability, g.lk)
                for j in 0..<g.lk { row[j] = probability[j] * (row[j] - dot) }
            }
            // dQ = dS·K/√d,  dK = dSᵀ·Q/√d
            T.blasGemm(transA: false, transB: false, m: g.lq, n: g.d, k: g.lk, alpha: T(g.scale), a: dS, lda: g.lk,
                       b: k + g.k.offset(b, h), ldb: g.k.rowStride, beta: 0, c: dQ + g.q.offset(b, h), ldc: g.q.rowStride)
            T.blasGemm(transA: true, transB: false, m: g.lk, n: g.d, k: g.lq, alpha: T(g.scale), a: dS, lda: g.lk,
                       b: q + g.q.offset(b, h), ldb: g.q.rowStride, beta: 0, c: dK + g.k.offset(b, h), ldc: g.k.rowStride)
        }
    }
}

/// Runs the fused op on tensors whose heads are laid out as `g` says; the output has the shape
/// `outputShape` and layout `g.o`.
private func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, _ g: AttentionGeometry, mask: AttentionMask,
                       outputShape: [Int]) throws -> Tensor {
    try checkArgument(q.dtype == k.dtype && k.dtype == v.dtype, "attention", "dtypes differ")
    let dtype = q.dtype
    let additive = try mask.additive(batch: g.batch, queries: g.lq, keys: g.lk)
    let out = Tensor(shape: outputShape, storage: Storage(dtype: dtype, count: outputShape.reduce(1, *), zeroed: false))
    // P is kept only for a backward to come.
    let probabilities = Tensor.recording(q, k, v) ? Storage(dtype: dtype, count: g.batch * g.heads * g.lq * g.lk, zeroed: false) : nil
    switch dtype {
    case .float32:
        attentionForward(q.storage.pointer(Float.self), k.storage.pointer(Float.self), v.storage.pointer(Float.self),
                         out.storage.pointer(Float.self), probabilities?.pointer(Float.self),
                         additive?.map { $0.map(Float.init) }, g)
    case .float64:
        attentionForward(q.storage.pointer(Double.self), k.storage.pointer(Double.self), v.storage.pointer(Double.self),
                         out.storage.pointer(Double.self), probabilities?.pointer(Double.self), additive, g)
    }
    let pairFlops = 2 * Double(g.batch * g.heads) * Double(g.lq * g.lk)
    FlopCounter.add(pairFlops * Double(g.d + g.dv))
    return Tensor.record(out, "attention", [q, k, v], { grad in
        FlopCounter.add(pairFlops * Double(2 * g.d + 2 * g.dv))
        let dQ = Tensor(shape: q.shape, storage: Storage(dtype: dtype, count: q.count, zeroed: false))
        let dK = Tensor(shape: k.shape, storage: Storage(dtype: dtype, count: k.count, zeroed: false))
        let dV = Tensor(shape: v.shape, storage: Storage(dtype: dtype, count: v.count, zeroed: false))
        func backward<T: Real>(_: T.Type) {
            attentionBackward(q.storage.pointer(T.self), k.storage.pointer(T.self), v.storage.pointer(T.self),
                              probabilities!.pointer(T.self), grad.storage.pointer(T.self), dQ.storage.pointer(T.self),
                              dK.storage.pointer(T.self), dV.storage.pointer(T.self), g)
        }
        switch dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        return [dQ, dK, dV]
    })
}

/// Attention of queries over keys and values with heads as the second dimension:
/// q [B, H, Lq, d], k [B, H, Lk, d], v [B, H, Lk, dv] → [B, H, Lq, dv].
public func scaledDotProductAttention(query q: Tensor, key k: Tensor, value v: Tensor,
                                      mask: AttentionMask = AttentionMask()) throws -> Tensor {
    try checkShape(q.rank == 4 && k.rank == 4 && v.rank == 4 && q.shape[0] == k.shape[0] && q.shape[1] == k.shape[1]
                   && q.shape[3] == k.shape[3] && k.shape.prefix(3) == v.shape.prefix(3), "attention",
                   "query \(describe(q.shape)), key \(describe(k.shape)), value \(describe(v.shape))")
    let (b, h, lq, lk, d, dv) = (q.shape[0], q.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3])
    let g = AttentionGeometry(batch: b, heads: h, lq: lq, lk: lk, d: d, dv: dv,
                              q: .headsFirst(heads: h, length: lq, width: d), k: .headsFirst(heads: h, length: lk, width: d),
                              v: .headsFirst(heads: h, length: lk, width: dv), o: .headsFirst(heads: h, length: lq, width: dv))
    return try attention(q, k, v, g, mask: mask, outputShape: [b, h, lq, dv])
}

/// Multi-head attention on projections laid out as Linear layers produce them, with no permutes:
/// q [B, Lq, H·d], k [B, Lk, H·d], v [B, Lk, H·dv] → [B, Lq, H·dv]; head i uses features
/// i·d ..< (i+1)·d.
public func multiHeadAttention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
                               mask: AttentionMask = AttentionMask()) throws -> Tensor {
    try checkShape(q.rank == 3 && k.rank == 3 && v.rank == 3 && q.shape[0] == k.shape[0] && k.shape[0] == v.shape[0]
                   && k.shape[1] == v.shape[1] && q.shape[2] == k.shape[2] && heads > 0 && q.shape[2] % heads == 0
                   && v.shape[2] % heads == 0, "attention",
                   "query \(describe(q.shape)), key \(describe(k.shape)), value \(describe(v.shape)), \(heads) heads")
    let (b, lq, lk, d, dv) = (q.shape[0], q.shape[1], k.shape[1], q.shape[2] / heads, v.shape[2] / heads)
    let g = AttentionGeometry(batch: b, heads: heads, lq: lq, lk: lk, d: d, dv: dv,
                              q: .headsInterleaved(heads: heads, length: lq, width: d),
                              k: .headsInterleaved(heads: heads, length: lk, width: d),
                              v: .headsInterleaved(heads: heads, length: lk, width: dv),
                              o: .headsInterleaved(heads: heads, length: lq, width: dv))
    return try attention(q, k, v, g, mask: mask, outputShape: [b, lq, heads * dv])
}
