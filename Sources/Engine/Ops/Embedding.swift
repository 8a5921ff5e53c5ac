/// Embedding lookup and dropout.

/// Rows of `table` [V, D] for token ids of any shape: result [ids shape..., D]. Backward adds into
/// the rows used (repeated ids accumulate).
public func embedding(_ table: Tensor, ids: [Int], shape idsShape: [Int]) throws -> Tensor {
    try checkShape(table.rank == 2 && ids.count == idsShape.reduce(1, *), "embedding",
                   "table \(describe(table.shape)), \(ids.count) ids for shape \(describe(idsShape))")
    try checkArgument(ids.allSatisfy { $0 >= 0 && $0 < table.shape[0] }, "embedding",
                      "token id out of range 0..<\(table.shape[0])")
    return try table.indexSelect(axis: 0, ids).reshaped(idsShape + [table.shape[1]])
}

/// Inverted dropout: zeroes each element with probability `p` and scales the rest by 1/(1 − p).
/// The identity when not `training` or when p = 0.
public func dropout(_ x: Tensor, p: Double, training: Bool, using rng: inout RandomGenerator) throws -> Tensor {
    try checkArgument(p >= 0 && p < 1, "dropout", "probability \(p) outside [0, 1)")
    guard training && p > 0 else { return x }
    let mask = Tensor(zeros: x.shape, dtype: x.dtype)
    let keep = 1 / (1 - p)
    switch x.dtype {
    case .float32:
        let m = mask.storage.pointer(Float.self)
        for i in 0..<mask.count where rng.uniform() >= p { m[i] = Float(keep) }
    case .float64:
        let m = mask.storage.pointer(Double.self)
        for i in 0..<mask.count where rng.uniform() >= p { m[i] = keep }
    }
    return try x * mask
}
