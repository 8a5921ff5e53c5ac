import Diffusion
import Distributed
import Engine
import Foundation

/// Settings of online Diffusion-DPO (`"objective": "diffusionDPO"`).
public struct DiffusionDPOSettings: Codable, Equatable, Sendable {
    /// β: how sharply the loss rewards the policy for denoising the preferred image better than
    /// the reference does, relative to the other image (on errors averaged over latent dimensions).
    public var beta = 1000.0
    /// The training timesteps [first, end) of the noise schedule; empty: all.
    public var timestepRange: [Int] = []
    /// Noise levels drawn for each pair in each inner epoch.
    public var timestepsPerPair = 1
    /// Compare the guided predictions (at the sampling guidance), which are what the sampler
    /// follows, instead of the conditional branch alone as Diffusion-DPO does.
    public var guided = false

    public init() {}
}

/// The preference pairs of an epoch: within each group of images of one prompt (`groups[i]` names
/// sample i's group), every (winner, loser) whose rewards differ, winner the higher; ties give none.
public func preferencePairs(rewards: [Double], groups: [Int]) -> [(winner: Int, loser: Int)] {
    precondition(rewards.count == groups.count, "\(rewards.count) rewards for \(groups.count) group labels")
    var members: [Int: [Int]] = [:], order: [Int] = []
    for (i, group) in groups.enumerated() {
        if members[group] == nil { order.append(group) }
        members[group, default: []].append(i)
    }
    var pairs: [(winner: Int, loser: Int)] = []
    for group in order {
        let samples = members[group]!
        for (k, a) in samples.enumerated() {
            for b in samples[(k + 1)...] where rewards[a] != rewards[b] {
                pairs.append(rewards[a] > rewards[b] ? (a, b) : (b, a))
            }
        }
    }
    return pairs
}

/// What one Diffusion-DPO batch reports beside its loss.
public struct DiffusionDPOResult {
    /// mean over pairs of −log σ(−β·[(e_w − e_w^ref) − (e_l − e_l^ref)]).
    public var loss: Tensor
    /// Share of pairs where the policy already denoises the winner better than the loser, relative
    /// to the reference (the implicit reward orders the pair as the data does).
    public var accuracy: Double
}

/// The Diffusion-DPO loss (Wallace et al. 2023) for P pairs from the denoising errors of the winners
/// and losers under the policy (`winnerErrors`, `loserErrors` [P], with gradients) and under the
/// frozen reference (same noise and timesteps):
/// −log σ(−β·[(e_w − e_w^ref) − (e_l − e_l^ref)]), averaged. At the reference it is log 2, and its
/// gradient lowers the winner's error and raises the loser's alike, so what the pair has in common
/// (the prompt, the model's own style) cancels.
public func diffusionDPOLoss(winnerErrors: Tensor, loserErrors: Tensor, referenceWinnerErrors: [Double],
                             referenceLoserErrors: [Double], beta: Double) throws -> DiffusionDPOResult {
    let p = winnerErrors.count
    guard winnerErrors.shape == [p], loserErrors.shape == [p], referenceWinnerErrors.count == p, referenceLoserErrors.count == p else {
        throw EngineError.shapeMismatch(op: "diffusionDPOLoss", "winner errors \(winnerErrors.shape), loser errors \(loserErrors.shape), "
                                        + "\(referenceWinnerErrors.count) and \(referenceLoserErrors.count) reference errors")
    }
    let reference = try Tensor(zip(referenceWinnerErrors, referenceLoserErrors).map { $0 - $1 }, shape: [p], dtype: winnerErrors.dtype)
    let margin = try (winnerErrors - loserErrors - reference) * beta
    let accuracy = Double(margin.values.filter { $0 < 0 }.count) / Double(max(p, 1))
    return DiffusionDPOResult(loss: try softplus(margin).mean(), accuracy: accuracy)
}

/// Online Diffusion-DPO as an objective: the usable samples' preference pairs within each
/// prompt group (by total reward), in batches of `trainBatch` pairs; winner and loser of a pair
/// get the same noise and timestep, the reference's errors are computed without gradients, and ε̂
/// is the conditional prediction (as in Diffusion-DPO; guidance amplifies what it learns) or, with
/// `guided`, the guided one.
final class DiffusionDPOObjective: FineTuningObjective {
    let config: FineTuningConfig

