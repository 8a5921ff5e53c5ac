import Diffusion
import Engine
import Foundation

/// Settings of DiffusionNFT (`"objective": "diffusionNFT"`).
public struct DiffusionNFTSettings: Codable, Equatable, Sendable {
    /// β: the implicit positive prediction lies β of the way from the old prediction to the
    /// trained one, the negative as far on the other side (the paper's default is 1).
    public var beta = 1.0
    /// An advantage A becomes the optimality probability r = ½ + ½·clip(A / advantageScale, −1, 1):
    /// with group-standardized advantages, 2 maps two standard deviations above the group's mean to
    /// a pure positive and two below to a pure negative.
    public var advantageScale = 2.0
    /// Noise levels drawn for each sample in each epoch.
    public var timestepsPerSample = 2
    /// The training timesteps [first, end) the loss draws from; empty: all.
    public var timestepRange: [Int] = []
    /// Share of rows whose caption is dropped to "": they are fitted as positives (r = 1) whatever
    /// their reward, so the unconditional branch that guidance subtracts keeps modelling the
    /// policy's images rather than drifting with the conditional one.
    public var captionDropout = 0.1

    public init() {}
}

/// The optimality probability of each sample, r_i = ½ + ½·clip(A_i / scale, −1, 1) ∈ [0, 1]
/// (DiffusionNFT's normalized reward: ½ at the group's mean).
public func optimalityProbabilities(advantages: [Double], scale: Double) -> [Double] {
    advantages.map { 0.5 + 0.5 * Swift.min(Swift.max($0 / scale, -1), 1) }
}

/// DiffusionNFT's loss per row (Zheng et al. 2025, "DiffusionNFT: Online Diffusion Reinforcement
/// with Forward Process", eq. 8, in ε-prediction). Notation: ε_θ the trained prediction
/// (`prediction`), ε_old the prediction of the policy that drew the samples (`old`, a constant),
/// ε the forward process's target (`target`), r the optimality probability, β > 0:
///
///     ε⁺ = (1 − β)·ε_old + β·ε_θ            the implicit positive policy
///     ε⁻ = (1 + β)·ε_old − β·ε_θ            the implicit negative policy
///     L  = [ r·mean(ε⁺ − ε)² + (1 − r)·mean(ε⁻ − ε)² ] / β
///
/// With d = ε_θ − ε_old and e = ε_old − ε, L = β·mean(d²) + 2(2r − 1)·mean(d·e) + mean(e²)/β,
/// minimized at ε_θ = ε_old + (2r − 1)(ε − ε_old)/β: a positive (r = 1) pulls the prediction to
/// its own noise as pretraining would, a negative (r = 0) pushes it as far the other way, and
/// r = ½ holds it at the old policy — a bounded target in every case, unlike gradient ascent on a
/// negative's denoising loss. Returns [B], differentiable in `prediction`.
public func negativeAwareLoss(prediction: Tensor, old: Tensor, target: Tensor, optimality: [Double], beta: Double) throws -> Tensor {
    let n = prediction.shape.first ?? 0
    guard prediction.rank >= 2, prediction.shape == old.shape, prediction.shape == target.shape, optimality.count == n else {
        throw EngineError.shapeMismatch(op: "negativeAwareLoss", "prediction \(prediction.shape), old \(old.shape), target \(target.shape) "
                                        + "for \(optimality.count) optimality probabilities")
    }
    guard beta > 0, beta.isFinite else { throw EngineError.invalidArgument(op: "negativeAwareLoss", "β must be positive, not \(beta)") }
    let axes = Array(1..<prediction.rank)
    let positive = try old * (1 - beta) + prediction * beta
    let negative = try old * (1 + beta) - prediction * beta
    let positiveError = try mseLoss(positive, target, reduction: .none).mean(axes: axes)
    let negativeError = try mseLoss(negative, target, reduction: .none).mean(axes: axes)
    let r = try Tensor(optimality, shape: [n], dtype: prediction.dtype)
    let notR = try Tensor(optimality.map { 1 - $0 }, shape: [n], dtype: prediction.dtype)
    return try (positiveError * r + negativeError * notR) * (1 / beta)
}

