import Distributed
import Engine

/// The loss and gradient norm of an epoch's updates, averaged.
struct UpdateStatistics {
    var loss = Double.nan
    var gradNorm = Double.nan

    /// `loss` and `grad_norm`, the two metrics every objective reports.
    var metrics: [String: Double] { ["loss": loss, "grad_norm": gradNorm] }
}

extension FineTuningTrainer {
    /// The sampling steps training may use: `trainStepRange`, or every step.
    var trainableSteps: [Int] { FineTuningTrainer.trainableSteps(config) }

    static func trainableSteps(_ config: FineTuningConfig) -> [Int] {
        Array(FineTuningConfig.halfOpenRange(config.trainStepRange) ?? 0 ..< config.sampling.steps)
    }

    /// How many of a sample's trainable steps one policy-gradient pass trains: `timestepFraction`
    /// of them, at least one.
    static func trainedStepsPerSample(_ config: FineTuningConfig) -> Int {
        max(1, Int((config.timestepFraction * Double(trainableSteps(config).count)).rounded()))
    }

    /// Clipped advantages of `rewards` as the config forms them: group-standardized or
    /// leave-one-out within each prompt group (`groups` names each sample's group), or from the
    /// per-prompt running statistics in `tracker`.
    func clippedAdvantages(rewards: [Double], prompts: [String], groups: [Int], tracker: inout PerPromptStatTracker) -> [Double] {
        let raw: [Double]
        switch config.advantages {
        case .perPrompt: raw = tracker.update(prompts: prompts, rewards: rewards)
        case .group: raw = groupAdvantages(rewards: rewards, groups: groups)
        case .leaveOneOut: raw = leaveOneOutAdvantages(rewards: rewards, groups: groups)
        }
        return clipAdvantages(raw, maximum: config.advantageClip)
    }

    /// One optimizer step on the accumulated gradients (clipped to `maxGradNorm`), then the
    /// gradients are cleared. A non-finite gradient norm skips the step: it is logged, counted in
    /// `skipped_updates`, and returns nil.
    func applyAccumulatedGradients() throws -> Double? {
        defer { for p in parameters { p.tensor.grad = nil } }
        try sumGradientsOverRanks()
        attemptedUpdates += 1
        let norm = gradientNorm(parameters)
        guard norm.isFinite else {
            skippedUpdates += 1
            try log.event(epoch: epoch, kind: "skipped", "non-finite gradient norm (\(norm)); update skipped")
            return nil
        }
        _ = try clipGradNorm(parameters, maxNorm: config.maxGradNorm)
        try optimizer.step()
        return norm
    }

    /// Inner epochs over `items` in shuffled batches of `trainBatch`, stepping the optimizer every
    /// `gradientAccumulation` batches and at the end. Each batch draws a random stream of its own
    /// from `rng`, the same on every rank. `backwardRows` sees the whole batch and the job's
    /// communicator; it draws what the batch needs (the same on every rank), runs the forward and
    /// backward of this rank's rows only (`ownRows(of:)`), scaled so that the ranks' gradients sum
    /// to the batch's, and returns those rows' mean loss and their share of the batch's rows (nil
    /// when it trained none). Returns the mean loss and the mean gradient norm of the updates.
    func trainInBatchRows<Item>(_ items: [Item], rng: inout RandomGenerator,
                                backwardRows: (_ batch: [Item], _ ranks: any Communicator, inout RandomGenerator) throws -> (loss: Double, share: Double)?) throws -> UpdateStatistics {
        var updates = 0, norms = 0.0
        // Σ share·loss and Σ share over the rows trained, summed over the ranks at the end.
        var figures = [0.0, 0.0]
        for _ in 0..<config.innerEpochs {
            var order = items
            order.shuffle(using: &rng)
            let batches = stride(from: 0, to: order.count, by: config.trainBatch).map { Array(order[$0 ..< min($0 + config.trainBatch, order.count)]) }
            for (b, batch) in batches.enumerated() {
                var batchRNG = RandomGenerator(seed: rng.next())
                if let trained = try backwardRows(batch, communicator, &batchRNG) {
                    figures[0] += trained.share * trained.loss
                    figures[1] += trained.share
                }
                if (b + 1) % config.gradientAccumulation == 0 || b == batches.count - 1, let norm = try applyAccumulatedGradients() {
                    norms += norm
                    updates += 1
                }
            }
        }
        figures = try sumOverRanks(figures)
        return UpdateStatistics(loss: figures[1] > 0 ? figures[0] / figures[1] : .nan, gradNorm: updates > 0 ? norms / Double(updates) : .nan)
    }

    /// `trainInBatchRows` for an objective whose batch items are its rows and that draws nothing per
    /// batch that its slice would change: `backwardSlice` runs the forward and backward of this
    /// rank's slice of a batch (its `ownRows`; the whole batch in one process) with its loss
    /// scaled by `share`, the slice's fraction of the batch, and returns the slice's mean loss, or
    /// nil when the slice was skipped.
    func trainInBatches<Item>(_ items: [Item], rng: inout RandomGenerator,
                              backwardSlice: (_ slice: [Item], _ share: Double, inout RandomGenerator) throws -> Double?) throws -> UpdateStatistics {
        try trainInBatchRows(items, rng: &rng) { batch, ranks, rng in
            let slice = ranks.ownRows(of: batch.count).map { batch[$0] }
            let share = Double(slice.count) / Double(batch.count)
            guard !slice.isEmpty, let loss = try backwardSlice(slice, share, &rng) else { return nil }
            return (loss, share)
        }
    }
}

