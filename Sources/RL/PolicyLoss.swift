import Engine
import Foundation

/// A policy-gradient loss over a batch of steps, with the statistics PPO reports.
public struct PolicyLossResult {
    /// The scalar to minimize (mean over the batch).
    public var loss: Tensor
    /// Share of samples whose ratio fell outside [1 − ε, 1 + ε].
    public var clipFraction: Double
    /// ½·mean((log π − log π_old)²), the estimate of KL(π_old ‖ π) ddpo-pytorch logs.
    public var approxKL: Double
    /// mean ρ = exp(log π − log π_old).
    public var meanRatio: Double
}

/// The per-step policy-gradient losses of DDPO (Black et al. 2023), `PolicyGradientObjective`'s two forms.
public enum PolicyLoss: String, Codable, Sendable {
    /// DDPO-IS: ρ = exp(log π_θ − log π_old); loss = mean(max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε))).
    case ppo
    /// DDPO-SF (REINFORCE): loss = −mean(A · log π_θ).
    case reinforce

    /// The loss for per-sample `logProb` [B] (with gradients), the log-probabilities recorded at
    /// sampling `oldLogProb` and the `advantages`.
    public func callAsFunction(logProb: Tensor, oldLogProb: [Double], advantages: [Double], clipRange: Double) throws -> PolicyLossResult {
        let n = logProb.count
        guard logProb.shape == [n], oldLogProb.count == n, advantages.count == n else {
            throw EngineError.shapeMismatch(op: "PolicyLoss", "log-probs \(logProb.shape), \(oldLogProb.count) old log-probs, \(advantages.count) advantages")
        }
        let old = try Tensor(oldLogProb, shape: [n], dtype: logProb.dtype)
        let advantage = try Tensor(advantages, shape: [n], dtype: logProb.dtype)
        let logRatio = try logProb - old
        let differences = logRatio.values
        let ratios = differences.map { exp($0) }
        let clipped = ratios.filter { abs($0 - 1) > clipRange }.count
        let approxKL = differences.map { 0.5 * $0 * $0 }.reduce(0, +) / Double(n)
        let loss: Tensor
        switch self {
        case .ppo:
            let ratio = exp(logRatio)
            let unclipped = try -(advantage * ratio)
            let bounded = try -(advantage * clamp(ratio, min: 1 - clipRange, max: 1 + clipRange))
            loss = try maximum(unclipped, bounded).mean()
        case .reinforce:
            loss = try -(advantage * logProb).mean()
        }
        return PolicyLossResult(loss: loss, clipFraction: Double(clipped) / Double(n), approxKL: approxKL,
                                meanRatio: ratios.reduce(0, +) / Double(n))
    }
}
