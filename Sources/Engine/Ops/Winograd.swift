/// 3×3 convolution, stride 1, padding 1, by Winograd's minimal filtering F(2×2, 3×3) (Lavin &
/// Gray 2016, "Fast Algorithms for Convolutional Neural Networks", §4). Each 2×2 output tile of
/// a plane comes from the 4×4 input tile d around it (zero outside the image):
///     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A,   summed over input channels,
///     Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],
///     Aᵀ = [1 1 1 0; 0 1 −1 −1].
/// With U[ξ] = (G g Gᵀ)[ξ] as 16 matrices [O, C] and V[ξ] = (Bᵀ d B)[ξ] as 16 matrices
/// [C, tiles], the sum over channels is 16 GEMMs M[ξ] = U[ξ]·V[ξ]: 16 multiplications per
/// 4 outputs and channel pair where im2col's GEMM has 36 — 2.25× fewer FLOPs; the transforms are
/// O(C·tiles) and O(O·tiles) additions. The UNet's 3×3 convolutions (4×4 and 8×8 planes, where a
/// direct kernel has little to reuse) are all of this shape.

/// The 16 transformed kernels U [16, O, C] of a weight [O, C, 3, 3] (C in eights), written to `u`.
/// One output channel at a time: its taps are transposed to [9, C], transformed eight channels at
/// a time into a local [16, C] buffer, and copied out as 16 contiguous runs. Written straight into
/// U, the 16 streams lie O·C elements apart — a multiple of 4 KiB for every shape here, so they
/// share one set of the L1 cache and evict each other: about 30 ns per kernel pair, where this
/// takes about 10 — bound by the weights' memory traffic (all 3×3 kernels of the UNet's batch-4
/// forward + backward, one thread: 2.2 ms).
func winogradKernels<T: Real>(_ weight: UnsafePointer<T>, _ u: UnsafeMutablePointer<T>, outputs o: Int, inputs c: Int) {
    precondition(c % 8 == 0, "winogradKernels: \(c) input channels, not a multiple of 8")
    let half = SIMD8<T>(repeating: T(0.5))
    // Split over the output channels: at small batches the transform is a fair share of the call.
    parallelFor(o, costPerItem: c * 48) { outputs in
        let taps = UnsafeMutablePointer<T>.allocate(capacity: 9 * c), rows = UnsafeMutablePointer<T>.allocate(capacity: 16 * c)
        defer { taps.deallocate(); rows.deallocate() }
        for out in outputs {
            let g = weight + out * c * 9
            for channel in 0..<c { for tap in 0..<9 { taps[tap * c + channel] = g[channel * 9 + tap] } }
            for k in Swift.stride(from: 0, to: c, by: 8) {
                func tap(_ t: Int) -> SIMD8<T> { load8(taps + t * c + k) }
                let (g0, g1, g2, g3, g4, g5, g6, g7, g8) = (tap(0), tap(1), tap(2), tap(3), tap(4), tap(5), tap(6), tap(7), tap(8))
                // G·g: four rows of three; then each row (a, b, e) times Gᵀ gives ξ = 4i … 4i + 3.
                func put(_ i: Int, _ a: SIMD8<T>, _ b: SIMD8<T>, _ e: SIMD8<T>) {
                    let at = rows + 4 * i * c + k
                    store8(a, at)
                    store8(half * (a + b + e), at + c)
                    store8(half * (a - b + e), at + 2 * c)
                    store8(e, at + 3 * c)
                }
                put(0, g0, g1, g2)
                put(1, half * (g0 + g3 + g6), half * (g1 + g4 + g7), half * (g2 + g5 + g8))
                put(2, half * (g0 - g3 + g6), half * (g1 - g4 + g7), half * (g2 - g5 + g8))
                put(3, g6, g7, g8)
            }
            for xi in 0..<16 { (u + xi * o * c + out * c).update(from: rows + xi * c, count: c) }
        }
    }
}