    init(config: FineTuningConfig) { self.config = config }

    var metricNames: [String] { ["effective_samples", "preference_accuracy"] }
    var usesAdvantages: Bool { false }

    func checkTrainedTimesteps(inside gate: Range<Int>, samplingTimesteps: [Int], trainSteps: Int) throws {
        try requireTimesteps(config.diffusionDPO.timestepRange, named: "diffusionDPO.timestepRange", inside: gate,
                             gatePair: config.loraTimestepRange, trainSteps: trainSteps)
    }

    func train(_ samples: EpochSamples, trainer: FineTuningTrainer, rng: inout RandomGenerator) throws -> [String: Double] {
        let indices = samples.usable, trajectories = samples.trajectories
        let pairs = preferencePairs(rewards: indices.map { samples.rewards[$0] }, groups: indices.map { samples.groups[$0] })
            .map { (winner: indices[$0.winner], loser: indices[$0.loser]) }
        guard !pairs.isEmpty, let finalLatents = trajectories.latents.last else {
            return UpdateStatistics().metrics.merging(["effective_samples": 0, "preference_accuracy": .nan]) { $1 }
        }
        let settings = config.diffusionDPO, copies = settings.timestepsPerPair, config = config
        let guidance = settings.guided ? config.sampling.guidance : 1
        let range = FineTuningConfig.halfOpenRange(settings.timestepRange)
        let policy = trainer.policy, reference = trainer.reference
        // Σ over batches of this rank's rows' share × their accuracy, summed over the ranks at the end.
        var accuracy = 0.0, batches = 0
        let statistics = try trainer.trainInBatchRows(Array(pairs.indices), rng: &rng) { batch, ranks, rng in
            // Each pair `copies` times; winners first, then losers, with the same noise and timesteps.
            // Every rank draws the whole batch's timesteps and noise, then trains its rows of it.
            let chosen = batch.flatMap { [Int](repeating: $0, count: copies) }
            let timesteps = try policy.drawTimesteps(chosen.count, in: range, using: &rng)
            let noise = Tensor.randn([chosen.count, finalLatents.shape[1], finalLatents.shape[2], finalLatents.shape[3]], using: &rng)
            batches += 1
            let own = ranks.ownRows(of: chosen.count)
            guard !own.isEmpty else { return nil }
            let members = own.map { pairs[chosen[$0]].winner } + own.map { pairs[chosen[$0]].loser }
            let x0 = try finalLatents.indexSelect(axis: 0, members)
            let captions = members.map { trajectories.prompts[$0] }
            let ownTimesteps = own.map { timesteps[$0] }
            let ownNoise = try noise.indexSelect(axis: 0, own)
            let bothNoise = try concat([ownNoise, ownNoise], axis: 0)
            let referenceErrors = try withNoGrad {
                try reference.denoisingErrors(x0: x0, captions: captions, timesteps: ownTimesteps + ownTimesteps, noise: bothNoise, guidance: guidance).values
            }
            let errors = try policy.denoisingErrors(x0: x0, captions: captions, timesteps: ownTimesteps + ownTimesteps, noise: bothNoise, guidance: guidance)
            let halves = try errors.split(sizes: [own.count, own.count], axis: 0)
            let result = try diffusionDPOLoss(winnerErrors: halves[0], loserErrors: halves[1],
                                              referenceWinnerErrors: Array(referenceErrors[..<own.count]),
                                              referenceLoserErrors: Array(referenceErrors[own.count...]), beta: settings.beta)
            // The loss is a mean over the batch's rows: this rank's rows count for their share of it.
            let share = Double(own.count) / Double(chosen.count)
            try (result.loss * (share * Double(batch.count) / Double(config.trainBatch * config.gradientAccumulation))).backward()
            accuracy += share * result.accuracy
            return (result.loss.item, share)
        }
        accuracy = try trainer.sumOverRanks([accuracy])[0]
        return statistics.metrics.merging(["effective_samples": Double(pairs.count),
                                           "preference_accuracy": accuracy / Double(max(batches, 1))]) { $1 }
    }

    func progressText(_ metrics: [String: Double]) -> String {
        progressFigures(metrics, [("pairs", "effective_samples", "%.0f"), ("pair accuracy", "preference_accuracy", "%.3f")])
    }
}
