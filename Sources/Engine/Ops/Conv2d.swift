/// 2-D convolution (groups = 1) as im2col + one GEMM for the whole batch.
///
/// Shapes: x [N, C, H, W], weight [O, C, kh, kw], bias [O], y [N, O, Ho, Wo],
/// Ho = (H + 2p − kh)/s + 1. The column matrix is cols [C·kh·kw, N·Ho·Wo], so
///     Y [O, N·Ho·Wo] = W [O, C·kh·kw] · cols        (then laid out as NCHW, plus bias)
///     dW = dY · colsᵀ,   dcols = Wᵀ · dY,   dx = col2im(dcols),   dbias = Σ dY
/// Backward caches `cols` (the only thing dW needs besides dY).

/// Geometry of one convolution call.
struct ConvGeometry {
    let n, c, h, w, o, kh, kw, stride, padding, ho, wo: Int
    var columnRows: Int { c * kh * kw }
    var columnCount: Int { n * ho * wo }
}

/// cols[(c, ki, kj), (n, oy, ox)] = x[n, c, oy·s − p + ki, ox·s − p + kj], or 0 outside.
private func im2col<T: Real>(_: T.Type, _ x: UnsafeMutablePointer<T>, _ cols: UnsafeMutablePointer<T>, _ g: ConvGeometry) {
    let plane = g.ho * g.wo
    parallelFor(g.columnRows, costPerItem: g.columnCount) { rows in
        for row in rows {
            let c = row / (g.kh * g.kw), ki = (row / g.kw) % g.kh, kj = row % g.kw
            let rowBase = cols + row * g.columnCount
            for n in 0..<g.n {
                let image = x + (n * g.c + c) * g.h * g.w
                let dst = rowBase + n * plane
                for oy in 0..<g.ho {
                    let iy = oy &* g.stride &- g.padding &+ ki
                    let line = dst + oy * g.wo
                    if iy < 0 || iy >= g.h {
                        line.update(repeating: 0, count: g.wo)
                        continue
                    }
                    let src = image + iy * g.w
                    if g.stride == 1 {
                        // Contiguous run: columns where 0 ≤ ox − p + kj < W.
                        let start = Swift.min(Swift.max(0, g.padding - kj), g.wo)
                        let end = Swift.max(Swift.min(g.wo, g.w + g.padding - kj), start)
                        line.update(repeating: 0, count: start)
                        line.advanced(by: start).update(from: src + (start - g.padding + kj), count: end - start)
                        line.advanced(by: end).update(repeating: 0, count: g.wo - end)
                    } else {
                        for ox in 0..<g.wo {
                            let ix = ox &* g.stride &- g.padding &+ kj
                            line[ox] = ix >= 0 && ix < g.w ? src[ix] : 0
                        }
                    }
                }
            }
        }
    }
}