/// Tiles of a plane and the images per cache block.
private struct WinogradTiling {
    let tilesHigh, tilesWide: Int
    var perImage: Int { tilesHigh * tilesWide }
    /// The padded plane every tile of which lies inside: (2·tiles + 2) on each side.
    var paddedHeight: Int { 2 * tilesHigh + 2 }
    var paddedWidth: Int { 2 * tilesWide + 2 }

    init(_ g: ConvGeometry) {
        tilesHigh = (g.h + 1) / 2
        tilesWide = (g.w + 1) / 2
    }

    /// About 2 MiB of transformed input per block.
    func imagesPerBlock(channels: Int) -> Int { Swift.max(1, (1 << 19) / Swift.max(16 * channels * perImage, 1)) }
}

extension ConvGeometry {
    /// Whether `winogradImages` can compute this convolution: 3×3, stride 1, padding 1, channels in
    /// and out in multiples of 8 (its vectors).
    var isWinogradShape: Bool {
        kh == 3 && kw == 3 && stride == 1 && padding == 1 && c % 8 == 0 && o % 8 == 0
    }

    /// Elements of the transformed input V [16, N·tiles, C] that a trained kernel's forward keeps.
    var winogradInputCount: Int { 16 * n * WinogradTiling(self).perImage * c }

    /// Whether Winograd is the faster way here: on planes of 16 pixels or more, whatever the batch
    /// and whether or not the kernel's transform (O·C·16 values) is shared with a backward pass or
    /// kept by `withFixedKernels`. Since the transform stopped thrashing the L1 cache (see
    /// `winogradKernels`) it is cheap enough to pay per call: a lone forward at batch 8 on one
    /// thread, 15.8–16.5 → 12.0–13.3 ms, two workers' batch 32 27.0–27.3 → 24.1–25.0 (with im2col
    /// below 16 images and 512 pixels, which the aliased transform had needed). The cost is at one
    /// image (forward + backward, one thread: 9.2–9.4 → 9.9–10.2 ms). Not depending on the batch,
    /// the choice is the same for a batch as for its ranks' shares of it, so data-parallel runs do
    /// the one process's arithmetic.
    var prefersWinograd: Bool { isWinogradShape && h * w >= 16 }
}

/// Copies `images` of x [n, C, H, W] into the interior of the zero-bordered, channels-last
/// xt [count, Hp, Wp, C] (its borders are never written, so they stay zero).
private func winogradChannelsLast<T: Real>(_ x: UnsafeMutablePointer<T>, _ xt: UnsafeMutablePointer<T>, _ images: Range<Int>,
                                           _ tiling: WinogradTiling, _ g: ConvGeometry) {
    let (c, hp, wp) = (g.c, tiling.paddedHeight, tiling.paddedWidth)
    for (local, image) in images.enumerated() {
        for channel in 0..<c {
            let plane = x + (image * c + channel) * g.h * g.w
            for row in 0..<g.h {
                let dst = xt + ((local * hp + row + 1) * wp + 1) * c + channel, src = plane + row * g.w
                for col in 0..<g.w { dst[col * c] = src[col] }
            }
        }
    }
}

