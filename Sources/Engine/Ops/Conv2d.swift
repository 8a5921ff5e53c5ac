/// 2-D convolution (groups = 1) as im2col + GEMM — or, for 3×3 stride-1 convolutions with channels
/// in eights at a size where it pays, Winograd's F(2×2, 3×3) forward, dx and dW (Winograd.swift).
///
/// Shapes: x [N, C, H, W], weight [O, C, kh, kw], bias [O], y [N, O, Ho, Wo],
/// Ho = (H + 2p − kh)/s + 1. The column matrix is cols [C·kh·kw, N·Ho·Wo], so
///     Y [O, N·Ho·Wo] = W [O, C·kh·kw] · cols        (then laid out as NCHW, plus bias)
///     dW = dY · colsᵀ,   dcols = Wᵀ · dY,   dx = col2im(dcols),   dbias = Σ dY
/// Backward caches `cols` (the only thing dW needs besides dY). With stride 1, dx is instead the
/// convolution of dY with the flipped, transposed kernel W̃[c, o, i, j] = W[o, c, kh−1−i, kw−1−j]
/// and padding kh−1−p (the adjoint of a stride-1 convolution is a convolution): the forward's
/// im2col + GEMM with k = O·kh·kw, where Wᵀ·dY has k = O only — and no scatter-add.
///
/// Work is split by images: each thread takes a contiguous range of the batch and, block by
/// block (a few images whose columns fit in L2), pads, builds columns, runs single-threaded
/// GEMM and writes its outputs — no hand-off between phases, and the block stays in cache.

/// Geometry of one convolution call.
struct ConvGeometry {
    let n, c, h, w, o, kh, kw, stride, padding, ho, wo: Int
    var columnRows: Int { c * kh * kw }
    var columnCount: Int { n * ho * wo }
    var plane: Int { ho * wo }
    var paddedHeight: Int { h + 2 * padding }
    var paddedWidth: Int { w + 2 * padding }
    /// Images per cache block: about 2 MiB of Float32 columns (1–4 MiB measured alike here).
    var imagesPerBlock: Int { Swift.max(1, (1 << 19) / Swift.max(columnRows * plane, 1)) }

    /// dx of a stride-1 convolution as a convolution of dY (see the notation above), or nil when
    /// the stride is not 1 or the kernel is narrower than twice the padding plus one.
    var adjoint: ConvGeometry? {
        guard stride == 1, kh - 1 - padding >= 0, kh == kw else { return nil }
        return ConvGeometry(n: n, c: o, h: ho, w: wo, o: c, kh: kh, kw: kw, stride: 1, padding: kh - 1 - padding, ho: h, wo: w)
    }

    /// Contiguous sub-ranges of `images` of at most `imagesPerBlock` images.
    func blocks(_ images: Range<Int>) -> [Range<Int>] {
        Swift.stride(from: images.lowerBound, to: images.upperBound, by: imagesPerBlock).map {
            $0 ..< Swift.min($0 + imagesPerBlock, images.upperBound)
        }
    }
}

/// Copies images `block` of x [N, C, H, W] into a zero-bordered xp [count, C, H + 2p, W + 2p], so
/// that im2col runs without bounds checks in its inner loops.
private func padImages<T: Real>(_ x: UnsafeMutablePointer<T>, _ xp: UnsafeMutablePointer<T>, _ block: Range<Int>,
                                _ g: ConvGeometry) {
    let (hp, wp) = (g.paddedHeight, g.paddedWidth)
    for plane in 0..<(block.count * g.c) {
        let dst = xp + plane * hp * wp, src = x + (block.lowerBound * g.c + plane) * g.h * g.w
        for i in 0..<(hp * wp) { dst[i] = 0 }
        for y in 0..<g.h {
            let row = dst + (y + g.padding) * wp + g.padding, from = src + y * g.w
            for i in 0..<g.w { row[i] = from[i] }
        }
    }
}

