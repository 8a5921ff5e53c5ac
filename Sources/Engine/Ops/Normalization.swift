/// Group norm, layer norm and RMS norm: one kernel normalizes contiguous rows and applies a
/// per-channel affine.
///
/// Notation, per row of M values (a group of channels × pixels, or one token's features):
///     μ = mean(x),  r = 1/√(var(x) + ε)     (RMS norm: μ = 0, r = 1/√(mean(x²) + ε))
///     x̂ = (x − μ)·r,  y = γ_c·x̂ + β_c
///     dx̂ = g·γ_c,  dx = r·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))   (RMS norm: no mean(dx̂) term)
///     dγ_c = Σ g·x̂,  dβ_c = Σ g

/// How a row's elements map to affine channels: element j of row `row` is channel
/// (row % groups)·channelsPerGroup + j / spatial (rows hold `channelsPerGroup` runs of `spatial`).
struct RowLayout {
    let rows: Int, length: Int, groups: Int, channelsPerGroup: Int, spatial: Int
}

/// Normalizes rows; returns y and, given `xHat`, caches x̂ and r for backward (a call that records
/// nothing writes y alone). Inner loops run over the pixels of one channel, so γ and β are loaded
/// once per channel.
private func normalizeForward<T: Real>(_: T.Type, _ x: Storage, _ y: Storage, _ xHat: Storage?, _ rstd: Storage,
                                       _ gamma: Storage?, _ beta: Storage?, _ layout: RowLayout, _ eps: Double,
                                       centered: Bool) {
    let px = x.pointer(T.self), py = y.pointer(T.self), ph = xHat?.pointer(T.self), pr = rstd.pointer(T.self)
    let pgamma = gamma?.pointer(T.self), pbeta = beta?.pointer(T.self)
    let m = layout.length, spatial = layout.spatial, channels = layout.channelsPerGroup
    parallelFor(layout.rows, costPerItem: m * 6) { range in
        for row in range {
            let base = row * m
            let mean = centered ? rowSum(px + base, m) / T(m) : 0
            let r = 1 / (rowSquaredDeviation(px + base, m, from: mean) / T(m) + T(eps)).squareRoot()
            pr[row] = r
            let firstChannel = (row % layout.groups) * channels
            if spatial == 1 {
                // Layer norm: one run over the row's features, which the compiler vectorizes.
                if let ph {
                    for j in 0..<m {
                        let h = (px[base + j] - mean) * r
                        ph[base + j] = h
                        py[base + j] = h * (pgamma?[firstChannel + j] ?? 1) + (pbeta?[firstChannel + j] ?? 0)
                    }
                } else {
                    for j in 0..<m {
                        py[base + j] = (px[base + j] - mean) * r * (pgamma?[firstChannel + j] ?? 1) + (pbeta?[firstChannel + j] ?? 0)
                    }
                }
                continue
            }
            for channel in 0..<channels {
                let scale = pgamma?[firstChannel + channel] ?? 1, shift = pbeta?[firstChannel + channel] ?? 0
                let offset = base + channel * spatial
                if let ph {
                    for s in 0..<spatial {
                        let h = (px[offset + s] - mean) * r
                        ph[offset + s] = h
                        py[offset + s] = h * scale + shift
                    }
                } else {
                    for s in 0..<spatial { py[offset + s] = (px[offset + s] - mean) * r * scale + shift }
                }
            }
        }
    }
}

private func normalizeBackward<T: Real>(_: T.Type, _ g: Storage, _ xHat: Storage, _ rstd: Storage, _ gamma: Storage?,
                                        _ gx: Storage, _ gGamma: Storage?, _ gBeta: Storage?, _ layout: RowLayout,
                                        centered: Bool) {
    let pg = g.pointer(T.self), ph = xHat.pointer(T.self), pr = rstd.pointer(T.self), po = gx.pointer(T.self)
    let pgamma = gamma?.pointer(T.self)
    let m = layout.length, spatial = layout.spatial, channels = layout.channelsPerGroup
    parallelFor(layout.rows, costPerItem: m * 8) { range in
        for row in range {
            let base = row * m, firstChannel = (row % layout.groups) * channels
            var meanD: T = 0, meanDH: T = 0
            let r = pr[row]
            if spatial == 1 {
                // Layer norm: dx̂ = g·γ over the row's features in two vectorizable passes.
                for j in 0..<m {
                    let d = pg[base + j] * (pgamma?[firstChannel + j] ?? 1)
                    meanD += d
                    meanDH += d * ph[base + j]
                }
                meanD = centered ? meanD / T(m) : 0
                meanDH /= T(m)
                for j in 0..<m {
                    po[base + j] = r * (pg[base + j] * (pgamma?[firstChannel + j] ?? 1) - meanD - ph[base + j] * meanDH)
                }
                continue
            }
            for channel in 0..<channels {
                let scale = pgamma?[firstChannel + channel] ?? 1, offset = base + channel * spatial
                meanD += rowSum(pg + offset, spatial) * scale
                meanDH += rowDot(pg + offset, ph + offset, spatial) * scale
            }
            meanD = centered ? meanD / T(m) : 0
            meanDH /= T(m)
            for channel in 0..<channels {
                let scale = pgamma?[firstChannel + channel] ?? 1, offset = base + channel * spatial
                for s in 0..<spatial {
                    po[offset + s] = r * (pg[offset + s] * scale - meanD - ph[offset + s] * meanDH)
                }
            }
        }
    }
    // Parameter gradients on one thread: rows of different groups write the same channels.
    guard gGamma != nil || gBeta != nil else { return }
    let pgg = gGamma?.pointer(T.self), pgb = gBeta?.pointer(T.self)
    if spatial == 1 {
        // Layer norm: each thread sums its own block of features over all rows.
        parallelFor(m, costPerItem: layout.rows * 2) { features in
            for row in 0..<layout.rows {
                let base = row * m
                for j in features {
                    pgg?[j] += pg[base + j] * ph[base + j]
                    pgb?[j] += pg[base + j]
                }
            }
        }
        return
    }
    for row in 0..<layout.rows {
        let base = row * m, firstChannel = (row % layout.groups) * channels
        for channel in 0..<channels {
            let offset = base + channel * spatial
            pgg?[firstChannel + channel] += rowDot(pg + offset, ph + offset, spatial)
            pgb?[firstChannel + channel] += rowSum(pg + offset, spatial)
        }
    }
}

