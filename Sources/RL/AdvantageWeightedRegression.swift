import Diffusion
import Engine
import Foundation

/// Settings of advantage-weighted regression (`"loss": "advantageWeighted"`).
public struct AdvantageWeightedSettings: Codable, Equatable, Sendable {
    /// τ in w_i ∝ exp(A_i / τ) over the epoch's usable samples: small τ keeps only the samples that
    /// beat their prompt's other images (filtered fine-tuning), large τ weights them all alike
    /// (self-distillation).
    public var temperature = 0.5
    /// Noise levels drawn for each sample in each inner epoch of the denoising loss.
    public var timestepsPerSample = 2
    /// The training timesteps [first, end) of the noise schedule the denoising loss draws from;
    /// empty: all. Layout, count and relations are decided at high noise.
    public var timestepRange: [Int] = []

    public init() {}
}

/// Advantage-weighted regression's sample weights (Peng et al. 2019), w_i = n · exp(A_i / τ) /
/// Σ_j exp(A_j / τ): they average to 1, so the weighted denoising loss is on the scale of the
/// unweighted one. With raw rewards for A it is reward-weighted regression (Lee et al. 2023;
/// DDPO's RWR baseline).
public func advantageWeights(advantages: [Double], temperature: Double) -> [Double] {
    guard let best = advantages.max() else { return [] }
    let unnormalized = advantages.map { exp(($0 - best) / temperature) }
    let total = unnormalized.reduce(0, +)
    return unnormalized.map { $0 * Double(advantages.count) / total }
}

/// Kish's effective sample size of weights, (Σ w)² / Σ w²: n for equal weights, 1 when one sample
/// carries all of them.
public func effectiveSampleSize(_ weights: [Double]) -> Double {
    let total = weights.reduce(0, +), squares = weights.reduce(0) { $0 + $1 * $1 }
    return squares > 0 ? total * total / squares : 0
}
