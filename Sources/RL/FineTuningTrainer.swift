import Diffusion
import Distributed
import Engine
import Evaluation
import Foundation
import Images
import Layers
import Rewards
import RunLog
import World

/// One finished epoch, for progress lines and tests.
public struct EpochSummary {
    public var epoch: Int
    /// Mean weighted reward, and the mean of each computed perspective.
    public var reward: Double
    public var perspectives: [String: Double]
    public var kl: KLSummary?
    /// What the objective's update reported: `loss`, `grad_norm` and its own metrics.
    public var training: [String: Double]
    /// Sampling batches left out because a reward was not finite.
    public var skippedBatches: Int
    /// The gold evaluation after this epoch, when one ran.
    public var evaluation: GoldEvaluation.Report?
    public var seconds: Double
}

/// Reward fine-tuning of the latent diffusion model: every epoch samples prompts × images as
/// trajectories, scores them with a composition of reward perspectives, forms advantages, and
/// hands the epoch to the config's objective (`FineTuningObjective`: DDPO's PPO or REINFORCE,
/// advantage-weighted regression, online Diffusion-DPO, ReFL, filtered self-training) to update
/// the UNet (LoRA on attention by default); the KL drift to the frozen base model and a gold
/// evaluation on fixed prompts are tracked, and everything goes to one HDF5 log.
///
/// Every epoch draws its randomness from (seed, epoch) alone, and a checkpoint holds the trainable
/// weights, the optimizer, the reward statistics and the objective's state, so a resumed run
/// equals an uninterrupted one.
///
/// Data-parallel over the ranks of a `Communicator` (`mpirun -np N`): each rank samples the
/// sampling batches b with b mod N = its rank, each batch with a seed drawn for it from the epoch's
/// stream, and the trajectories are gathered, so every rank holds the epoch one process would
/// draw; scoring, advantages, the guard and the objective's choices are the same on every rank,
/// each training batch is split among the ranks and their gradients summed with one all-reduce
/// per optimizer step. Rank 0 writes the log, the checkpoints and the model.
public final class FineTuningTrainer {
    public let config: FineTuningConfig
    public let folder: RunFolder
    public var output: URL { folder.url }
    public let policy: LatentDiffusionModel
    let reference: LatentDiffusionModel
    let composer: RewardComposer
    /// The reward functions the composer draws on (ReFL differentiates some of them).
    let rewardFunctions: [any RewardFunction]
    /// The learned rewards among them that `rewardRefresh` re-trains.
    let refreshable: [any RefreshableReward]
    let gold = GoldJudgeReward()
    let objective: any FineTuningObjective
    let parameters: [(name: String, tensor: Tensor)]
    let optimizer: AdamW
    var tracker: PerPromptStatTracker
    /// The training prompts, and (after them in the log's prompt table) the evaluation prompts.
    public let promptPool: [String]
    public let evaluationPrompts: [Prompt]
    let log: RunLogWriter
    /// The processes of the run (one without `mpirun`).
    public let communicator: any Communicator
    /// Whether this process writes the run (rank 0).
    var writes: Bool { communicator.rank == 0 }
    /// The gradient all-reduces so far (none in one process).
    public internal(set) var allreduces = AllreduceTally()
    /// Epochs finished (and logged).
    public private(set) var epoch = 0
    /// What resuming had to repair or restore, for the caller to print.
    public private(set) var notes: [String] = []
    /// The overoptimization guard, its extra scorer, the weights of its best epoch, and whether it stopped the run.
    var overoptimizationGuard: OveroptimizationGuard
    let guardComposer: RewardComposer?
    var guardBest: [String: Tensor]?
    var stoppedByGuard = false

    static let goldColumns = ["alignment", "fidelity", "safety", "overall"]
    /// What `rewardRefresh` logs: the refresh's loss, and how often the reward agreed with the annotators before it.
    static let refreshMetrics = (loss: "reward_refresh_loss", agreement: "reward_refresh_agreement")
    static let evaluationScores = ["alignment", "alignment_partial", "fidelity", "safety", "overall"]

