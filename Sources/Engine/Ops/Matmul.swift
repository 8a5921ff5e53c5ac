/// Matrix products through BLAS GEMM: matmul with optional transposes (no copies) and batching.

/// C[i] ← op(A[i])·op(B[i]) + β·C[i] for `batch` matrices at element strides; a stride of 0 reuses
/// one matrix for every batch entry (and for C, accumulates into it).
func batchedGemm<T: Real>(_: T.Type, batch: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                          a: UnsafePointer<T>, strideA: Int, b: UnsafePointer<T>, strideB: Int,
                          c: UnsafeMutablePointer<T>, strideC: Int, beta: T = 0, alpha: T = 1) {
    let lda = transA ? m : k, ldb = transB ? k : n
    for i in 0..<batch {
        let accumulate = strideC == 0 && i > 0
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
               a: a + i * strideA, lda: lda, b: b + i * strideB, ldb: ldb,
               beta: accumulate ? 1 : beta, c: c + i * strideC, ldc: n)
    }
}

/// op(A)·op(B) for A [..., M, K] and B [..., K, N] (or [K, N], shared by every batch entry);
/// `transposeA` reads A as [..., K, M], `transposeB` reads B as [..., N, K].
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) throws -> Tensor {
    try checkArgument(a.dtype == b.dtype, "matmul", "dtypes \(a.dtype) and \(b.dtype) differ")
    try checkShape(a.rank >= 2 && b.rank >= 2, "matmul", "\(describe(a.shape)) and \(describe(b.shape)) need rank ≥ 2")
    let m = transposeA ? a.shape[a.rank - 1] : a.shape[a.rank - 2]
    let k = transposeA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
    let kb = transposeB ? b.shape[b.rank - 1] : b.shape[b.rank - 2]
    let n = transposeB ? b.shape[b.rank - 2] : b.shape[b.rank - 1]
    let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
    try checkShape(k == kb && (batchA == batchB || batchB.isEmpty), "matmul",
                   "\(describe(a.shape))\(transposeA ? "ᵀ" : "") × \(describe(b.shape))\(transposeB ? "ᵀ" : "")")
    let batch = batchA.reduce(1, *)
    let out = Tensor(shape: batchA + [m, n], storage: Storage(dtype: a.dtype, count: batch * m * n, zeroed: false))
    let strideB = batchB.isEmpty ? 0 : k * n
    func forward<T: Real>(_: T.Type) {
        let pa = a.storage.pointer(T.self), pb = b.storage.pointer(T.self), pc = out.storage.pointer(T.self)
        if strideB == 0 && !transposeA {
            // One GEMM for the whole batch: [batch·M, K] × [K, N].
            batchedGemm(T.self, batch: 1, transA: false, transB: transposeB, m: batch * m, n: n, k: k,
                        a: pa, strideA: 0, b: pb, strideB: 0, c: pc, strideC: 0)
        } else {
            batchedGemm(T.self, batch: batch, transA: transposeA, transB: transposeB, m: m, n: n, k: k,
                        a: pa, strideA: m * k, b: pb, strideB: strideB, c: pc, strideC: m * n)
        }
    }
    switch a.dtype {
    case .float32: forward(Float.self)
    case .float64: forward(Double.self)
    }
    let gemmFlops = 2 * Double(batch) * Double(m) * Double(n) * Double(k)
    FlopCounter.add(gemmFlops)
    return Tensor.record(out, "matmul", [a, b], { g in
        FlopCounter.add(gemmFlops * Double((a.requiresGrad ? 1 : 0) + (b.requiresGrad ? 1 : 0)))
        var ga: Tensor?, gb: Tensor?
        func backward<T: Real>(_: T.Type) {
            let pa = a.storage.pointer(T.self), pb = b.storage.pointer(T.self), pg = g.storage.pointer(T.self)
            if a.requiresGrad {
                let grad = Tensor(shape: a.shape, storage: Storage(dtype: a.dtype, count: a.count, zeroed: false))
                let pga = grad.storage.pointer(T.self)
                if !transposeA {
                    // dA = dC · op(B)ᵀ
                    batchedGemm(T.self, batch: batch, transA: false, transB: !transposeB, m: m, n: k, k: n,
                                a: pg, strideA: m * n, b: pb, strideB: strideB, c: pga, strideC: m * k)
                } else {
                    // dA = op(B) · dCᵀ
                    batchedGemm(T.self, batch: batch, transA: transposeB, transB: true, m: k, n: m, k: n,
                                a: pb, strideA: strideB, b: pg, strideB: m * n, c: pga, strideC: m * k)
                }
                ga = grad
            }
            if b.requiresGrad {
                let grad = Tensor(shape: b.shape, storage: Storage(dtype: b.dtype, count: b.count, zeroed: false))
                let pgb = grad.storage.pointer(T.self)
                let shared = strideB == 0
                if !transposeB {
                    // dB = op(A)ᵀ · dC
                    if shared && !transposeA {
                        batchedGemm(T.self, batch: 1, transA: true, transB: false, m: k, n: n, k: batch * m,
                                    a: pa, strideA: 0, b: pg, strideB: 0, c: pgb, strideC: 0)
                    } else {
                        batchedGemm(T.self, batch: batch, transA: !transposeA, transB: false, m: k, n: n, k: m,
                                    a: pa, strideA: m * k, b: pg, strideB: m * n, c: pgb, strideC: shared ? 0 : k * n)
                    }
                } else {
                    // dB = dCᵀ · op(A)
                    if shared && !transposeA {
                        batchedGemm(T.self, batch: 1, transA: true, transB: false, m: n, n: k, k: batch * m,
                                    a: pg, strideA: 0, b: pa, strideB: 0, c: pgb, strideC: 0)
                    } else {
                        batchedGemm(T.self, batch: batch, transA: true, transB: transposeA, m: n, n: k, k: m,
                                    a: pg, strideA: m * n, b: pa, strideB: m * k, c: pgb, strideC: shared ? 0 : k * n)
                    }
                }
                gb = grad
            }
        }
        switch g.dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        return [ga, gb]
    })
}

