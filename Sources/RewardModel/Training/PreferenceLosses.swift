import Engine

/// Losses for training reward models on preferences.
///
/// Notation: r_w, r_l rewards of the preferred ("won") and the other ("lost") image of a pair;
/// m a margin; τ a temperature; σ the logistic function.

/// Bradley–Terry loss on pairs: −log σ((r_w − r_l − m) / τ), reduced over the batch.
public func bradleyTerryLoss(chosen: Tensor, rejected: Tensor, margin: Double = 0, temperature: Double = 1,
                             reduction: Reduction = .mean) throws -> Tensor {
    try checkShape(chosen.shape == rejected.shape, "bradleyTerryLoss",
                   "chosen \(describe(chosen.shape)) and rejected \(describe(rejected.shape))")
    try checkArgument(temperature > 0, "bradleyTerryLoss", "temperature \(temperature) must be positive")
    let losses = try neg(logSigmoid((chosen - rejected - margin) * (1 / temperature)))
    switch reduction {
    case .none: return losses
    case .sum: return try losses.sum()
    case .mean: return try losses.mean()
    }
}

/// The general preference model's skew-symmetric score for two-dimensional rewards (Zhang et al.,
/// "General Preference Modeling"): s(x, y) = ⟨R v_x, v_y⟩ with R the 90° rotation,
/// = v_x[0]·v_y[1] − v_x[1]·v_y[0], so s(x, y) = −s(y, x) and P(x ≻ y) = σ(s(x, y) / τ).
/// Unlike a scalar reward it can represent cyclic preferences. v [B, 2] → s [B].
public func generalPreferenceScore(_ x: Tensor, _ y: Tensor) throws -> Tensor {
    try checkShape(x.shape == y.shape && x.rank == 2 && x.shape[1] == 2, "generalPreferenceScore",
                   "x \(describe(x.shape)) and y \(describe(y.shape)) must both be [B, 2]")
    let (x0, x1) = (try x.slice(axis: 1, 0..<1), try x.slice(axis: 1, 1..<2))
    let (y0, y1) = (try y.slice(axis: 1, 0..<1), try y.slice(axis: 1, 1..<2))
    return try (x0 * y1 - x1 * y0).reshaped([x.shape[0]])
}

/// −log σ(s(v_w, v_l) / τ), the general preference model's loss on pairs, reduced by the mean.
public func generalPreferenceLoss(chosen: Tensor, rejected: Tensor, temperature: Double = 1) throws -> Tensor {
    try checkArgument(temperature > 0, "generalPreferenceLoss", "temperature \(temperature) must be positive")
    return try neg(logSigmoid(generalPreferenceScore(chosen, rejected) * (1 / temperature))).mean()
}

/// Whether rewards order a pair as labeled: 1 when the preferred image scores higher, ½ on a tie, 0 otherwise.
public func pairAgreement(preferred: Double, other: Double) -> Double {
    preferred > other ? 1 : (preferred == other ? 0.5 : 0)
}

/// Binary cross-entropy with logits for unpaired labels (an image is good or bad, e.g. safe or
/// unsafe): the reward is the logit of "good". Labels [B] as Booleans.
public func unpairedPreferenceLoss(rewards: Tensor, good: [Bool]) throws -> Tensor {
    try checkShape(rewards.rank == 1 && rewards.shape[0] == good.count, "unpairedPreferenceLoss",
                   "rewards \(describe(rewards.shape)) for \(good.count) labels")
    let targets = try Tensor(good.map { $0 ? 1.0 : 0.0 }, shape: [good.count], dtype: rewards.dtype)
    return try binaryCrossEntropyWithLogits(rewards, targets)
}