/// DiffusionNFT as an objective: the sampler's final latents are noised by the forward process
/// (`timestepsPerSample` levels each), the old policy — the model as it was when the epoch's
/// samples were drawn — predicts their noise once, before any update, and the conditional
/// prediction is then trained with `negativeAwareLoss`, each sample's r from its advantage. It
/// uses every sample, the failures as much as the successes, needs no log-probabilities, and
/// holds the model at the old policy where a sample is average for its prompt. Per batch the loss
/// is Σ L_row / (trainBatch · timestepsPerSample · gradientAccumulation). The noise and timesteps
/// are drawn once per epoch, so `innerEpochs` > 1 revisits the same rows.
final class DiffusionNFTObjective: FineTuningObjective {
    let config: FineTuningConfig
    var settings: DiffusionNFTSettings { config.diffusionNFT }

    init(config: FineTuningConfig) { self.config = config }

    var metricNames: [String] { ["optimality_mean", "negative_share"] }

    func checkTrainedTimesteps(inside gate: Range<Int>, samplingTimesteps: [Int], trainSteps: Int) throws {
        try requireTimesteps(settings.timestepRange, named: "diffusionNFT.timestepRange", inside: gate,
                             gatePair: config.loraTimestepRange, trainSteps: trainSteps)
    }

    func train(_ samples: EpochSamples, trainer: FineTuningTrainer, rng: inout RandomGenerator) throws -> [String: Double] {
        guard let finalLatents = samples.trajectories.latents.last, !samples.usable.isEmpty else { return UpdateStatistics().metrics }
        let policy = trainer.policy, usable = samples.usable, copies = settings.timestepsPerSample
        let optimality = optimalityProbabilities(advantages: usable.map { samples.advantages[$0] }, scale: settings.advantageScale)
        // Row k·copies + j: usable sample k at its j-th noise level; a dropped caption is a positive.
        var captions: [String] = [], rowOptimality: [Double] = []
        for (k, i) in usable.enumerated() {
            for _ in 0..<copies {
                let dropped = rng.uniform() < settings.captionDropout
                captions.append(dropped ? "" : samples.trajectories.prompts[i])
                rowOptimality.append(dropped ? 1 : optimality[k])
            }
        }
        let x0 = try finalLatents.indexSelect(axis: 0, usable.flatMap { [Int](repeating: $0, count: copies) })
        let timesteps = try policy.drawTimesteps(captions.count, in: FineTuningConfig.halfOpenRange(settings.timestepRange), using: &rng)
        let noise = Tensor.randn(x0.shape, using: &rng)
        let noisy = try policy.schedule.addNoise(x0, noise: noise, timesteps: timesteps)
        let target = try policy.schedule.target(x0: x0, noise: noise, timesteps: timesteps)
        func rows(of batch: [Int]) -> [Int] { batch.flatMap { k in k * copies ..< (k + 1) * copies } }
        func predict(_ rows: [Int]) throws -> Tensor {
            let (context, mask) = try policy.encodeText(rows.map { captions[$0] })
            return try policy.unet(noisy.indexSelect(axis: 0, rows), timesteps: rows.map { Double(timesteps[$0]) }, context: context, contextMask: mask)
        }
        // The old policy's predictions, before this epoch's first update changes the weights.
        let chunk = max(1, config.trainBatch) * copies
        let old = try withNoGrad {
            try concat(stride(from: 0, to: captions.count, by: chunk).map { try predict(Array($0 ..< min($0 + chunk, captions.count))) }, axis: 0)
        }
        let config = config, beta = settings.beta
        let statistics = try trainer.trainInBatches(Array(usable.indices), rng: &rng) { slice, _, _ in
            let batchRows = rows(of: slice)
            let loss = try negativeAwareLoss(prediction: predict(batchRows), old: old.indexSelect(axis: 0, batchRows),
                                             target: target.indexSelect(axis: 0, batchRows),
                                             optimality: batchRows.map { rowOptimality[$0] }, beta: beta).sum()
            try (loss * (1 / Double(config.trainBatch * copies * config.gradientAccumulation))).backward()
            return loss.item / Double(batchRows.count)
        }
        return statistics.metrics.merging(["optimality_mean": optimality.reduce(0, +) / Double(optimality.count),
                                           "negative_share": Double(optimality.filter { $0 < 0.5 }.count) / Double(optimality.count)]) { $1 }
    }

    func progressText(_ metrics: [String: Double]) -> String {
        progressFigures(metrics, [("negatives", "negative_share", "%.2f")])
    }
}
