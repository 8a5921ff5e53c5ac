import Evaluation
import Foundation
import Images
import Rewards
import World

extension FineTuningTrainer {
    /// The gold evaluation before any update, recorded as `base_eval_*`.
    func evaluateBase(progress: (String) -> Void) throws {
        let report = try evaluate()
        for name in FineTuningTrainer.evaluationScores { try log.record("base_eval_\(name)", report?.scores[name]?.mean ?? .nan) }
        try log.record("base_eval_alignment_se", report?.scores["alignment"]?.standardError ?? .nan)
        if let report {
            progress(String(format: "before training: gold alignment %.3f ± %.3f on %d %@ prompts × %d", report.scores["alignment"]!.mean,
                            report.scores["alignment"]!.standardError, report.prompts, report.split, report.imagesPerPrompt))
        }
    }

    /// The gold evaluation on the fixed prompts (nil when there are none); logs a grid of the
    /// first image of each prompt.
    func evaluate() throws -> GoldEvaluation.Report? {
        guard !evaluationPrompts.isEmpty else { return nil }
        var settings = config.sampling
        settings.seed = config.evaluation.seed
        var firstImages: [Int: RGBImage] = [:], seen = 0
        let label = config.evaluation.promptFile.isEmpty ? config.evaluation.split : URL(fileURLWithPath: config.evaluation.promptFile).lastPathComponent
        let report = try GoldEvaluation.run(model: policy, prompts: evaluationPrompts, label: label,
                                            imagesPerPrompt: config.evaluation.imagesPerPrompt, settings: settings,
                                            batch: config.samplingBatch, communicator: communicator, collect: { _, images in
            for image in images {
                if seen % config.evaluation.imagesPerPrompt == 0 { firstImages[seen / config.evaluation.imagesPerPrompt] = image }
                seen += 1
            }
        })
        let evaluationIndex = epoch == 0 ? 0 : epoch / config.evaluation.every
        if evaluationIndex % config.evaluation.gridEvery == 0 || epoch + 1 >= config.epochs {
            let order = firstImages.keys.sorted()
            try log.appendImages(epoch: epoch, prompts: order.map { promptPool.count + $0 }, images: order.map { firstImages[$0]! })
        }
        return report
    }

    /// Records the epoch's metrics (the row is closed by the caller); returns the mean reward of
    /// the usable samples and of each perspective.
    func recordEpoch(rewards: ComposedRewards, usable: [Int], skipped: Int, gold: [String: [Double]]?, kl: KLSummary?,
                     training: [String: Double], evaluation: GoldEvaluation.Report?, clock: EpochClock) throws
        -> (mean: Double, byName: [String: Double]) {
        func mean(_ values: [Double]) -> Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }
        let totals = usable.map { rewards.total[$0] }
        try log.record("reward_mean", mean(totals))
        try log.record("reward_std", meanAndStd(totals).std)
        var byName: [String: Double] = [:]
        for name in config.rewards.active {
            byName[name] = mean(usable.map { rewards.perspectives[name]![$0] })
            try log.record("reward_\(name)", byName[name]!)
        }
        for name in FineTuningTrainer.goldColumns { try log.record("gold_\(name)", gold.map { mean($0[name]!) } ?? .nan) }
        if let kl {
            try log.record("kl_mean", kl.mean)
            try log.record("kl_max", kl.max)
            try log.record("kl_sqrt", kl.rootMean)
            for (s, value) in kl.byStep.enumerated() { try log.record(String(format: "kl_step_%02d", s), value) }
        }
        let refresh = config.rewardRefresh.every > 0 ? [FineTuningTrainer.refreshMetrics.loss, FineTuningTrainer.refreshMetrics.agreement] : []
        for name in ["loss", "grad_norm", "skipped_updates"] + objective.metricNames + refresh { try log.record(name, training[name] ?? .nan) }
        try log.record("learning_rate", optimizer.learningRate)
        try log.record("skipped_batches", Double(skipped))
        if let evaluation {
            for name in FineTuningTrainer.evaluationScores { try log.record("eval_\(name)", evaluation.scores[name]?.mean ?? .nan) }
            try log.record("eval_alignment_se", evaluation.scores["alignment"]?.standardError ?? .nan)
        }
        let seconds = clock.seconds
        try log.record("samples_per_second_sampling", Double(rewards.total.count) / (seconds["sampling"] ?? .nan))
        try log.record("samples_per_second_training", Double(usable.count * config.innerEpochs) / max(seconds["training"] ?? 0, 1e-9))
        for phase in EpochClock.phases { try log.record("seconds_\(phase)", seconds[phase] ?? 0) }
        try log.record("seconds", clock.total)
        return (mean(totals), byName)
    }
}