    /// Prepares a run in `output`: a new one (refusing an existing run unless `overwrite`), or with
    /// `resume` the continuation of the run there from its last checkpoint. `rewardFunctions`
    /// default to `builtInRewardFunctions`.
    public init(config: FineTuningConfig, output: URL, commandLine: String, overwrite: Bool = false, resume: Bool = false,
                rewardFunctions: [any RewardFunction] = builtInRewardFunctions, communicator: any Communicator = SingleProcess()) throws {
        try config.validate()
        self.config = config
        self.communicator = communicator
        Threads.set(config.threads)
        composer = try RewardComposer(composition: config.rewards, functions: rewardFunctions)
        self.rewardFunctions = rewardFunctions
        overoptimizationGuard = OveroptimizationGuard(settings: config.guard, beta: config.kl.beta)
        guardComposer = try FineTuningTrainer.guardComposer(config, functions: rewardFunctions)
        refreshable = refreshableRewards(rewardFunctions)
        if config.rewardRefresh.every > 0 && refreshable.isEmpty {
            throw FineTuningError("rewardRefresh re-trains a learned reward, but none is loaded (set rewardModel)")
        }
        objective = try FineTuningObjectives.make(config)
        try objective.prepare(rewardFunctions: rewardFunctions, composition: config.rewards)
        promptPool = try FineTuningTrainer.trainingPrompts(config)
        let modelFolder = URL(fileURLWithPath: config.model)
        policy = try LatentDiffusionModel.load(from: modelFolder)
        reference = try LatentDiffusionModel.load(from: modelFolder)
        parameters = try FineTuningTrainer.trainableParameters(config, policy: policy, reference: reference, objective: objective)
        optimizer = AdamW(parameters, learningRate: config.learningRate, weightDecay: config.weightDecay)
        tracker = PerPromptStatTracker(bufferSize: config.statBufferSize, minCount: config.statMinCount)
        evaluationPrompts = try FineTuningTrainer.evaluationPrompts(config.evaluation)

        folder = try RunFolder(output, start: RunStart(resume: resume, overwrite: overwrite, writes: communicator.rank == 0))
        let layout = RunLayout(metrics: FineTuningTrainer.metricSpecs(config, objective: objective),
                               sampleColumns: FineTuningTrainer.sampleColumnNames(config),
                               prompts: promptPool + evaluationPrompts.map(\.caption),
                               imageSize: [policy.config.imageSize, policy.config.imageSize])
        if resume {
            guard let checkpoint = folder.latestCheckpoint else { throw FineTuningError("\(output.path) has no checkpoint to resume from") }
            let state = try FineTuningTrainer.restore(from: checkpoint, in: folder, config: config, parameters: parameters, optimizer: optimizer,
                                                      objective: objective, refreshable: refreshable)
            tracker = state.tracker
            epoch = state.epoch
            if let saved = state.guardState {
                overoptimizationGuard = saved.guard
                optimizer.learningRate = saved.learningRate
                guardBest = saved.best
            }
            log = communicator.rank > 0 ? RunLogWriter(discarding: layout, url: folder.logURL, epochs: state.epoch)
                : try RunLogWriter(resuming: folder.logURL, keepingEpochs: state.epoch)
            notes = log.resumeNotes + ["resumed from \(checkpoint.lastPathComponent) after epoch \(state.epoch)"]
            try log.event(epoch: epoch, kind: "resume", "resumed from \(checkpoint.lastPathComponent) (\(state.epoch) epochs done)")
        } else if communicator.rank > 0 {
            log = RunLogWriter(discarding: layout, url: folder.logURL)
        } else {
            var info = RunInfo.current(config: ConfigLoader.json(config), seed: Int64(bitPattern: config.seed))
            info.commandLine = commandLine
            log = try RunLogWriter(url: folder.logURL, layout: layout, info: info, overwrite: overwrite)
            // The trained captions as a prompt file, for `eval --prompts DIR/prompts.txt`.
            try (promptPool.joined(separator: "\n") + "\n").write(to: folder.url.appendingPathComponent("prompts.txt"), atomically: true, encoding: .utf8)
            try log.event(epoch: 0, kind: "info", "\(config.objective): \(parameters.count) trainable tensors, \(parameterCount) parameters "
                          + "(\(config.trainedParametersDescription))")
            if communicator.size > 1 { try log.event(epoch: 0, kind: "info", "data-parallel over \(communicator.size) ranks") }
            if config.kl.every > 0 {
                try log.event(epoch: 0, kind: "info", "KL drift on " + (config.kl.samples == 0 ? "all samples" : "the first \(config.kl.samples) samples")
                              + " every \(config.kl.every) epochs")
            }
            if config.kl.beta > 0 {
                try log.event(epoch: 0, kind: "info", "β·KL penalty on every trained step, β = \(config.kl.beta)")
            }
            if config.guard.isActive {
                try log.event(epoch: 0, kind: "info", "overoptimization guard: \(config.guard.actions.joined(separator: ", "))"
                              + (config.guard.klBudget > 0 ? "; KL budget \(config.guard.klBudget)" : "")
                              + (config.guard.klGrowth > 0 ? "; KL growth limit \(config.guard.klGrowth) per epoch over \(config.guard.klGrowthSpan) epochs at KL ≥ \(config.guard.klGrowthFloor)" : "")
                              + (config.guard.proxy.isEmpty ? "" : "; watching \(config.guard.proxy) and \(config.guard.textNorm)"))
            }
        }
    }