/// V[ξ, tile, ·] = (Bᵀ d B)[ξ] for the tiles of `count` images of xt [count, Hp, Wp, C], over
/// channel vectors; V's 16 matrices [count·tiles, C] lie `vStride` apart.
private func winogradInputTransform<T: Real>(_ xt: UnsafeMutablePointer<T>, _ v: UnsafeMutablePointer<T>, vStride: Int,
                                             count: Int, channels c: Int, _ tiling: WinogradTiling) {
    let wp = tiling.paddedWidth, hp = tiling.paddedHeight
    for local in 0..<count {
        for ty in 0..<tiling.tilesHigh {
            for tx in 0..<tiling.tilesWide {
                let tile = local * tiling.perImage + ty * tiling.tilesWide + tx
                let d = xt + ((local * hp + 2 * ty) * wp + 2 * tx) * c
                let rowStride = wp * c
                let out = v + tile * c
                let (d0, d1, d2, d3) = (d, d + rowStride, d + 2 * rowStride, d + 3 * rowStride)
                let (c1, c2, c3) = (c, 2 * c, 3 * c)
                // Eight channels at a time, as explicit vectors: with sixteen input and sixteen
                // output streams the compiler would not vectorize this loop on its own.
                for k in Swift.stride(from: 0, to: c, by: 8) {
                    // Bᵀ·d: rows w0…w3 of four (columns j = 0…3 at k, k + C, k + 2C, k + 3C)
                    let w00 = load8(d0 + k) - load8(d2 + k), w01 = load8(d0 + c1 + k) - load8(d2 + c1 + k)
                    let w02 = load8(d0 + c2 + k) - load8(d2 + c2 + k), w03 = load8(d0 + c3 + k) - load8(d2 + c3 + k)
                    let w10 = load8(d1 + k) + load8(d2 + k), w11 = load8(d1 + c1 + k) + load8(d2 + c1 + k)
                    let w12 = load8(d1 + c2 + k) + load8(d2 + c2 + k), w13 = load8(d1 + c3 + k) + load8(d2 + c3 + k)
                    let w20 = load8(d2 + k) - load8(d1 + k), w21 = load8(d2 + c1 + k) - load8(d1 + c1 + k)
                    let w22 = load8(d2 + c2 + k) - load8(d1 + c2 + k), w23 = load8(d2 + c3 + k) - load8(d1 + c3 + k)
                    let w30 = load8(d1 + k) - load8(d3 + k), w31 = load8(d1 + c1 + k) - load8(d3 + c1 + k)
                    let w32 = load8(d1 + c2 + k) - load8(d3 + c2 + k), w33 = load8(d1 + c3 + k) - load8(d3 + c3 + k)
                    // (Bᵀ·d)·B: row i gives ξ = 4i … 4i + 3
                    let at = out + k
                    store8(w00 - w02, at); store8(w01 + w02, at + vStride)
                    store8(w02 - w01, at + 2 * vStride); store8(w01 - w03, at + 3 * vStride)
                    store8(w10 - w12, at + 4 * vStride); store8(w11 + w12, at + 5 * vStride)
                    store8(w12 - w11, at + 6 * vStride); store8(w11 - w13, at + 7 * vStride)
                    store8(w20 - w22, at + 8 * vStride); store8(w21 + w22, at + 9 * vStride)
                    store8(w22 - w21, at + 10 * vStride); store8(w21 - w23, at + 11 * vStride)
                    store8(w30 - w32, at + 12 * vStride); store8(w31 + w32, at + 13 * vStride)
                    store8(w32 - w31, at + 14 * vStride); store8(w31 - w33, at + 15 * vStride)
                }
            }
        }
    }
}

/// How `winogradImages` reads the transformed kernels U [16, O, C] of a weight [O, C, 3, 3]: as
/// they are (the convolution), or as the kernels of its adjoint — the convolution with the
/// flipped, transposed weight W̃[c, o] = J W[o, c] J (J reverses the three taps), which gives dx.
/// Since G J = P G, with P swapping rows 0 and 3, G W̃ Gᵀ is P U Pᵀ with the channels transposed:
/// the adjoint's kernel at ξ = 4i + j is U at 4·P(i) + P(j), read as [C, O] — no second transform
/// and no flipped copy.
enum WinogradKernelUse {
    case convolution, adjoint

    /// The kernel index the adjoint reads at ξ (P = [3, 1, 2, 0] on both axes).
    static func adjointIndex(_ xi: Int) -> Int {
        let swap = [3, 1, 2, 0]
        return 4 * swap[xi / 4] + swap[xi % 4]
    }
}

