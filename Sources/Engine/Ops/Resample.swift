/// Nearest-neighbour upsampling and average pooling of NCHW images by an integer factor.

/// x [N, C, H, W] → [N, C, H·s, W·s], each pixel repeated s×s; backward sums each s×s block.
public func upsampleNearest(_ x: Tensor, scale s: Int = 2) throws -> Tensor {
    try checkShape(x.rank == 4, "upsampleNearest", "input \(describe(x.shape)) needs [N, C, H, W]")
    try checkArgument(s >= 1, "upsampleNearest", "scale \(s)")
    let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    let out = Tensor(shape: [x.shape[0], x.shape[1], h * s, w * s],
                     storage: Storage(dtype: x.dtype, count: x.count * s * s, zeroed: false))
    func forward<T: Real>(_: T.Type) {
        let px = x.storage.pointer(T.self), po = out.storage.pointer(T.self)
        parallelFor(planes, costPerItem: h * w * s * s) { range in
            for p in range { for y in 0..<(h * s) {
                let src = px + (p * h + y / s) * w, dst = po + (p * h * s + y) * w * s
                for xo in 0..<(w * s) { dst[xo] = src[xo / s] }
            } }
        }
    }
    switch x.dtype {
    case .float32: forward(Float.self)
    case .float64: forward(Double.self)
    }
    return Tensor.record(out, "upsampleNearest", [x], { g in
        let gx = Tensor(zeros: x.shape, dtype: x.dtype)
        func backward<T: Real>(_: T.Type) {
            let pg = g.storage.pointer(T.self), po = gx.storage.pointer(T.self)
            parallelFor(planes, costPerItem: h * w * s * s) { range in
                for p in range { for y in 0..<(h * s) {
                    let src = pg + (p * h * s + y) * w * s, dst = po + (p * h + y / s) * w
                    for xo in 0..<(w * s) { dst[xo / s] += src[xo] }
                } }
            }
        }
        switch x.dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        return [gx]
    })
}

/// Average pooling with a k×k window and stride k: x [N, C, H, W] → [N, C, H/k, W/k].
public func avgPool2d(_ x: Tensor, kernel k: Int = 2) throws -> Tensor {
    try checkShape(x.rank == 4 && k >= 1 && x.shape[2] % k == 0 && x.shape[3] % k == 0, "avgPool2d",
                   "input \(describe(x.shape)) with kernel \(k)")
    let (planes, h, w) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
    let (ho, wo) = (h / k, w / k)
    let out = Tensor(zeros: [x.shape[0], x.shape[1], ho, wo], dtype: x.dtype)
    let scale = 1 / Double(k * k)
    func forward<T: Real>(_: T.Type) {
        let px = x.storage.pointer(T.self), po = out.storage.pointer(T.self)
        parallelFor(planes, costPerItem: h * w) { range in
            for p in range { for y in 0..<h {
                let src = px + (p * h + y) * w, dst = po + (p * ho + y / k) * wo
                for xi in 0..<w { dst[xi / k] += src[xi] * T(scale) }
            } }
        }
    }
    switch x.dtype {
    case .float32: forward(Float.self)
    case .float64: forward(Double.self)
    }
    return Tensor.record(out, "avgPool2d", [x], { g in
        let gx = Tensor(shape: x.shape, storage: Storage(dtype: x.dtype, count: x.count, zeroed: false))
        func backward<T: Real>(_: T.Type) {
            let pg = g.storage.pointer(T.self), po = gx.storage.pointer(T.self)
            parallelFor(planes, costPerItem: h * w) { range in
                for p in range { for y in 0..<h {
                    let src = pg + (p * ho + y / k) * wo, dst = po + (p * h + y) * w
                    for xi in 0..<w { dst[xi] = src[xi / k] * T(scale) }
                } }
            }
        }
        switch x.dtype {
        case .float32: backward(Float.self)
        case .float64: backward(Double.self)
        }
        return [gx]
    })
}
