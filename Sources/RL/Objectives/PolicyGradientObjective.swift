import Diffusion
import Engine

/// DDPO (Black et al. 2023): the policy-gradient loss (`PolicyLoss`: PPO's clipped importance
/// ratio, or REINFORCE) on the log-probabilities of the trajectories' own steps, weighted by the
/// samples' advantages; optionally DPOK's β·KL to the reference at every trained step.
final class PolicyGradientObjective: FineTuningObjective {
    let config: FineTuningConfig
    let loss: PolicyLoss

    init(config: FineTuningConfig, loss: PolicyLoss) {
        self.config = config
        self.loss = loss
    }

    var usesKLPenalty: Bool { true }
    var metricNames: [String] { ["clip_fraction", "approx_kl", "ratio_mean", "effective_samples"] }

    func checkTrainedTimesteps(inside gate: Range<Int>, samplingTimesteps timesteps: [Int], trainSteps: Int) throws {
        if let step = FineTuningTrainer.trainableSteps(config).first(where: { !gate.contains(timesteps[$0]) }) {
            throw FineTuningError("step \(step) (t = \(timesteps[step])) is trained but outside loraTimestepRange \(config.loraTimestepRange); "
                                  + "narrow trainStepRange or widen loraTimestepRange")
        }
    }

    /// Inner epochs of policy-gradient updates over the usable samples; each batch trains
    /// `timestepFraction` of the trainable steps, chosen at random.
    func train(_ samples: EpochSamples, trainer: FineTuningTrainer, rng: inout RandomGenerator) throws -> [String: Double] {
        let trajectories = samples.trajectories, advantages = samples.advantages
        let policy = trainer.policy, reference = trainer.reference
        let eligible = trainer.trainableSteps, trainedSteps = FineTuningTrainer.trainedStepsPerSample(config)
        // Σ share·figure over the trained steps (a slice's share of its batch), summed over the ranks below.
        var clipFraction = 0.0, approxKL = 0.0, ratio = 0.0, terms = 0.0
        let oldLogProbs = trajectories.logProbs.map(\.values)
        let statistics = try trainer.trainInBatches(samples.usable, rng: &rng) { batch, share, rng in
            let captions = batch.map { trajectories.prompts[$0] }
            let (context, empty) = (try policy.encodeText(captions), try policy.encodeText(captions.map { _ in "" }))
            var steps = eligible
            steps.shuffle(using: &rng)
            let scale = share / Double(trainedSteps * config.gradientAccumulation)
            var batchLoss = 0.0
            // Parameters change only at the optimizer step, so several steps share one pass.
            let trained = Array(steps.prefix(trainedSteps))
            for first in stride(from: 0, to: trained.count, by: config.stepsPerPass) {
                let chunk = Array(trained[first ..< min(first + config.stepsPerPass, trained.count)])
                let mine = try policy.stepLogProbs(trajectories, steps: chunk, indices: batch, context: context, empty: empty, settings: config.sampling)
                let theirs = trainer.klBeta > 0 ? try withNoGrad {
                    try reference.stepLogProbs(trajectories, steps: chunk, indices: batch, context: context, empty: empty, settings: config.sampling)
                } : []
                var chunkLoss: Tensor?
                for (k, (s, step)) in zip(chunk, mine).enumerated() {
                    let result = try loss(logProb: step.logProb, oldLogProb: batch.map { oldLogProbs[s][$0] },
                                          advantages: batch.map { advantages[$0] }, clipRange: config.clipRange)
                    var total = result.loss
                    if trainer.klBeta > 0 {
                        total = try total + stepKL(mean: step.mean, referenceMean: theirs[k].mean, sigma: step.sigma).mean() * trainer.klBeta
                    }
                    chunkLoss = try chunkLoss.map { try $0 + total } ?? total
                    batchLoss += total.item
                    clipFraction += share * result.clipFraction
                    approxKL += share * result.approxKL
                    ratio += share * result.meanRatio
                    terms += share
                }
                try (chunkLoss! * scale).backward()
            }
            // Every batch trains `trainedSteps` steps, so the mean over batches is the mean over terms.
            return batchLoss / Double(trainedSteps)
        }
        let sums = try trainer.sumOverRanks([clipFraction, approxKL, ratio, terms])
        let n = max(sums[3], 1)
        return statistics.metrics.merging(["clip_fraction": sums[0] / n, "approx_kl": sums[1] / n, "ratio_mean": sums[2] / n,
                                           "effective_samples": Double(samples.usable.count)]) { $1 }
    }

    func progressText(_ metrics: [String: Double]) -> String {
        progressFigures(metrics, [("clip", "clip_fraction", "%.3f"), ("approx-KL", "approx_kl", "%.3g")])
    }
}