/// y = conv(x, weight) + bias for the images `range`, from the transformed kernels `u` [16, O, C]
/// (for `.adjoint`, u is the forward convolution's [16, C, O] and y its input gradient). With
/// `keptInput` — V for the whole batch, [16, N·tiles, C] — the transformed input stays there for
/// the weight gradient instead of in a block-local buffer.
/// Channels go last inside a block (x is copied to a zero-bordered [n, Hp, Wp, C]), so that both
/// transforms run along contiguous channel vectors and vectorize:
///     V[ξ, tile, c] = (Bᵀ d B)[ξ],   M[ξ] [tiles, O] = V[ξ] [tiles, C] · U[ξ]ᵀ,
///     y[n, h, w, o] = (Aᵀ M A) + bias,   then back to [n, O, H, W].
func winogradImages<T: Real>(_ x: UnsafeMutablePointer<T>, _ u: UnsafePointer<T>, _ use: WinogradKernelUse,
                             _ bias: UnsafeMutablePointer<T>?, _ y: UnsafeMutablePointer<T>, _ range: Range<Int>, _ g: ConvGeometry,
                             keptInput: UnsafeMutablePointer<T>? = nil) {
    let tiling = WinogradTiling(g)
    let (c, o) = (g.c, g.o)
    let blockImages = Swift.min(tiling.imagesPerBlock(channels: Swift.max(c, o)), range.count)
    let (hp, wp) = (tiling.paddedHeight, tiling.paddedWidth)
    let tilesPerBlock = blockImages * tiling.perImage
    let xt = UnsafeMutablePointer<T>.allocate(capacity: blockImages * hp * wp * c)
    let local = keptInput == nil ? UnsafeMutablePointer<T>.allocate(capacity: 16 * tilesPerBlock * c) : nil
    let m = UnsafeMutablePointer<T>.allocate(capacity: 16 * tilesPerBlock * o)
    let yt = UnsafeMutablePointer<T>.allocate(capacity: blockImages * 4 * tiling.perImage * o)
    let zero = UnsafeMutablePointer<T>.allocate(capacity: o)
    defer { xt.deallocate(); local?.deallocate(); m.deallocate(); yt.deallocate(); zero.deallocate() }
    xt.initialize(repeating: 0, count: blockImages * hp * wp * c)
    zero.initialize(repeating: 0, count: o)
    let biases = bias.map { UnsafePointer($0) } ?? UnsafePointer(zero)
    for start in Swift.stride(from: range.lowerBound, to: range.upperBound, by: blockImages) {
        let images = start ..< Swift.min(start + blockImages, range.upperBound)
        let p = images.count * tiling.perImage
        let (v, vStride) = keptInput.map { ($0 + start * tiling.perImage * c, g.n * tiling.perImage * c) } ?? (local!, p * c)
        winogradChannelsLast(x, xt, images, tiling, g)
        winogradInputTransform(xt, v, vStride: vStride, count: images.count, channels: c, tiling)
        // M[ξ] [tiles, O] = V[ξ] [tiles, C] · U[ξ]ᵀ
        for xi in 0..<16 {
            switch use {
            case .convolution:
                T.blasGemm(transA: false, transB: true, m: p, n: o, k: c, alpha: 1, a: v + xi * vStride, lda: c,
                           b: u + xi * o * c, ldb: c, beta: 0, c: m + xi * p * o, ldc: o)
            case .adjoint:
                T.blasGemm(transA: false, transB: false, m: p, n: o, k: c, alpha: 1, a: v + xi * vStride, lda: c,
                           b: u + WinogradKernelUse.adjointIndex(xi) * o * c, ldb: o, beta: 0, c: m + xi * p * o, ldc: o)
            }
        }
        // yt [n, 2·tilesHigh, 2·tilesWide, O] = Aᵀ M A + bias, over output-channel vectors
        let mStride = p * o, ytWidth = 2 * tiling.tilesWide
        for local in 0..<images.count {
            for ty in 0..<tiling.tilesHigh {
                for tx in 0..<tiling.tilesWide {
                    let tile = local * tiling.perImage + ty * tiling.tilesWide + tx
                    let at = m + tile * o
                    let top = yt + ((local * 2 * tiling.tilesHigh + 2 * ty) * ytWidth + 2 * tx) * o, bottom = top + ytWidth * o
                    for k in Swift.stride(from: 0, to: o, by: 8) {
                        // Aᵀ·M: rows s and t of four (column j from ξ = j, 4 + j, 8 + j, 12 + j)
                        let m = at + k
                        func row(_ xi: Int) -> SIMD8<T> { load8(m + xi * mStride) }
                        let m4 = row(4), m5 = row(5), m6 = row(6), m7 = row(7), m8 = row(8), m9 = row(9), m10 = row(10), m11 = row(11)
                        let s0 = row(0) + m4 + m8, t0 = m4 - m8 - row(12)
                        let s1 = row(1) + m5 + m9, t1 = m5 - m9 - row(13)
                        let s2 = row(2) + m6 + m10, t2 = m6 - m10 - row(14)
                        let s3 = row(3) + m7 + m11, t3 = m7 - m11 - row(15)
                        let b = load8(biases + k)
                        store8(s0 + s1 + s2 + b, top + k)
                        store8(s1 - s2 - s3 + b, top + o + k)
                        store8(t0 + t1 + t2 + b, bottom + k)
                        store8(t1 - t2 - t3 + b, bottom + o + k)
                    }
                }
            }
        }
        // yt → y [n, O, H, W], cropped
        for (local, image) in images.enumerated() {
            for out in 0..<o {
                let plane = y + (image * o + out) * g.h * g.w
                for row in 0..<g.h {
                    let src = yt + ((local * 2 * tiling.tilesHigh + row) * ytWidth) * o + out, dst = plane + row * g.w
                    for col in 0..<g.w { dst[col] = src[col * o] }
                }
            }
        }
    }
}