    /// Freezes both models and attaches what trains to the policy: a timestep-gated LoRA, a plain
    /// LoRA on attention, or every UNet parameter (and, with `trainTextEncoder`, every text-encoder
    /// parameter, named "text.…").
    static func trainableParameters(_ config: FineTuningConfig, policy: LatentDiffusionModel, reference: LatentDiffusionModel,
                                    objective: any FineTuningObjective) throws -> [(name: String, tensor: Tensor)] {
        for model in [policy, reference] {
            model.vae.setTrainable(false)
            model.textEncoder.setTrainable(false)
            model.unet.setTrainable(false)
        }
        guard policy.config.unetAdapter == nil else {
            throw FineTuningError("\(config.model) has a timestep-gated UNet adapter; fine-tune from a model without one")
        }
        var initRNG = RandomGenerator(seed: config.seed ^ 0x10_2A)
        if let gate = FineTuningConfig.halfOpenRange(config.loraTimestepRange) {
            let scheduler = try DDIMScheduler(schedule: policy.schedule, stepCount: config.sampling.steps, eta: config.sampling.eta)
            try objective.checkTrainedTimesteps(inside: gate, samplingTimesteps: scheduler.timesteps, trainSteps: policy.schedule.trainSteps)
            let adapter = UNetAdapter(rank: config.loraRank, alpha: config.resolvedLoRAAlpha,
                                      timestepRange: [Double(gate.lowerBound), Double(gate.upperBound)])
            return try policy.attachUNetAdapter(adapter, using: &initRNG)
        }
        if config.loraRank > 0 {
            return try applyLoRA(to: policy.unet, rank: config.loraRank, alpha: config.resolvedLoRAAlpha, using: &initRNG)
        }
        policy.unet.setTrainable(true)
        policy.textEncoder.setTrainable(config.trainTextEncoder)
        return policy.unet.trainableParameters() + policy.textEncoder.trainableParameters(prefix: "text.")
    }

    // MARK: - Layout