/// dx[n, c, iy, ix] += dcols[(c, ki, kj), (n, oy, ox)]: the adjoint of im2col. Parallel over input
/// channels, which own disjoint parts of dx.
private func col2im<T: Real>(_: T.Type, _ cols: UnsafeMutablePointer<T>, _ dx: UnsafeMutablePointer<T>, _ g: ConvGeometry) {
    let plane = g.ho * g.wo
    parallelFor(g.c, costPerItem: g.kh * g.kw * g.columnCount) { channels in
        for c in channels {
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let row = (c * g.kh + ki) * g.kw + kj
                    let rowBase = cols + row * g.columnCount
                    for n in 0..<g.n {
                        let image = dx + (n * g.c + c) * g.h * g.w
                        let src = rowBase + n * plane
                        for oy in 0..<g.ho {
                            let iy = oy &* g.stride &- g.padding &+ ki
                            if iy < 0 || iy >= g.h { continue }
                            let line = src + oy * g.wo, dst = image + iy * g.w
                            for ox in 0..<g.wo {
                                let ix = ox &* g.stride &- g.padding &+ kj
                                if ix >= 0 && ix < g.w { dst[ix] += line[ox] }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y[n, o, p] = Y[o, n·P + p] + bias[o] (from the GEMM's channel-major layout to NCHW).
private func columnsToNCHW<T: Real>(_: T.Type, _ src: UnsafeMutablePointer<T>, _ dst: UnsafeMutablePointer<T>,
                                    _ bias: UnsafeMutablePointer<T>?, n: Int, o: Int, plane: Int) {
    parallelFor(o, costPerItem: n * plane) { channels in
        for ch in channels {
            let b = bias?[ch] ?? 0
            for i in 0..<n {
                let s = src + (ch * n + i) * plane, d = dst + (i * o + ch) * plane
                for p in 0..<plane { d[p] = s[p] + b }
            }
        }
    }
}

/// dY[o, n·P + p] = g[n, o, p], and dbias[o] = Σ g[·, o, ·].
private func nchwToColumns<T: Real>(_: T.Type, _ src: UnsafeMutablePointer<T>, _ dst: UnsafeMutablePointer<T>,
                                    _ biasGrad: UnsafeMutablePointer<T>?, n: Int, o: Int, plane: Int) {
    parallelFor(o, costPerItem: n * plane) { channels in
        for ch in channels {
            var total: T = 0
            for i in 0..<n {
                let s = src + (i * o + ch) * plane, d = dst + (ch * n + i) * plane
                for p in 0..<plane { d[p] = s[p]; total += s[p] }
            }
            biasGrad?[ch] = total
        }
    }
}

/// 2-D convolution with square stride and zero padding (cross-correlation, as in PyTorch).
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) throws -> Tensor {
    try checkShape(x.rank == 4 && weight.rank == 4 && x.shape[1] == weight.shape[1], "conv2d",
                   "input \(describe(x.shape)) and weight \(describe(weight.shape))")
    if let bias {
        try checkShape(bias.shape == [weight.shape[0]], "conv2d", "bias \(describe(bias.shape)) for weight \(describe(weight.shape))")
    }
    try checkArgument(x.dtype == weight.dtype && (bias?.dtype ?? x.dtype) == x.dtype, "conv2d", "dtypes differ")
    try checkArgument(stride >= 1 && padding >= 0, "conv2d", "stride \(stride), padding \(padding)")
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    let ho = (h + 2 * padding - kh) / stride + 1, wo = (w + 2 * padding - kw) / stride + 1
    try checkShape(h + 2 * padding >= kh && w + 2 * padding >= kw, "conv2d",
                   "kernel \(kh)×\(kw) larger than padded input \(describe(x.shape))")
    let g = ConvGeometry(n: n, c: c, h: h, w: w, o: o, kh: kh, kw: kw, stride: stride, padding: padding, ho: ho, wo: wo)
    let dtype = x.dtype
    let cols = Storage(dtype: dtype, count: g.columnRows * g.columnCount, zeroed: false)
    let product = Storage(dtype: dtype, count: o * g.columnCount, zeroed: false)
    let y = Tensor(shape: [n, o, ho, wo], storage: Storage(dtype: dtype, count: n * o * ho * wo, zeroed: false))
    func forward<T: Real>(_: T.Type) {
        im2col(T.self, x.storage.pointer(T.self), cols.pointer(T.self), g)
        T.gemm(transA: false, transB: false, m: o, n: g.columnCount, k: g.columnRows, alpha: 1,
               a: weight.storage.pointer(T.self), lda: g.columnRows, b: cols.pointer(T.self), ldb: g.columnCount,
               beta: 0, c: product.pointer(T.self), ldc: g.columnCount)
        columnsToNCHW(T.self, product.pointer(T.self), y.storage.pointer(T.self), bias?.storage.pointer(T.self),
                      n: n, o: o, plane: ho * wo)
    }
    switch dtype {
    case .float32: forward(Float.self)
    case .float64: forward(Double.self)
    }
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    return Tensor.record(y, "conv2d", inputs, { grad in
        let gx = x.requiresGrad ? Tensor(zeros: x.shape, dtype: dtype) : nil
        let gw = weight.requiresGrad ? Tensor(zeros: weight.shape, dtype: dtype) : nil
        let gb = bias.map { Tensor(zeros: $0.shape, dtype: dtype) }
        func backward<T: Real>(_: T.Type) {
            let dYStorage = Storage(dtype: dtype, count: o * g.columnCount, zeroed: false)
            let dY = dYStorage.pointer(T.self)
            nchwToColumns(T.self, grad.storage.pointer(T.self), dY, gb?.storage.pointer(T.self), n: n, o: o, plane: ho * wo)
            if let gw {
                T.gemm(transA: false, transB: true, m: o, n: g.columnRows, k: g.columnCount, alpha: 1,
                       a: dY, lda: g.columnCount, b: cols.pointer(T.self), ldb: g.columnCount,
                       beta: 0, c: gw.storage.pointer(T.self), ldc: g.columnRows)
            }
            if let gx {
                let dCols = Storage(dtype: dtype, count: g.columnRows * g.columnCount, zeroed: false)
                T.gemm(transA: true, transB: false, m: g.columnRows, n: g.columnCount, k: o, alpha: 1,
                       a: weight.storage.pointer(T.self), lda: g.columnRows, b: dY, ldb: g.columnCount,
                       beta: 0, c: dCols.pointer(T.self), ldc: g.columnCount)
                col2im(T.self, dCols.pointer(T.self), gx.storage.pointer(T.self), g)
            }
        }
        switch dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        return [gx, gw] + (gb.map { [$0] } ?? [])
    })
}
