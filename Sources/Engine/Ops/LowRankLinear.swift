/// A linear map with a low-rank update, as one op (LoRA; Hu et al. 2021, "LoRA: Low-Rank
/// Adaptation of Large Language Models"):
///     y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ,   x [rows, k], W [n, k], A [r, k], B [n, r], h = x·Aᵀ [rows, r]
///     t = dy·B [rows, r],  dx = dy·W + s·t·A,  dA = s·tᵀ·x,  dB = s·dyᵀ·h,  dW = dyᵀ·x,  db = Σ dy
/// All products land in the output buffer (GEMMs with β = 1), so the update costs its two thin
/// GEMMs and nothing else — no separate product, scale and sum tensors, each a pass over
/// [rows, n]. Backward keeps h.
public func lowRankLinear(_ x: Tensor, weight: Tensor, bias: Tensor?, down: Tensor, up: Tensor, scale: Double) throws -> Tensor {
    try checkArgument([weight, down, up].allSatisfy { $0.dtype == x.dtype } && (bias?.dtype ?? x.dtype) == x.dtype,
                      "lowRankLinear", "dtypes differ")
    try checkShape(x.rank == 2 && weight.rank == 2 && x.shape[1] == weight.shape[1], "lowRankLinear",
                   "input \(describe(x.shape)) and weight \(describe(weight.shape))")
    try checkShape(down.rank == 2 && up.rank == 2 && down.shape[1] == x.shape[1] && up.shape[0] == weight.shape[0]
                   && up.shape[1] == down.shape[0], "lowRankLinear",
                   "down \(describe(down.shape)) and up \(describe(up.shape)) for weight \(describe(weight.shape))")
    if let bias {
        try checkShape(bias.shape == [weight.shape[0]], "lowRankLinear", "bias \(describe(bias.shape)) for weight \(describe(weight.shape))")
    }
    let (rows, k, n, r) = (x.shape[0], x.shape[1], weight.shape[0], down.shape[0])
    let out = Tensor(shape: [rows, n], storage: Storage(dtype: x.dtype, count: rows * n, zeroed: bias == nil))
    let hidden = Storage(dtype: x.dtype, count: rows * r, zeroed: false)
    func forward<T: Real>(_: T.Type) {
        let py = out.storage.pointer(T.self), px = x.storage.pointer(T.self), ph = hidden.pointer(T.self)
        if let bias {
            let pb = bias.storage.pointer(T.self)
            for row in 0..<rows { (py + row * n).update(from: pb, count: n) }
        }
        gemm(transA: false, transB: true, m: rows, n: n, k: k, alpha: 1, a: px, lda: k,
             b: weight.storage.pointer(T.self), ldb: k, beta: bias == nil ? 0 : 1, c: py, ldc: n)
        gemm(transA: false, transB: true, m: rows, n: r, k: k, alpha: 1, a: px, lda: k,
             b: down.storage.pointer(T.self), ldb: k, beta: 0, c: ph, ldc: r)
        gemm(transA: false, transB: true, m: rows, n: n, k: r, alpha: T(scale), a: ph, lda: r,
             b: up.storage.pointer(T.self), ldb: r, beta: 1, c: py, ldc: n)
    }
    switch x.dtype {
    case .float32: forward(Float.self)
    case .float64: forward(Double.self)
    }
    let (baseFlops, updateFlops) = (2 * Double(rows * n * k), 2 * Double(rows * r) * Double(k + n))
    FlopCounter.add(baseFlops + updateFlops)
    return Tensor.record(out, "lowRankLinear", [x, weight, down, up] + (bias.map { [$0] } ?? []), { g in
        var gx: Tensor?, gw: Tensor?, ga: Tensor?, gu: Tensor?, gb: Tensor?
        func backward<T: Real>(_: T.Type) {
            let pg = g.storage.pointer(T.self), px = x.storage.pointer(T.self), s = T(scale)
            // t = dy·B, shared by dx and dA
            let t = Storage(dtype: x.dtype, count: rows * r, zeroed: false), pt = t.pointer(T.self)
            if x.requiresGrad || down.requiresGrad {
                gemm(transA: false, transB: false, m: rows, n: r, k: n, alpha: 1, a: pg, lda: n,
                     b: up.storage.pointer(T.self), ldb: r, beta: 0, c: pt, ldc: r)
            }
            if x.requiresGrad {
                gx = Tensor(shape: x.shape, storage: Storage(dtype: x.dtype, count: x.count, zeroed: false))
                let pdx = gx!.storage.pointer(T.self)
                gemm(transA: false, transB: false, m: rows, n: k, k: n, alpha: 1, a: pg, lda: n,
                     b: weight.storage.pointer(T.self), ldb: k, beta: 0, c: pdx, ldc: k)
                gemm(transA: false, transB: false, m: rows, n: k, k: r, alpha: s, a: pt, lda: r,
                     b: down.storage.pointer(T.self), ldb: k, beta: 1, c: pdx, ldc: k)
            }
            if down.requiresGrad {
                ga = Tensor(shape: down.shape, storage: Storage(dtype: x.dtype, count: down.count, zeroed: false))
                gemm(transA: true, transB: false, m: r, n: k, k: rows, alpha: s, a: pt, lda: r,
                     b: px, ldb: k, beta: 0, c: ga!.storage.pointer(T.self), ldc: k)
            }
            if up.requiresGrad {
                gu = Tensor(shape: up.shape, storage: Storage(dtype: x.dtype, count: up.count, zeroed: false))
                gemm(transA: true, transB: false, m: n, n: r, k: rows, alpha: s, a: pg, lda: n,
                     b: hidden.pointer(T.self), ldb: r, beta: 0, c: gu!.storage.pointer(T.self), ldc: r)
            }
            if weight.requiresGrad {
                gw = Tensor(shape: weight.shape, storage: Storage(dtype: x.dtype, count: weight.count, zeroed: false))
                gemm(transA: true, transB: false, m: n, n: k, k: rows, alpha: 1, a: pg, lda: n,
                     b: px, ldb: k, beta: 0, c: gw!.storage.pointer(T.self), ldc: k)
            }
            if let bias, bias.requiresGrad { gb = columnSums(pg, rows: rows, columns: n, dtype: x.dtype) }
        }
        switch g.dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        FlopCounter.add((x.requiresGrad ? baseFlops + 2 * Double(rows * r * k) : 0) + (weight.requiresGrad ? baseFlops : 0)
                        + (x.requiresGrad || down.requiresGrad ? 2 * Double(rows * r * n) : 0)
                        + (down.requiresGrad ? 2 * Double(rows * r * k) : 0) + (up.requiresGrad ? 2 * Double(rows * r * n) : 0))
        return [gx, gw, ga, gu] + (bias == nil ? [] : [gb])
    })
}