    /// The trainer's own metrics, with the objective's after `loss` and `grad_norm`, each declared
    /// with the direction that is better and its kind (what `inspect` and `report` read).
    static func metricSpecs(_ config: FineTuningConfig, objective: any FineTuningObjective) -> [MetricSpec] {
        var specs = [MetricSpec("reward_mean", better: .higher, kind: .reward), MetricSpec("reward_std")]
        for name in config.rewards.active {
            // A learned reward's perspective (proxy_alignment, proxy_textnorm_alignment) beside the gold score it estimates.
            let head = name.hasPrefix("proxy_") ? String(name.dropFirst("proxy_".count)) : nil
            let base = head.map { $0.hasPrefix("textnorm_") ? String($0.dropFirst("textnorm_".count)) : $0 }
            if let base, goldColumns.contains(base) {
                specs.append(MetricSpec("reward_\(name)", better: .higher, kind: .proxy, gold: "gold_\(base)"))
            } else {
                specs.append(MetricSpec("reward_\(name)", better: .higher, kind: head == nil ? .reward : .proxy))
            }
        }
        specs += goldColumns.map { MetricSpec("gold_\($0)", better: .higher, kind: .gold) }
        specs += [MetricSpec("kl_mean", better: .lower, kind: .kl), MetricSpec("kl_max", better: .lower), MetricSpec("kl_sqrt", better: .lower)]
        specs += (0..<config.sampling.steps).map { MetricSpec(String(format: "kl_step_%02d", $0), better: .lower, kind: .klStep, step: $0) }
        specs += [MetricSpec("loss", better: .lower, kind: .loss), MetricSpec("grad_norm")] + objective.metricNames.map { MetricSpec($0) }
        specs += [MetricSpec("learning_rate"), MetricSpec("skipped_batches", better: .lower), MetricSpec("skipped_updates", better: .lower)]
        if config.guard.isActive { specs += guardMetrics.map { MetricSpec($0) } }
        if config.rewardRefresh.every > 0 {
            specs += [MetricSpec(refreshMetrics.loss, better: .lower), MetricSpec(refreshMetrics.agreement, better: .higher)]
        }
        for prefix in ["base_eval", "eval"] {
            specs += evaluationScores.map { MetricSpec("\(prefix)_\($0)", better: .higher, kind: .evaluation) }
            specs.append(MetricSpec("\(prefix)_alignment_se"))
        }
        specs += ["samples_per_second_sampling", "samples_per_second_training"].map { MetricSpec($0, better: .higher) }
        specs += EpochClock.phases.map { MetricSpec("seconds_\($0)", better: .lower) }
        specs.append(MetricSpec("seconds", better: .lower, kind: .duration))
        return specs
    }

    static func sampleColumnNames(_ config: FineTuningConfig) -> [String] {
        ["reward", "advantage", "kl"] + config.rewards.active.map { "reward_\($0)" } + goldColumns.map { "gold_\($0)" }
    }

