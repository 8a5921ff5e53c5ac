import Engine
import Foundation
import Images
import Rewards

extension FineTuningTrainer {
    /// β of the β·KL penalty: `kl.beta`, as the guard's adaptive controller has moved it (the guard
    /// starts from `kl.beta` and keeps it unchanged unless `adaptBeta` is on).
    var klBeta: Double { overoptimizationGuard.beta }

    /// The guard's per-epoch metrics (logged when it is on).
    static let guardMetrics = ["guard_proxy", "guard_textnorm", "guard_beta"]

    /// A composer for the guard's watched perspectives that the run's reward does not already
    /// compute (nil when it computes them all, or nothing is watched).
    static func guardComposer(_ config: FineTuningConfig, functions: [any RewardFunction]) throws -> RewardComposer? {
        let watched = [config.guard.proxy, config.guard.textNorm].filter { !$0.isEmpty && !config.rewards.active.contains($0) }
        guard config.guard.isActive, !watched.isEmpty else { return nil }
        return try RewardComposer(composition: RewardComposition(weights: Dictionary(uniqueKeysWithValues: watched.map { ($0, 1) })),
                                  functions: functions)
    }

    /// This epoch's signals, before any update: the KL measured on its samples (NaN when not
    /// measured) and the watched perspectives' means over its usable samples.
    func guardSignals(rewards: ComposedRewards, images: [RGBImage], prompts: [String], usable: [Int], kl: KLSummary?) throws -> GuardSignals {
        // Every perspective's scores of the usable samples, in their order.
        var scores = rewards.perspectives.mapValues { values in usable.map { values[$0] } }
        if let guardComposer, !usable.isEmpty {
            scores.merge(try sharedScores(guardComposer, images: images, prompts: prompts, indices: usable).perspectives) { $1 }
        }
        func mean(_ name: String) -> Double {
            guard !name.isEmpty, let values = scores[name], !values.isEmpty else { return .nan }
            return values.reduce(0, +) / Double(values.count)
        }
        return GuardSignals(epoch: epoch, kl: kl?.mean ?? .nan, proxy: mean(config.guard.proxy), textNorm: mean(config.guard.textNorm))
    }

    /// Lets the guard observe the signals and carries out its decisions, each an event in the log
    /// with the values that caused it; keeps the weights of the guard's best epoch (before its
    /// update, which is what its signals measured) for `restoreBest`.
    func applyGuard(_ signals: GuardSignals) throws {
        let (decisions, bestChanged) = overoptimizationGuard.observe(signals)
        if bestChanged && config.guard.has("restoreBest") {
            guardBest = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.tensor.copy()) })
        }
        for decision in decisions {
            switch decision {
            case .warn: break
            case .setBeta: break  // the guard holds β (`klBeta`)
            case .scaleLearningRate(let factor, _): optimizer.learningRate *= factor
            case .stop: stoppedByGuard = true
            }
            try log.event(epoch: epoch, kind: "guard", decision.message)
        }
        try log.record("guard_proxy", signals.proxy)
        try log.record("guard_textnorm", signals.textNorm)
        try log.record("guard_beta", klBeta)
    }

    /// Each epoch's signals judge the weights before its update, so the weights a run finishes
    /// with were never measured: with `restoreBest`, a run that ends at its last epoch draws one
    /// more epoch's samples (its stream, `epoch` = the number of epochs), measures them like an
    /// epoch's — no update, no log row; the values go into an event — and lets the guard judge
    /// them, so that the final weights are kept when they are its best (within the KL budget, say).
    func observeFinalWeights() throws {
        guard config.guard.has("restoreBest"), !stoppedByGuard, epoch == config.epochs else { return }
        var rng = epochRNG(epoch)
        _ = rng.next()  // the epoch's seed, as in `runEpoch`
        let (_, _, trajectories) = try sampleEpoch(using: &rng)
        let prompts = trajectories.prompts
        let rewards = try sharedScores(composer, images: trajectories.images, prompts: prompts, indices: Array(prompts.indices))
        let (usable, _) = try usableSamples(rewards, finite: finiteTrajectories(trajectories))
        let kl = config.guard.limitsKL
            ? try klDrift(trajectories, indices: klIndices(count: prompts.count))
            : nil
        let signals = try guardSignals(rewards: rewards, images: trajectories.images, prompts: prompts, usable: usable, kl: kl)
        // Nothing to copy if these become the best: they are the weights the run holds.
        let (decisions, _) = overoptimizationGuard.observe(signals)
        try log.event(epoch: epoch, kind: "guard", String(format: "the final weights measured: KL %.4g, proxy %.4g, TextNorm %.4g",
                                                          signals.kl, signals.proxy, signals.textNorm))
        for decision in decisions { try log.event(epoch: epoch, kind: "guard", decision.message) }
    }

    /// With `restoreBest`: puts back the weights of the guard's best epoch, if it saw one (the
    /// final weights, measured by `observeFinalWeights`, can be that best: then they stay).
    func restoreGuardBest() throws {
        guard config.guard.has("restoreBest"), let bestEpoch = overoptimizationGuard.bestEpoch else { return }
        let why = config.guard.restoreBy == "lastWithinBudget" ? "the last epoch measured within the KL limits, KL %.4g"
            : "its best TextNorm signal within the KL limits, %.4g"
        if bestEpoch == epoch && !stoppedByGuard {
            try log.event(epoch: epoch, kind: "guard", String(format: "kept the final weights (" + why + ")", overoptimizationGuard.bestValue))
            return
        }
        guard let best = guardBest else { return }
        for (name, tensor) in parameters { tensor.assign(best[name]!) }
        try log.event(epoch: epoch, kind: "guard", String(format: "restored the weights the run had at the start of epoch %d (" + why + ")",
                                                          bestEpoch, overoptimizationGuard.bestValue))
    }
}