/// The weight gradient by the same transforms, transposed (Lavin & Gray's algorithm read
/// backwards): Y = Aᵀ [U ⊙ V] A gives ∂L/∂U = (A dY Aᵀ) ⊙ V per tile, and U = G g Gᵀ gives
///     dW = Gᵀ [ Σ_tiles (A dY Aᵀ)[ξ] · V[ξ] ] G,
/// so with Mdy[ξ] [tiles, O] = (A dY Aᵀ)[ξ] the sum is 16 GEMMs Ŵ[ξ] [O, C] += Mdy[ξ]ᵀ · V[ξ] —
/// no column matrix, and 2.25× fewer multiplications than dY · colsᵀ. V is the forward's, kept
/// for the batch ([16, N·tiles, C], `winogradImages`' `keptInput`). Accumulates Ŵ [16, O, C] for
/// the images `range`; `winogradKernelGradient` turns it into dW.
func winogradWeightGradient<T: Real>(_ keptInput: UnsafePointer<T>, _ grad: UnsafeMutablePointer<T>,
                                     _ transformed: UnsafeMutablePointer<T>, _ range: Range<Int>, _ g: ConvGeometry) {
    let tiling = WinogradTiling(g)
    let (c, o) = (g.c, g.o)
    let blockImages = Swift.min(tiling.imagesPerBlock(channels: Swift.max(c, o)), range.count)
    let tilesPerBlock = blockImages * tiling.perImage
    let (dyHeight, dyWidth) = (2 * tiling.tilesHigh, 2 * tiling.tilesWide)
    let vStride = g.n * tiling.perImage * c
    let dyt = UnsafeMutablePointer<T>.allocate(capacity: blockImages * dyHeight * dyWidth * o)
    let mdy = UnsafeMutablePointer<T>.allocate(capacity: 16 * tilesPerBlock * o)
    defer { dyt.deallocate(); mdy.deallocate() }
    // Rows and columns past an odd plane's edge stay zero: no output there, no gradient.
    dyt.initialize(repeating: 0, count: blockImages * dyHeight * dyWidth * o)
    for start in Swift.stride(from: range.lowerBound, to: range.upperBound, by: blockImages) {
        let images = start ..< Swift.min(start + blockImages, range.upperBound)
        let p = images.count * tiling.perImage
        let v = keptInput + start * tiling.perImage * c
        // dY [n, O, H, W] → dyt [n, 2·tilesHigh, 2·tilesWide, O]
        for (local, image) in images.enumerated() {
            for out in 0..<o {
                let plane = grad + (image * o + out) * g.h * g.w
                for row in 0..<g.h {
                    let dst = dyt + ((local * dyHeight + row) * dyWidth) * o + out, src = plane + row * g.w
                    for col in 0..<g.w { dst[col * o] = src[col] }
                }
            }
        }
        // Mdy[ξ, tile, ·] = (A dY Aᵀ)[ξ] over output-channel vectors, A = [1 0; 1 1; 1 −1; 0 −1]
        let mStride = p * o
        for local in 0..<images.count {
            for ty in 0..<tiling.tilesHigh {
                for tx in 0..<tiling.tilesWide {
                    let tile = local * tiling.perImage + ty * tiling.tilesWide + tx
                    let top = dyt + ((local * dyHeight + 2 * ty) * dyWidth + 2 * tx) * o, bottom = top + dyWidth * o
                    let at = mdy + tile * o
                    for k in Swift.stride(from: 0, to: o, by: 8) {
                        let a = load8(top + k), b = load8(top + o + k), e = load8(bottom + k), f = load8(bottom + o + k)
                        // A·dY: rows [a, b], [a + e, b + f], [a − e, b − f], [−e, −f]; each row
                        // [p, q] times Aᵀ is [p, p + q, p − q, −q].
                        func put(_ row: Int, _ p: SIMD8<T>, _ q: SIMD8<T>) {
                            let base = at + k + 4 * row * mStride
                            store8(p, base); store8(p + q, base + mStride)
                            store8(p - q, base + 2 * mStride); store8(-q, base + 3 * mStride)
                        }
                        put(0, a, b); put(1, a + e, b + f); put(2, a - e, b - f); put(3, -e, -f)
                    }
                }
            }
        }
        // Ŵ[ξ] [O, C] += Mdy[ξ]ᵀ [O, tiles] · V[ξ] [tiles, C]
        for xi in 0..<16 {
            T.blasGemm(transA: true, transB: false, m: o, n: c, k: p, alpha: 1, a: mdy + xi * p * o, lda: o,
                       b: v + xi * vStride, ldb: c, beta: 1, c: transformed + xi * o * c, ldc: c)
        }
    }
}

