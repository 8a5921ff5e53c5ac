/// Softmax and log-softmax along one axis.
///
///     softmax:     y = exp(x − max) / Σ exp(x − max);   dx = y ⊙ (g − Σ g⊙y)
///     logSoftmax:  y = x − max − log Σ exp(x − max);    dx = g − softmax(x) · Σ g

extension Tensor {
    /// Softmax along `axis`.
    public func softmax(axis: Int = -1) throws -> Tensor { try softmaxOp(axis: axis, log: false) }

    /// Log-softmax along `axis`.
    public func logSoftmax(axis: Int = -1) throws -> Tensor { try softmaxOp(axis: axis, log: true) }

    private func softmaxOp(axis: Int, log takeLog: Bool) throws -> Tensor {
        let axis = try normalizeAxes([axis], rank: rank, op: "softmax")[0]
        let (outer, n, inner) = splitAround(shape, axis: axis)
        let out = Tensor(shape: shape, storage: Storage(dtype: dtype, count: count, zeroed: false))
        switch dtype {
        case .float32: softmaxForward(Float.self, storage, out.storage, outer, n, inner, takeLog)
        case .float64: softmaxForward(Double.self, storage, out.storage, outer, n, inner, takeLog)
        }
        return Tensor.record(out, takeLog ? "logSoftmax" : "softmax", [self], { g in
            let gx = Tensor(shape: out.shape, storage: Storage(dtype: out.dtype, count: out.count, zeroed: false))
            switch g.dtype {
            case .float32: softmaxBackward(Float.self, out.storage, g.storage, gx.storage, outer, n, inner, takeLog)
            case .float64: softmaxBackward(Double.self, out.storage, g.storage, gx.storage, outer, n, inner, takeLog)
            }
            return [gx]
        })
    }
}

// x, y: [outer, n, inner]
private func softmaxForward<T: Real>(_: T.Type, _ x: Storage, _ y: Storage, _ outer: Int, _ n: Int, _ inner: Int,
                                     _ takeLog: Bool) {
    let px = x.pointer(T.self), py = y.pointer(T.self)
    parallelFor(outer * inner, costPerItem: n * 4) { range in
        for row in range {
            let o = row / inner, i = row % inner
            let base = o * n * inner + i
            var peak = -T.infinity
            for k in 0..<n { peak = Swift.max(peak, px[base + k * inner]) }
            var total: T = 0
            for k in 0..<n {
                let e = T.fastExp(px[base + k * inner] - peak)
                py[base + k * inner] = e
                total += e
            }
            if takeLog {
                let logTotal = T.log(total) + peak
                for k in 0..<n { py[base + k * inner] = px[base + k * inner] - logTotal }
            } else {
                let scale = 1 / total
                for k in 0..<n { py[base + k * inner] *= scale }
            }
        }
    }
}

// y (the forward output), g, gx: [outer, n, inner]
private func softmaxBackward<T: Real>(_: T.Type, _ y: Storage, _ g: Storage, _ gx: Storage, _ outer: Int, _ n: Int,
                                      _ inner: Int, _ takeLog: Bool) {
    let py = y.pointer(T.self), pg = g.pointer(T.self), po = gx.pointer(T.self)
    parallelFor(outer * inner, costPerItem: n * 4) { range in
        for row in range {
            let o = row / inner, i = row % inner
            let base = o * n * inner + i
            if takeLog {
                var total: T = 0
                for k in 0..<n { total += pg[base + k * inner] }
                for k in 0..<n { po[base + k * inner] = pg[base + k * inner] - T.fastExp(py[base + k * inner]) * total }
            } else {
                var dot: T = 0
                for k in 0..<n { dot += pg[base + k * inner] * py[base + k * inner] }
                for k in 0..<n { po[base + k * inner] = py[base + k * inner] * (pg[base + k * inner] - dot) }
            }
        }
    }
}
