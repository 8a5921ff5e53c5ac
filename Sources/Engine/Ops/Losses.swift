/// Losses: mean squared error, cross-entropy with an ignore index, binary cross-entropy with logits.

/// How a per-element loss is reduced.
public enum Reduction: String, Sendable, Codable {
    /// Keep one loss per element (per sample, for per-sample gradients).
    case none
    case sum
    case mean
}

private func reduce(_ loss: Tensor, _ reduction: Reduction) throws -> Tensor {
    switch reduction {
    case .none: return loss
    case .sum: return try loss.sum()
    case .mean: return try loss.mean()
    }
}

/// (prediction − target)², reduced.
public func mseLoss(_ prediction: Tensor, _ target: Tensor, reduction: Reduction = .mean) throws -> Tensor {
    try checkShape(prediction.shape == target.shape, "mseLoss",
                   "prediction \(describe(prediction.shape)) and target \(describe(target.shape))")
    return try reduce(square(prediction - target), reduction)
}

/// −log softmax(logits)[target] for logits [N, C] and N class indices. Rows whose target is
/// `ignoreIndex` contribute nothing; the mean is over the rest (0 when none is left).
/// With `.none` the result is [N] with zeros at ignored rows.
public func crossEntropy(logits: Tensor, targets: [Int], ignoreIndex: Int? = nil,
                         reduction: Reduction = .mean) throws -> Tensor {
    try checkShape(logits.rank == 2 && logits.shape[0] == targets.count, "crossEntropy",
                   "logits \(describe(logits.shape)) for \(targets.count) targets")
    let classes = logits.shape[1]
    let kept = targets.map { $0 != ignoreIndex }
    try checkArgument(zip(targets, kept).allSatisfy { !$1 || ($0 >= 0 && $0 < classes) }, "crossEntropy",
                      "target out of range 0..<\(classes)")
    let picked = try logits.logSoftmax(axis: 1)
        .gather(axis: 1, index: zip(targets, kept).map { $1 ? $0 : 0 }, indexShape: [targets.count, 1])
        .reshaped([targets.count])
    let weights = try Tensor(kept.map { $0 ? -1.0 : 0.0 }, shape: [targets.count], dtype: logits.dtype)
    let losses = try picked * weights
    switch reduction {
    case .none, .sum: return try reduce(losses, reduction)
    case .mean: return try losses.sum() * (1 / Double(Swift.max(kept.filter { $0 }.count, 1)))
    }
}

/// Binary cross-entropy of logits x against targets t ∈ [0, 1]: softplus(x) − t·x, which is
/// −[t·log σ(x) + (1 − t)·log(1 − σ(x))] without overflow.
public func binaryCrossEntropyWithLogits(_ logits: Tensor, _ targets: Tensor, reduction: Reduction = .mean) throws -> Tensor {
    try checkShape(logits.shape == targets.shape, "binaryCrossEntropyWithLogits",
                   "logits \(describe(logits.shape)) and targets \(describe(targets.shape))")
    return try reduce(softplus(logits) - targets.detach() * logits, reduction)
}
