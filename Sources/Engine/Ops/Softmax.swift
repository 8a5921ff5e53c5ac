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

// x, y: [outer, n, inner]; rows along the axis are contiguous when inner = 1 (the common case).
private func softmaxForward<T: Real>(_: T.Type, _ x: Storage, _ y: Storage, _ outer: Int, _ n: Int, _ inner: Int,
                                     _ takeLog: Bool) {
    let px = x.pointer(T.self), py = y.pointer(T.self)
    parallelFor(outer * inner, costPerItem: n * 4) { range in
        let column = inner == 1 ? nil : UnsafeMutablePointer<T>.allocate(capacity: n)
        defer { column?.deallocate() }
        for line in range {
            let o = line / inner, i = line % inner, base = o * n * inner + i
            // Gather a strided line into a contiguous buffer when the axis is not last.
            let row: UnsafeMutablePointer<T>
            if let column {
                for k in 0..<n { column[k] = px[base + k * inner] }
                row = column
            } else {
                row = py + base
                row.update(from: px + base, count: n)
            }
            if takeLog {
                let peak = rowMax(row, n)
                var total: T = 0
                let shifted = UnsafeMutablePointer<T>.allocate(capacity: n)
                for k in 0..<n { shifted[k] = T.fastExp(row[k] - peak) }
                total = rowSum(shifted, n)
                shifted.deallocate()
                let logTotal = T.log(total) + peak
                for k in 0..<n { row[k] -= logTotal }
            } else {
                softmaxRow(row, n)
            }
            if column != nil { for k in 0..<n { py[base + k * inner] = row[k] } }
        }
    }
}

// y (the forward output), g, gx: [outer, n, inner]
private func softmaxBackward<T: Real>(_: T.Type, _ y: Storage, _ g: Storage, _ gx: Storage, _ outer: Int, _ n: Int,
                                      _ inner: Int, _ takeLog: Bool) {
    let py = y.pointer(T.self), pg = g.pointer(T.self), po = gx.pointer(T.self)
    parallelFor(outer * inner, costPerItem: n * 4) { range in
        for line in range {
            let o = line / inner, i = line % inner, base = o * n * inner + i
            if inner == 1 {
                let (yr, gr, out) = (py + base, pg + base, po + base)
                if takeLog {
                    let total = rowSum(gr, n)
                    for k in 0..<n { out[k] = gr[k] - T.fastExp(yr[k]) * total }
                } else {
                    let dot = rowDot(gr, yr, n)
                    for k in 0..<n { out[k] = yr[k] * (gr[k] - dot) }
                }
            } else if takeLog {
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