/// cols[(c, ki, kj), (n, oy, ox)] = xp[n, c, oy·s + ki, ox·s + kj] for the `count` images of a
/// block, read from `source` laid out [count, C, Hs, Ws] (the padded copy, or x itself when
/// p = 0), written at `cols` with rows `rowStride` apart.
private func im2col<T: Real>(_ source: UnsafeMutablePointer<T>, sourceHeight hs: Int, sourceWidth ws: Int,
                             _ cols: UnsafeMutablePointer<T>, rowStride: Int, count: Int, _ g: ConvGeometry) {
    for row in 0..<g.columnRows {
        let c = row / (g.kh * g.kw), ki = (row / g.kw) % g.kh, kj = row % g.kw
        for i in 0..<count {
            let image = source + (i * g.c + c) * hs * ws + ki * ws + kj
            let dst = cols + row * rowStride + i * g.plane
            for oy in 0..<g.ho {
                let src = image + oy * g.stride * ws, line = dst + oy * g.wo
                if g.stride == 1 {
                    for ox in 0..<g.wo { line[ox] = src[ox] }
                } else {
                    for ox in 0..<g.wo { line[ox] = src[ox &* g.stride] }
                }
            }
        }
    }
}

/// dx[n, c, iy, ix] = Σ dcols[(c, ki, kj), (n, oy, ox)] over the taps that read (iy, ix): the
/// adjoint of im2col, for the images of `block`, with dcols [C·kh·kw, count·Ho·Wo]. Accumulates
/// in a padded plane (`scratch`, Hp·Wp) and crops.
private func col2im<T: Real>(_ dcols: UnsafeMutablePointer<T>, _ dx: UnsafeMutablePointer<T>, _ block: Range<Int>,
                             _ scratch: UnsafeMutablePointer<T>, _ g: ConvGeometry) {
    let (hp, wp) = (g.paddedHeight, g.paddedWidth), width = block.count * g.plane
    for i in 0..<block.count {
        for c in 0..<g.c {
            for k in 0..<(hp * wp) { scratch[k] = 0 }
            for ki in 0..<g.kh {
                for kj in 0..<g.kw {
                    let src = dcols + ((c * g.kh + ki) * g.kw + kj) * width + i * g.plane
                    let image = scratch + ki * wp + kj
                    for oy in 0..<g.ho {
                        let dst = image + oy * g.stride * wp, line = src + oy * g.wo
                        if g.stride == 1 {
                            for ox in 0..<g.wo { dst[ox] += line[ox] }
                        } else {
                            for ox in 0..<g.wo { dst[ox &* g.stride] += line[ox] }
                        }
                    }
                }
            }
            let image = dx + ((block.lowerBound + i) * g.c + c) * g.h * g.w
            let cropped = scratch + g.padding * wp + g.padding
            for y in 0..<g.h { for x in 0..<g.w { image[y * g.w + x] = cropped[y * wp + x] } }
        }
    }
}

