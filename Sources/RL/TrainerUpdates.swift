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
    /// `gradientAccumulation` batches and at the end. `backwardBatch` runs one batch's forward and
    /// backward (its loss scaled for the accumulation) and returns the loss to report, or nil when
    /// the batch was skipped. Returns the mean loss and the mean gradient norm of the updates.
    func trainInBatches<Item>(_ items: [Item], rng: inout RandomGenerator,
                              backwardBatch: ([Item], inout RandomGenerator) throws -> Double?) throws -> UpdateStatistics {
        var terms = 0, updates = 0, loss = 0.0, norms = 0.0
        for _ in 0..<config.innerEpochs {
            var order = items
            order.shuffle(using: &rng)
            let batches = stride(from: 0, to: order.count, by: config.trainBatch).map { Array(order[$0 ..< min($0 + config.trainBatch, order.count)]) }
            for (b, batch) in batches.enumerated() {
                if let value = try backwardBatch(batch, &rng) {
                    loss += value
                    terms += 1
                }
                if (b + 1) % config.gradientAccumulation == 0 || b == batches.count - 1, let norm = try applyAccumulatedGradients() {
                    norms += norm
                    updates += 1
                }
            }
        }
        return UpdateStatistics(loss: terms > 0 ? loss / Double(terms) : .nan, gradNorm: updates > 0 ? norms / Double(updates) : .nan)
    }
}
