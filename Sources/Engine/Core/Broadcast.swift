/// Shape arithmetic shared by the elementwise ops and reductions: NumPy broadcasting, strides,
/// and an iterator over rows of up to three strided operands.

/// Row-major strides of a contiguous tensor.
func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { strides[i] = s; s *= shape[i] }
    return strides
}

/// The broadcast shape of two shapes (NumPy rules: align right, a size-1 dimension stretches).
func broadcastShape(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
    let rank = max(a.count, b.count)
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        try checkShape(da == db || da == 1 || db == 1, op, "\(describe(a)) and \(describe(b)) do not broadcast")
        out[i] = da == 1 ? db : da
    }
    return out
}

/// Strides that read a contiguous tensor of `shape` as if it had the broadcast shape `target`:
/// zero along dimensions it is stretched over.
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let own = contiguousStrides(shape)
    let offset = target.count - shape.count
    return (0..<target.count).map { i in
        i < offset || shape[i - offset] == 1 ? 0 : own[i - offset]
    }
}

/// Merges adjacent dimensions that every operand walks contiguously, so that a broadcast over
/// [N, C, H, W] with a [1, C, 1, 1] operand becomes a loop over [N, C, H·W].
func coalesce(_ shape: [Int], _ strides: [[Int]]) -> ([Int], [[Int]]) {
    var outShape: [Int] = []
    var outStrides = [[Int]](repeating: [], count: strides.count)
    for d in 0..<shape.count where shape[d] != 1 {
        if let last = outShape.indices.last,
           strides.indices.allSatisfy({ strides[$0][d] * shape[d] == outStrides[$0][last] }) {
            outShape[last] *= shape[d]
            for k in strides.indices { outStrides[k][last] = strides[k][d] }
        } else {
            outShape.append(shape[d])
            for k in strides.indices { outStrides[k].append(strides[k][d]) }
        }
    }
    if outShape.isEmpty { return ([1], strides.map { _ in [1] }) }
    return (outShape, outStrides)
}

/// Walks every row (the last dimension) of a shape read through several strided operands,
/// calling `body(offsets, length, innerStrides)` with each operand's offset at the row start.
@inline(__always)
func forEachRow(_ shape: [Int], _ strides: [[Int]],
                _ body: (UnsafePointer<Int>, Int, UnsafePointer<Int>) -> Void) {
    let (shape, strides) = coalesce(shape, strides)
    let rank = shape.count, operands = strides.count
    let length = shape[rank - 1]
    let inner = strides.map { $0[rank - 1] }
    var offsets = [Int](repeating: 0, count: operands)
    var counter = [Int](repeating: 0, count: rank)
    let rows = shape.dropLast().reduce(1, *)
    inner.withUnsafeBufferPointer { inner in
        offsets.withUnsafeMutableBufferPointer { offsets in
            for _ in 0..<rows {
                body(UnsafePointer(offsets.baseAddress!), length, inner.baseAddress!)
                // Advance the row counter like an odometer over the outer dimensions.
                var d = rank - 2
                while d >= 0 {
                    counter[d] += 1
                    for k in 0..<operands { offsets[k] += strides[k][d] }
                    if counter[d] < shape[d] { break }
                    for k in 0..<operands { offsets[k] -= strides[k][d] * shape[d] }
                    counter[d] = 0
                    d -= 1
                }
            }
        }
    }
}