/// Forward for the images `range`: pad, im2col, GEMM, lay out as NCHW + bias. With `cols` the
/// columns go into the shared matrix that backward needs; without (no-grad), into a block-local
/// buffer that stays in cache.
private func convolveImages<T: Real>(_ x: UnsafeMutablePointer<T>, _ weight: UnsafeMutablePointer<T>,
                                     _ bias: UnsafeMutablePointer<T>?, _ cols: UnsafeMutablePointer<T>?,
                                     _ y: UnsafeMutablePointer<T>, _ range: Range<Int>, _ g: ConvGeometry) {
    let blockImages = Swift.min(g.imagesPerBlock, range.count)
    let padded = g.padding > 0 ? UnsafeMutablePointer<T>.allocate(capacity: blockImages * g.c * g.paddedHeight * g.paddedWidth) : nil
    let product = UnsafeMutablePointer<T>.allocate(capacity: g.o * blockImages * g.plane)
    let localColumns = cols == nil ? UnsafeMutablePointer<T>.allocate(capacity: g.columnRows * blockImages * g.plane) : nil
    defer { padded?.deallocate(); product.deallocate(); localColumns?.deallocate() }
    for block in g.blocks(range) {
        let width = block.count * g.plane
        let (columns, rowStride) = cols.map { ($0 + block.lowerBound * g.plane, g.columnCount) } ?? (localColumns!, width)
        if let padded {
            padImages(x, padded, block, g)
            im2col(padded, sourceHeight: g.paddedHeight, sourceWidth: g.paddedWidth, columns, rowStride: rowStride,
                   count: block.count, g)
        } else {
            im2col(x + block.lowerBound * g.c * g.h * g.w, sourceHeight: g.h, sourceWidth: g.w, columns,
                   rowStride: rowStride, count: block.count, g)
        }
        T.blasGemm(transA: false, transB: false, m: g.o, n: width, k: g.columnRows, alpha: 1, a: weight, lda: g.columnRows,
                   b: columns, ldb: rowStride, beta: 0, c: product, ldc: width)
        // y[n, o, p] = product[o, (n − n0)·P + p] + bias[o]
        for ch in 0..<g.o {
            let b = bias?[ch] ?? 0
            for i in 0..<block.count {
                let src = product + ch * width + i * g.plane, dst = y + ((block.lowerBound + i) * g.o + ch) * g.plane
                for p in 0..<g.plane { dst[p] = src[p] + b }
            }
        }
    }
}

/// W̃[c, o, i, j] = W[o, c, kh−1−i, kw−1−j]: the kernel of the adjoint convolution.
private func flippedTransposedKernel<T: Real>(_ weight: UnsafeMutablePointer<T>, _ g: ConvGeometry) -> UnsafeMutablePointer<T> {
    let taps = g.kh * g.kw
    let flipped = UnsafeMutablePointer<T>.allocate(capacity: g.o * g.c * taps)
    for o in 0..<g.o {
        for c in 0..<g.c {
            let src = weight + (o * g.c + c) * taps, dst = flipped + (c * g.o + o) * taps
            for t in 0..<taps { dst[t] = src[taps - 1 - t] }
        }
    }
    return flipped
}

/// dx of a stride-1 convolution as the convolution of dY with the flipped, transposed kernel:
/// by Winograd from the forward's transformed kernels (not owned), or by im2col with the flipped
/// kernel (owned), each with the adjoint's geometry.
private enum ConvolutionAdjoint<T: Real> {
    case winograd(UnsafePointer<T>, ConvGeometry)
    case im2col(UnsafeMutablePointer<T>, ConvGeometry)

    func deallocate() {
        if case let .im2col(kernel, _) = self { kernel.deallocate() }
    }
}