    /// The distinct training prompts: drawn from a world split, or read from a text file.
    public static func trainingPrompts(_ config: FineTuningConfig) throws -> [String] {
        if let split = Split(rawValue: config.prompts) {
            var rng = RandomGenerator(seed: config.seed &+ 0x5EED)
            let world = WorldGenerator(seed: config.seed)
            var seen = Set<String>(), pool: [String] = []
            for _ in 0..<(config.promptPool * 50) where pool.count < config.promptPool {
                let caption = world.prompt(split, using: &rng).caption
                if seen.insert(caption).inserted { pool.append(caption) }
            }
            return pool
        }
        let url = URL(fileURLWithPath: config.prompts)
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw FineTuningError("prompts: '\(config.prompts)' is neither train, validation, heldout nor a readable text file")
        }
        var seen = Set<String>()
        let pool = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && seen.insert($0).inserted }
        guard !pool.isEmpty else { throw FineTuningError("prompt file \(url.path) has no prompts") }
        return pool
    }

    /// The fixed prompts of the gold evaluation: the first `prompts` of the prompt file, or of the split.
    static func evaluationPrompts(_ evaluation: TrainingEvaluation) throws -> [Prompt] {
        guard evaluation.prompts > 0 else { return [] }
        if !evaluation.promptFile.isEmpty {
            do { return try GoldEvaluation.prompts(file: evaluation.promptFile, count: evaluation.prompts) } catch {
                throw FineTuningError("evaluation.promptFile: \(error)")
            }
        }
        guard let split = Split(rawValue: evaluation.split) else { throw FineTuningError("unknown split \(evaluation.split)") }
        return GoldEvaluation.prompts(split: split, count: evaluation.prompts)
    }

    // MARK: - Running

    /// Runs the remaining epochs (up to `stopAfter` epochs in all, for tests), checkpointing as
    /// configured; after the last epoch writes the fine-tuned model to `output/model`.
    public func run(stopAfter: Int? = nil, progress: (String) -> Void = { _ in },
                    epochDone: (EpochSummary) -> Void = { _ in }) throws {
        if epoch == 0 { try evaluateBase(progress: progress) }
        let last = min(config.epochs, stopAfter ?? config.epochs)
        while epoch < last && !stoppedByGuard {
            // SIGINT or SIGTERM reach the ranks of a job at different moments: all stop before the same epoch.
            try StopSignal.agree(communicator.anyRank)
            try log.stopIfRequested("before epoch \(epoch)", epoch: epoch, hint: "resume with --resume")
            let summary = try runEpoch()
            epochDone(summary)
            progress(line(summary))
            if epoch % config.checkpointEvery == 0 || epoch == config.epochs || stoppedByGuard { try writeCheckpoint() }
        }
        if epoch == config.epochs || stoppedByGuard {
            try observeFinalWeights()
            try restoreGuardBest()
            try saveModel()
        }
    }

    /// Number of scalar parameters trained.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.tensor.count } }

    /// Closes the log (also done when the trainer is released).
    public func close() throws { try log.close() }

    /// The random stream of one epoch: a function of (seed, epoch) only, so resuming replays it.
    func epochRNG(_ epoch: Int) -> RandomGenerator {
        RandomGenerator(seed: config.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch + 1) &* 0xBF58_476D_1CE4_E5B9)
    }

    /// The objective's update on an epoch's samples. With LoRA no convolution kernel trains, so
    /// their transformed kernels are kept through all of the update's passes.
    func update(_ samples: EpochSamples, rng: inout RandomGenerator) throws -> [String: Double] {
        guard config.loraRank > 0 else { return try objective.train(samples, trainer: self, rng: &rng) }
        return try withFixedKernels { try objective.train(samples, trainer: self, rng: &rng) }
    }

    /// One epoch: sample → score → advantages → KL drift → the objective's update → evaluation → log.
    func runEpoch() throws -> EpochSummary {
        let clock = EpochClock()
        var rng = epochRNG(epoch)
        let seed = Int64(bitPattern: rng.next())
        let (groups, promptIndices, trajectories) = try clock.time("sampling") { try sampleEpoch(using: &rng) }
        let prompts = trajectories.prompts
        let rewards = try clock.time("scoring") { try sharedScores(composer, images: trajectories.images, prompts: prompts, indices: Array(prompts.indices)) }
        let (usable, skipped) = try usableSamples(rewards, finite: finiteTrajectories(trajectories))
        epochsWithoutSamples = usable.isEmpty ? epochsWithoutSamples + 1 : 0
        if epochsWithoutSamples >= FineTuningTrainer.maxEpochsWithoutSamples {
            try log.event(epoch: epoch, kind: "stopped", "no usable sample in \(epochsWithoutSamples) epochs in a row (non-finite rewards, latents or log-probabilities)")
            try log.close()
            throw FineTuningError("\(epochsWithoutSamples) epochs in a row had no usable sample (non-finite rewards, latents or log-probabilities); stopping (the log says which batches were skipped and why)")
        }
        let goldScores = try? gold.score(trajectories.images, prompts: prompts, perspectives: FineTuningTrainer.goldColumns)

        var advantages = [Double](repeating: .nan, count: prompts.count)
        if objective.usesAdvantages && !usable.isEmpty {
            let clipped = clippedAdvantages(rewards: usable.map { rewards.total[$0] }, prompts: usable.map { prompts[$0] },
                                            groups: usable.map { groups[$0] }, tracker: &tracker)
            for (i, a) in zip(usable, clipped) { advantages[i] = a }
        }
        let kl = try clock.time("kl") { () -> KLSummary? in
            guard config.kl.every > 0 && epoch % config.kl.every == 0 else { return nil }
            return try klDrift(trajectories, indices: klIndices(count: prompts.count))
        }
        if config.guard.isActive {
            try applyGuard(try guardSignals(rewards: rewards, images: trajectories.images, prompts: prompts, usable: usable, kl: kl))
        }
        // The learned reward re-trained on this epoch's images before the update, so that the
        // objective (ReFL's gradient) and the next epochs' scores see the refreshed reward.
        var refreshFigures: (loss: Double, agreementBefore: Double)?
        if config.rewardRefresh.every > 0 && (epoch + 1) % config.rewardRefresh.every == 0 {
            for reward in refreshable {
                refreshFigures = try reward.refresh(images: usable.map { trajectories.images[$0] }, prompts: usable.map { prompts[$0] },
                                                    groups: usable.map { groups[$0] }, settings: config.rewardRefresh, using: &rng)
            }
        }
        let samples = EpochSamples(trajectories: trajectories, groups: groups, promptIndices: promptIndices, usable: usable, rewards: rewards.total, advantages: advantages)
        var training = try clock.time("training") { () -> [String: Double] in
            // A guard that stops the run stops it before this epoch's update: its signals judged the weights as they are.
            guard !usable.isEmpty, !stoppedByGuard else { return ["loss": .nan, "grad_norm": .nan] }
            return try update(samples, rng: &rng)
        }
        training["skipped_updates"] = Double(skippedUpdates)
        if config.rewardRefresh.every > 0 {
            training[FineTuningTrainer.refreshMetrics.loss] = refreshFigures?.loss ?? .nan
            training[FineTuningTrainer.refreshMetrics.agreement] = refreshFigures?.agreementBefore ?? .nan
        }
        try noteUpdates(attempted: attemptedUpdates, skipped: skippedUpdates)
        skippedUpdates = 0
        attemptedUpdates = 0
        let evaluation = try clock.time("evaluation") { () -> GoldEvaluation.Report? in
            (epoch + 1) % config.evaluation.every == 0 || epoch + 1 == config.epochs ? try evaluate() : nil
        }
        if evaluation != nil && config.evaluation.keepModels { try writeModelSnapshot(epochsDone: epoch + 1) }

        let perspectives = try recordEpoch(rewards: rewards, usable: usable, skipped: skipped, gold: goldScores, kl: kl, training: training,
                                           evaluation: evaluation, clock: clock)
        var columns: [String: [Double]] = ["reward": rewards.total, "advantage": advantages]
        if let kl { columns["kl"] = (0..<prompts.count).map { $0 < kl.perSample.count ? kl.perSample[$0] : .nan } }
        for name in config.rewards.active { columns["reward_\(name)"] = rewards.perspectives[name] }
        for name in FineTuningTrainer.goldColumns { if let goldScores { columns["gold_\(name)"] = goldScores[name] } }
        try log.appendSamples(epoch: epoch, prompts: promptIndices, seeds: [Int64](repeating: seed, count: prompts.count), columns: columns)
        try log.endEpoch()
        epoch += 1
        return EpochSummary(epoch: epoch - 1, reward: perspectives.mean, perspectives: perspectives.byName, kl: kl, training: training,
                            skippedBatches: skipped, evaluation: evaluation, seconds: clock.total)
    }

    /// Updates skipped for a non-finite gradient norm since the last epoch's record.
    var skippedUpdates = 0
    /// Consecutive epochs in which no sample had a finite reward; at `maxEpochsWithoutSamples` the run stops.
    var epochsWithoutSamples = 0
    /// Optimizer steps tried since the last epoch's record (`skippedUpdates` of them skipped).
    var attemptedUpdates = 0
    /// Consecutive epochs whose every optimizer step had a non-finite gradient.
    var epochsWithoutUpdates = 0

    /// Counts an epoch whose updates were all skipped (some tried, none taken); after
    /// `maxEpochsWithoutSamples` such epochs in a row the run stops, logged, instead of sampling on
    /// with weights that no longer move.
    func noteUpdates(attempted: Int, skipped: Int) throws {
        epochsWithoutUpdates = attempted > 0 && skipped == attempted ? epochsWithoutUpdates + 1 : 0
        guard epochsWithoutUpdates >= FineTuningTrainer.maxEpochsWithoutSamples else { return }
        try log.event(epoch: epoch, kind: "stopped", "every update skipped in \(epochsWithoutUpdates) epochs in a row (non-finite gradients)")
        try log.close()
        throw FineTuningError("\(epochsWithoutUpdates) epochs in a row had every update skipped for a non-finite gradient; stopping "
                              + "(lower the learning rate, or look for a reward or loss that overflows)")
    }
    static let maxEpochsWithoutSamples = 3

    /// The samples whose rewards are all finite and whose trajectories are (`finite`); a sampling
    /// batch with either is left out whole, and logged with which it was.
    func usableSamples(_ rewards: ComposedRewards, finite: [Bool]? = nil) throws -> (usable: [Int], skippedBatches: Int) {
        var usable: [Int] = [], skipped = 0
        for start in stride(from: 0, to: rewards.total.count, by: config.samplingBatch) {
            let members = Array(start ..< min(start + config.samplingBatch, rewards.total.count))
            let diverged = finite.map { flags in members.filter { !flags[$0] } } ?? []
            let bad = members.filter { i in !rewards.total[i].isFinite || rewards.perspectives.values.contains { !$0[i].isFinite } }
            if let first = diverged.first {
                skipped += 1
                try log.event(epoch: epoch, kind: "skipped",
                              "sampling batch at \(start) has a non-finite latent or log-probability (sample \(first)); not trained on")
            } else if let first = bad.first {
                skipped += 1
                try log.event(epoch: epoch, kind: "skipped", "sampling batch at \(start) has a non-finite reward (sample \(first)); not trained on")
            } else {
                usable += members
            }
        }
        return (usable, skipped)
    }

    /// Whether each sample's trajectory is finite: its final latent and every step's
    /// log-probability. A NaN in the sampler shows there, where it appears — decoded, it would
    /// only be black pixels with a finite reward.
    func finiteTrajectories(_ trajectories: Trajectories) -> [Bool] {
        var finite = [Bool](repeating: true, count: trajectories.count)
        if let last = trajectories.latents.last, trajectories.count > 0 {
            let values = last.values, width = values.count / trajectories.count
            for i in 0..<trajectories.count where !values[i * width ..< (i + 1) * width].allSatisfy(\.isFinite) { finite[i] = false }
        }
        for logProb in trajectories.logProbs {
            for (i, value) in logProb.values.enumerated() where i < finite.count && !value.isFinite { finite[i] = false }
        }
        return finite
    }

    /// The progress line of an epoch.
    func line(_ s: EpochSummary) -> String {
        var text = String(format: "epoch %d/%d  reward %.4f", s.epoch + 1, config.epochs, s.reward)
        for (name, value) in s.perspectives.sorted(by: { $0.key < $1.key }) { text += String(format: "  %@ %.4f", name, value) }
        if let kl = s.kl { text += String(format: "  KL %.3g (√ %.3g)", kl.mean, kl.rootMean) }
        text += "  " + objective.progressText(s.training)
        if let loss = s.training[FineTuningTrainer.refreshMetrics.loss], loss.isFinite {
            text += String(format: "  reward refresh: loss %.3f, agreed %.2f", loss, s.training[FineTuningTrainer.refreshMetrics.agreement] ?? .nan)
        }
        if s.skippedBatches > 0 { text += "  skipped \(s.skippedBatches) batches" }
        if let skipped = s.training["skipped_updates"], skipped > 0 { text += "  skipped \(Int(skipped)) updates" }
        if let e = s.evaluation {
            text += String(format: "  eval alignment %.3f ± %.3f", e.scores["alignment"]!.mean, e.scores["alignment"]!.standardError)
        }
        return text + String(format: "  %.1f s", s.seconds)
    }
}

/// Wall-clock seconds of an epoch's phases.
final class EpochClock {
    /// The phases an epoch times, each logged as `seconds_<phase>`.
    static let phases = ["sampling", "scoring", "training", "kl", "evaluation"]
    let start = Date()
    private(set) var seconds: [String: Double] = [:]

    func time<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        let begin = Date()
        defer { seconds[phase, default: 0] += Date().timeIntervalSince(begin) }
        return try body()
    }

    var total: Double { Date().timeIntervalSince(start) }
}