/// Σ over rows of g [rows, columns]: a bias's gradient.
func columnSums<T: Real>(_ g: UnsafePointer<T>, rows: Int, columns n: Int, dtype: DType) -> Tensor {
    let sums = Tensor(zeros: [n], dtype: dtype), ps = sums.storage.pointer(T.self)
    for r in 0..<rows { let row = g + r * n; for j in 0..<n { ps[j] += row[j] } }
    return sums
}

/// y = x·Wᵀ + b for x [R, in], W [out, in], b [out] (`torch.nn.functional.linear`), as one op: the
/// bias is written into y first and the GEMM accumulates onto it, so no broadcast add follows.
///     dx = dy·W,  dW = dyᵀ·x,  db = Σ_rows dy
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
    try checkArgument(x.dtype == weight.dtype && (bias?.dtype ?? x.dtype) == x.dtype, "linear", "dtypes differ")
    try checkShape(x.rank == 2 && weight.rank == 2 && x.shape[1] == weight.shape[1], "linear",
                   "input \(describe(x.shape)) and weight \(describe(weight.shape))")
    if let bias { try checkShape(bias.shape == [weight.shape[0]], "linear", "bias \(describe(bias.shape)) for weight \(describe(weight.shape))") }
    let (rows, k, n) = (x.shape[0], x.shape[1], weight.shape[0])
    let out = Tensor(shape: [rows, n], storage: Storage(dtype: x.dtype, count: rows * n, zeroed: bias == nil))
    func forward<T: Real>(_: T.Type) {
        let py = out.storage.pointer(T.self)
        if let bias {
            let pb = bias.storage.pointer(T.self)
            for r in 0..<rows { (py + r * n).update(from: pb, count: n) }
        }
        gemm(transA: false, transB: true, m: rows, n: n, k: k, alpha: 1, a: x.storage.pointer(T.self), lda: k,
             b: weight.storage.pointer(T.self), ldb: k, beta: bias == nil ? 0 : 1, c: py, ldc: n)
    }
    switch x.dtype {
    case .float32: forward(Float.self)
    case .float64: forward(Double.self)
    }
    let gemmFlops = 2 * Double(rows) * Double(n) * Double(k)
    FlopCounter.add(gemmFlops)
    return Tensor.record(out, "linear", [x, weight] + (bias.map { [$0] } ?? []), { g in
        FlopCounter.add(gemmFlops * Double((x.requiresGrad ? 1 : 0) + (weight.requiresGrad ? 1 : 0)))
        var gx: Tensor?, gw: Tensor?, gb: Tensor?
        func backward<T: Real>(_: T.Type) {
            let pg = g.storage.pointer(T.self)
            if x.requiresGrad {
                gx = Tensor(shape: x.shape, storage: Storage(dtype: x.dtype, count: x.count, zeroed: false))
                gemm(transA: false, transB: false, m: rows, n: k, k: n, alpha: 1, a: pg, lda: n,
                     b: weight.storage.pointer(T.self), ldb: k, beta: 0, c: gx!.storage.pointer(T.self), ldc: k)
            }
            if weight.requiresGrad {
                gw = Tensor(shape: weight.shape, storage: Storage(dtype: x.dtype, count: weight.count, zeroed: false))
                gemm(transA: true, transB: false, m: n, n: k, k: rows, alpha: 1, a: pg, lda: n,
                     b: x.storage.pointer(T.self), ldb: k, beta: 0, c: gw!.storage.pointer(T.self), ldc: k)
            }
            if let bias, bias.requiresGrad { gb = columnSums(pg, rows: rows, columns: n, dtype: x.dtype) }
        }
        switch g.dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        return [gx, gw] + (bias == nil ? [] : [gb])
    })
}