/// Backward for the images `range`: dY in GEMM layout per block, dW and dbias accumulated into
/// this thread's partial sums; dx through dcols and col2im, or — given `adjoint`, the flipped
/// kernel and its geometry — as the forward convolution of dY.
private func convolveImagesBackward<T: Real>(_ grad: UnsafeMutablePointer<T>, _ weight: UnsafeMutablePointer<T>,
                                             _ cols: UnsafeMutablePointer<T>?, _ dx: UnsafeMutablePointer<T>?,
                                             _ dWeight: UnsafeMutablePointer<T>?, _ dBias: UnsafeMutablePointer<T>?,
                                             adjoint: ConvolutionAdjoint<T>?, _ range: Range<Int>, _ g: ConvGeometry) {
    switch (dx, adjoint) {
    case let (dx?, .winograd(u, geometry)?): winogradImages(grad, u, .adjoint, nil, dx, range, geometry)
    case let (dx?, .im2col(kernel, geometry)?): convolveImages(grad, kernel, nil, nil, dx, range, geometry)
    default: break
    }
    let scattersColumns = dx != nil && adjoint == nil
    guard dWeight != nil || dBias != nil || scattersColumns else { return }
    let blockImages = Swift.min(g.imagesPerBlock, range.count)
    let dY = UnsafeMutablePointer<T>.allocate(capacity: g.o * blockImages * g.plane)
    let dCols = scattersColumns ? UnsafeMutablePointer<T>.allocate(capacity: g.columnRows * blockImages * g.plane) : nil
    let scratch = UnsafeMutablePointer<T>.allocate(capacity: g.paddedHeight * g.paddedWidth)
    defer { dY.deallocate(); dCols?.deallocate(); scratch.deallocate() }
    for block in g.blocks(range) {
        let width = block.count * g.plane, offset = block.lowerBound * g.plane
        // dY[o, (n − n0)·P + p] = grad[n, o, p] (when a GEMM reads it); dbias[o] += Σ grad[n, o, ·]
        let gemmReadsDY = (dWeight != nil && cols != nil) || dCols != nil
        for ch in 0..<g.o {
            var total: T = 0
            for i in 0..<block.count {
                let src = grad + ((block.lowerBound + i) * g.o + ch) * g.plane, dst = dY + ch * width + i * g.plane
                if gemmReadsDY {
                    for p in 0..<g.plane { dst[p] = src[p]; total += src[p] }
                } else {
                    for p in 0..<g.plane { total += src[p] }
                }
            }
            dBias?[ch] += total
        }
        if let dWeight, let cols {
            T.blasGemm(transA: false, transB: true, m: g.o, n: g.columnRows, k: width, alpha: 1, a: dY, lda: width,
                       b: cols + offset, ldb: g.columnCount, beta: 1, c: dWeight, ldc: g.columnRows)
        }
        if let dx, let dCols {
            T.blasGemm(transA: true, transB: false, m: g.columnRows, n: width, k: g.o, alpha: 1, a: weight, lda: g.columnRows,
                       b: dY, ldb: width, beta: 0, c: dCols, ldc: width)
            col2im(dCols, dx, block, scratch, g)
        }
    }
}

