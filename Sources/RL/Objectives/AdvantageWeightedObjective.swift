import Diffusion
import Distributed
import Engine
import Foundation

/// Settings of advantage-weighted regression (`"objective": "advantageWeighted"`).
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

/// Advantage-weighted regression as an objective: the guided denoising loss on the usable
/// samples' final latents, sample i weighted by w_i ∝ exp(A_i / τ) (mean 1), at
/// `timestepsPerSample` noise levels each; per batch the loss is Σ w_i·MSE_i / (trainBatch ·
/// timestepsPerSample), so an update of `gradientAccumulation` batches is a weighted mean like
/// the policy-gradient loss.
final class AdvantageWeightedObjective: FineTuningObjective {
    let config: FineTuningConfig

    init(config: FineTuningConfig) { self.config = config }

    var metricNames: [String] { ["effective_samples"] }

    func checkTrainedTimesteps(inside gate: Range<Int>, samplingTimesteps: [Int], trainSteps: Int) throws {
        try requireTimesteps(config.advantageWeighted.timestepRange, named: "advantageWeighted.timestepRange", inside: gate,
                             gatePair: config.loraTimestepRange, trainSteps: trainSteps)
    }

    func train(_ samples: EpochSamples, trainer: FineTuningTrainer, rng: inout RandomGenerator) throws -> [String: Double] {
        guard let finalLatents = samples.trajectories.latents.last else { return UpdateStatistics().metrics }
        let trajectories = samples.trajectories, indices = samples.usable
        let settings = config.advantageWeighted, copies = settings.timestepsPerSample
        let weights = advantageWeights(advantages: indices.map { samples.advantages[$0] }, temperature: settings.temperature)
        let timesteps = FineTuningConfig.halfOpenRange(settings.timestepRange)
        let weightOf = Dictionary(uniqueKeysWithValues: zip(indices, weights))
        let policy = trainer.policy, config = config
        let statistics = try trainer.trainInBatchRows(indices, rng: &rng) { batch, ranks, rng in
            // Each sample `copies` times in one forward, at independent noise levels; this rank's rows of them.
            let repeated = batch.flatMap { [Int](repeating: $0, count: copies) }
            let own = ranks.ownRows(of: repeated.count)
            guard !own.isEmpty else { return nil }
            let loss = try policy.weightedDenoisingLoss(x0: finalLatents.indexSelect(axis: 0, repeated),
                                                        captions: repeated.map { trajectories.prompts[$0] },
                                                        weights: repeated.map { weightOf[$0]! }, guidance: config.sampling.guidance,
                                                        timesteps: timesteps, rows: own, using: &rng)
            try (loss * (1 / Double(config.trainBatch * copies * config.gradientAccumulation))).backward()
            return (loss.item / Double(own.count), Double(own.count) / Double(repeated.count))
        }
        return statistics.metrics.merging(["effective_samples": effectiveSampleSize(weights)]) { $1 }
    }

    func progressText(_ metrics: [String: Double]) -> String {
        progressFigures(metrics, [("ESS", "effective_samples", "%.1f")])
    }
}

/// Refuses a drawn-timestep range (a `[first, end)` setting, empty: all `trainSteps`) that does
/// not lie inside a timestep-gated LoRA's `gate`: the adapter would not act there.
func requireTimesteps(_ pair: [Int], named name: String, inside gate: Range<Int>, gatePair: [Int], trainSteps: Int) throws {
    let drawn = FineTuningConfig.halfOpenRange(pair) ?? 0 ..< trainSteps
    guard drawn.lowerBound >= gate.lowerBound && drawn.upperBound <= gate.upperBound else {
        throw FineTuningError("\(name) \(pair.isEmpty ? "(all)" : "\(pair)") must lie inside loraTimestepRange \(gatePair)")
    }
}