/// dW [O, C, 3, 3] += Gᵀ Ŵ G for Ŵ [16, O, C] from `winogradWeightGradient`,
/// Gᵀ = [1 ½ ½ 0; 0 ½ −½ 0; 0 ½ ½ 1].
func winogradKernelGradient<T: Real>(_ transformed: UnsafeMutablePointer<T>, _ dWeight: UnsafeMutablePointer<T>,
                                     outputs o: Int, inputs c: Int) {
    let half = T(0.5), stride = o * c
    let t = UnsafeMutablePointer<T>.allocate(capacity: 12)
    defer { t.deallocate() }
    for pair in 0..<(o * c) {
        let w = transformed + pair
        // Gᵀ·Ŵ: three rows of four
        for j in 0..<4 {
            let (d0, d1, d2, d3) = (w[j * stride], w[(4 + j) * stride], w[(8 + j) * stride], w[(12 + j) * stride])
            t[j] = d0 + half * (d1 + d2)
            t[4 + j] = half * (d1 - d2)
            t[8 + j] = half * (d1 + d2) + d3
        }
        // (Gᵀ·Ŵ)·G, row by row
        let out = dWeight + pair * 9
        for i in 0..<3 {
            let (t0, t1, t2, t3) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3])
            out[3 * i] += t0 + half * (t1 + t2)
            out[3 * i + 1] += half * (t1 - t2)
            out[3 * i + 2] += half * (t1 + t2) + t3
        }
    }
}
