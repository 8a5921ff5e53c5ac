import Engine

/// KL drift between the policy's and the reference model's Gaussian steps on the same x_t, with
/// the same σ_t: KL(N(μ_θ, σ²I) ‖ N(μ_ref, σ²I)) = ‖μ_θ − μ_ref‖² / (2σ²), one value per sample [B].
/// Differentiable in both means (DPOK's β·KL penalty needs it with respect to μ_θ).
public func stepKL(mean: Tensor, referenceMean: Tensor, sigma: Double) throws -> Tensor {
    guard mean.shape == referenceMean.shape, mean.rank >= 1 else {
        throw EngineError.shapeMismatch(op: "stepKL", "mean \(mean.shape) and reference mean \(referenceMean.shape)")
    }
    guard sigma > 0 else { throw EngineError.invalidArgument(op: "stepKL", "σ = \(sigma) has no density") }
    let b = mean.shape[0]
    return try square(mean - referenceMean).reshaped([b, mean.count / Swift.max(b, 1)]).sum(axes: [1]) * (1 / (2 * sigma * sigma))
}

/// Per-epoch summary of the KL drift: per sample Σ_t KL_t, its mean, max and √ of the mean, and
/// the mean per step.
public struct KLSummary: Equatable, Sendable {
    public var mean: Double
    public var max: Double
    public var rootMean: Double
    public var byStep: [Double]
    public var perSample: [Double]

    /// `perStep[t][i]`: KL of sample i at step t.
    public init(perStep: [[Double]]) {
        let samples = perStep.first?.count ?? 0
        perSample = (0..<samples).map { i in perStep.reduce(0) { $0 + $1[i] } }
        byStep = perStep.map { $0.isEmpty ? 0 : $0.reduce(0, +) / Double($0.count) }
        mean = perSample.isEmpty ? .nan : perSample.reduce(0, +) / Double(samples)
        max = perSample.max() ?? .nan
        rootMean = mean.squareRoot()
    }
}