/// Switches of the convolution's algorithms (for tests and benchmarks that compare them).
enum Conv2dSettings {
    /// 3×3 stride-1 convolutions run Winograd F(2×2, 3×3) where it pays (`prefersWinograd`); off:
    /// im2col everywhere.
    nonisolated(unsafe) static var winograd = true
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
    try checkShape(h + 2 * padding >= kh && w + 2 * padding >= kw, "conv2d",
                   "kernel \(kh)×\(kw) larger than padded input \(describe(x.shape))")
    let ho = (h + 2 * padding - kh) / stride + 1, wo = (w + 2 * padding - kw) / stride + 1
    let g = ConvGeometry(n: n, c: c, h: h, w: w, o: o, kh: kh, kw: kw, stride: stride, padding: padding, ho: ho, wo: wo)
    let dtype = x.dtype
    // 3×3 stride-1 convolutions take Winograd's F(2×2, 3×3) forward, for dx (the adjoint is one
    // too) and for dW — none of which needs a column matrix.
    let winograd = Conv2dSettings.winograd && g.prefersWinograd
    // The full column matrix is kept only when backward will need it: for dW when it is not
    // Winograd's, or for dx when it is not computed as the adjoint convolution.
    let keepsColumns = (Tensor.recording(weight) && !winograd) || (Tensor.recording(x) && g.adjoint == nil)
    let cols = keepsColumns ? Storage(dtype: dtype, count: g.columnRows * g.columnCount, zeroed: false) : nil
    let y = Tensor(shape: [n, o, ho, wo], storage: Storage(dtype: dtype, count: n * o * ho * wo, zeroed: false))
    let ranges = parallelRanges(n, costPerItem: o * g.columnRows * g.plane)
    // Winograd's transformed kernels serve the forward and, read as the adjoint's, dx; a kernel
    // that trains keeps the transformed input for dW (4·|x| values, where columns took 9·|x|).
    let kernels = winograd ? FixedKernels.winograd(weight) : nil
    let keptInput = winograd && Tensor.recording(weight) ? Storage(dtype: dtype, count: g.winogradInputCount, zeroed: false) : nil
    func forward<T: Real>(_: T.Type) {
        if let kernels {
            parallelRun(ranges) { _, images in
                winogradImages(x.storage.pointer(T.self), kernels.pointer(T.self), .convolution, bias?.storage.pointer(T.self),
                               y.storage.pointer(T.self), images, g, keptInput: keptInput?.pointer(T.self))
            }
            return
        }
        parallelRun(ranges) { _, images in
            convolveImages(x.storage.pointer(T.self), weight.storage.pointer(T.self), bias?.storage.pointer(T.self),
                           cols?.pointer(T.self), y.storage.pointer(T.self), images, g)
        }
    }
    switch dtype {
    case .float32: forward(Float.self)
    case .float64: forward(Double.self)
    }
    let gemmFlops = 2 * Double(o) * Double(g.columnRows) * Double(g.columnCount)
    FlopCounter.add(gemmFlops)
    let inputs = [x, weight] + (bias.map { [$0] } ?? [])
    return Tensor.record(y, "conv2d", inputs, { grad in
        let gx = x.requiresGrad ? Tensor(shape: x.shape, storage: Storage(dtype: dtype, count: x.count, zeroed: false)) : nil
        // One partial dW and dbias per thread, summed in a fixed order afterwards.
        let partialWeights = weight.requiresGrad ? ranges.map { _ in Tensor(zeros: weight.shape, dtype: dtype) } : []
        let partialBiases = bias == nil ? [] : ranges.map { _ in Tensor(zeros: [o], dtype: dtype) }
        func backward<T: Real>(_: T.Type) {
            let adjointGeometry = gx == nil ? nil : g.adjoint
            // The adjoint of a 3×3, stride-1, padding-1 convolution is one too: Winograd's, from the
            // forward's transformed kernels; otherwise im2col with the flipped, transposed kernel.
            let adjoint: ConvolutionAdjoint<T>? = adjointGeometry.map { a in
                kernels.map { .winograd(UnsafePointer($0.pointer(T.self)), a) }
                    ?? .im2col(flippedTransposedKernel(weight.storage.pointer(T.self), g), a)
            }
            defer { adjoint?.deallocate() }
            parallelRun(ranges) { index, images in
                convolveImagesBackward(grad.storage.pointer(T.self), weight.storage.pointer(T.self), cols?.pointer(T.self),
                                       gx?.storage.pointer(T.self),
                                       partialWeights.isEmpty ? nil : partialWeights[index].storage.pointer(T.self),
                                       partialBiases.isEmpty ? nil : partialBiases[index].storage.pointer(T.self),
                                       adjoint: adjoint, images, g)
                guard let keptInput, !partialWeights.isEmpty else { return }
                let transformedGradient = UnsafeMutablePointer<T>.allocate(capacity: 16 * o * c)
                defer { transformedGradient.deallocate() }
                transformedGradient.initialize(repeating: 0, count: 16 * o * c)
                winogradWeightGradient(keptInput.pointer(T.self), grad.storage.pointer(T.self), transformedGradient, images, g)
                winogradKernelGradient(transformedGradient, partialWeights[index].storage.pointer(T.self), outputs: o, inputs: c)
            }
        }
        switch dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        FlopCounter.add(gemmFlops * Double((gx == nil ? 0 : 1) + (partialWeights.isEmpty ? 0 : 1)))
        func total(_ partials: [Tensor]) throws -> Tensor? {
            guard var sum = partials.first else { return nil }
            for partial in partials.dropFirst() { sum = try sum + partial }
            return sum
        }
        let gw = try total(partialWeights), gb = try total(partialBiases)
        return [gx, gw] + (bias == nil ? [] : [gb])
    })
}