/// Shared driver: normalizes `x` by `layout`, applies optional γ/β, records backward.
private func normalize(_ name: String, _ x: Tensor, _ gamma: Tensor?, _ beta: Tensor?, _ layout: RowLayout,
                       eps: Double, centered: Bool) throws -> Tensor {
    for p in [gamma, beta].compactMap({ $0 }) {
        try checkArgument(p.dtype == x.dtype, name, "parameter dtype \(p.dtype) for input \(x.dtype)")
    }
    let y = Tensor(shape: x.shape, storage: Storage(dtype: x.dtype, count: x.count, zeroed: false))
    // x̂ is kept only for a backward to come.
    let records = Tensor.recording(x) || [gamma, beta].contains { $0.map { Tensor.recording($0) } ?? false }
    let xHat = records ? Storage(dtype: x.dtype, count: x.count, zeroed: false) : nil
    let rstd = Storage(dtype: x.dtype, count: layout.rows, zeroed: false)
    switch x.dtype {
    case .float32: normalizeForward(Float.self, x.storage, y.storage, xHat, rstd, gamma?.storage, beta?.storage, layout, eps, centered: centered)
    case .float64: normalizeForward(Double.self, x.storage, y.storage, xHat, rstd, gamma?.storage, beta?.storage, layout, eps, centered: centered)
    }
    let inputs = [x] + [gamma, beta].compactMap { $0 }
    return Tensor.record(y, name, inputs, { g in
        let gx = Tensor(shape: x.shape, storage: Storage(dtype: x.dtype, count: x.count, zeroed: false))
        // Frozen γ and β (LoRA training) get no gradient: their sums over every row are skipped.
        let gGamma = gamma.flatMap { $0.requiresGrad ? Tensor(zeros: $0.shape, dtype: x.dtype) : nil }
        let gBeta = beta.flatMap { $0.requiresGrad ? Tensor(zeros: $0.shape, dtype: x.dtype) : nil }
        switch x.dtype {
        case .float32: normalizeBackward(Float.self, g.storage, xHat!, rstd, gamma?.storage, gx.storage, gGamma?.storage, gBeta?.storage, layout, centered: centered)
        case .float64: normalizeBackward(Double.self, g.storage, xHat!, rstd, gamma?.storage, gx.storage, gGamma?.storage, gBeta?.storage, layout, centered: centered)
        }
        return [gx] + (gamma == nil ? [] : [gGamma]) + (beta == nil ? [] : [gBeta])
    })
}

/// Group normalization of x [N, C, ...] over `groups` groups of channels (with their pixels), then
/// per-channel γ [C] and β [C].
public func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Double = 1e-5) throws -> Tensor {
    try checkShape(x.rank >= 2, "groupNorm", "input \(describe(x.shape)) needs [N, C, ...]")
    let c = x.shape[1]
    try checkArgument(groups > 0 && c % groups == 0, "groupNorm", "\(c) channels do not split into \(groups) groups")
    for p in [weight, bias].compactMap({ $0 }) {
        try checkShape(p.shape == [c], "groupNorm", "parameter \(describe(p.shape)) for input \(describe(x.shape))")
    }
    let spatial = x.shape.dropFirst(2).reduce(1, *)
    let layout = RowLayout(rows: x.shape[0] * groups, length: c / groups * spatial, groups: groups,
                           channelsPerGroup: c / groups, spatial: spatial)
    return try normalize("groupNorm", x, weight, bias, layout, eps: eps, centered: true)
}

/// Layer normalization over the last dimension, with optional γ and β of that size.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Double = 1e-5) throws -> Tensor {
    let d = x.shape.last ?? 1
    for p in [weight, bias].compactMap({ $0 }) {
        try checkShape(p.shape == [d], "layerNorm", "parameter \(describe(p.shape)) for input \(describe(x.shape))")
    }
    let layout = RowLayout(rows: x.count / Swift.max(d, 1), length: d, groups: 1, channelsPerGroup: d, spatial: 1)
    return try normalize("layerNorm", x, weight, bias, layout, eps: eps, centered: true)
}

/// RMS normalization over the last dimension, x / √(mean(x²) + ε) · γ.
public func rmsNorm(_ x: Tensor, weight: Tensor?, eps: Double = 1e-6) throws -> Tensor {
    let d = x.shape.last ?? 1
    if let weight {
        try checkShape(weight.shape == [d], "rmsNorm", "weight \(describe(weight.shape)) for input \(describe(x.shape))")
    }
    let layout = RowLayout(rows: x.count / Swift.max(d, 1), length: d, groups: 1, channelsPerGroup: d, spatial: 1)
    return try normalize("rmsNorm", x, weight, nil, layout, eps: eps, centered: false)
}
