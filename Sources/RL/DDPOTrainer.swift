import Diffusion
import Engine
import Evaluation
import Foundation
import Images
import Layers
import Rewards
import RunLog
import World

/// One finished epoch, for progress lines and tests.
public struct DDPOEpochSummary {
    public var epoch: Int
    /// Mean weighted reward, and the mean of each computed perspective.
    public var reward: Double
    public var perspectives: [String: Double]
    public var kl: KLSummary?
    public var loss: Double
    public var clipFraction: Double
    public var approxKL: Double
    public var gradNorm: Double
    /// Advantage-weighted regression's effective sample size (Kish), Diffusion-DPO's pair count;
    /// the trained count otherwise.
    public var effectiveSamples: Double
    /// Diffusion-DPO: share of pairs the policy's implicit reward orders as the rewards do.
    public var preferenceAccuracy: Double
    public var skippedBatches: Int
    /// The gold evaluation after this epoch, when one ran.
    public var evaluation: GoldEvaluation.Report?
    public var seconds: Double
}

/// DDPO (Black et al. 2023) on the latent diffusion model: sampling epochs recorded as
/// trajectories, rewards from a composition of perspectives, per-prompt or group advantages,
/// PPO-clip or REINFORCE updates of the UNet (LoRA on attention by default) — or, from the same
/// sampling epochs, advantage-weighted regression, online Diffusion-DPO or ReFL — KL drift to the
/// frozen base model, and a gold evaluation on fixed prompts, all logged to one HDF5 file.
///
/// Every epoch draws its randomness from (seed, epoch) alone, and a checkpoint holds the trainable
/// weights, the optimizer and the reward statistics, so a resumed run equals an uninterrupted one.
public final class DDPOTrainer {
    public let config: DDPOConfig
    public let output: URL
    public let policy: LatentDiffusionModel
    let reference: LatentDiffusionModel
    let composer: RewardComposer
    /// The reward functions the composer draws on (ReFL differentiates some of them).
    let rewardFunctions: [any RewardFunction]
    let gold = GoldJudgeReward()
    let parameters: [(name: String, tensor: Tensor)]
    let optimizer: AdamW
    var tracker: PerPromptStatTracker
    /// The training prompts, and (after them in the log's prompt table) the evaluation prompts.
    public let promptPool: [String]
    public let evaluationPrompts: [Prompt]
    let log: RunLogWriter
    /// Epochs finished (and logged).
    public private(set) var epoch = 0
    /// What resuming had to repair or restore, for the caller to print.
    public private(set) var notes: [String] = []

    static let goldColumns = ["alignment", "fidelity", "safety", "overall"]
    static let evaluationScores = ["alignment", "alignment_partial", "fidelity", "safety", "overall"]

    /// Prepares a run in `output`: a new one (refusing an existing run unless `overwrite`), or with
    /// `resume` the continuation of the run there from its last checkpoint. `rewardFunctions`
    /// default to `builtInRewardFunctions`.
    public init(config: DDPOConfig, output: URL, commandLine: String, overwrite: Bool = false, resume: Bool = false,
                rewardFunctions: [any RewardFunction] = builtInRewardFunctions) throws {
        try config.validate()
        self.config = config
        self.output = output
        Threads.set(config.threads)
        composer = try RewardComposer(composition: config.rewards, functions: rewardFunctions)
        self.rewardFunctions = rewardFunctions
        if config.loss == .refl { _ = try differentiableSources(config.rewards, functions: rewardFunctions) }
        promptPool = try DDPOTrainer.trainingPrompts(config)
        let modelFolder = URL(fileURLWithPath: config.model)
        policy = try LatentDiffusionModel.load(from: modelFolder)
        reference = try LatentDiffusionModel.load(from: modelFolder)
        for model in [policy, reference] {
            model.vae.setTrainable(false)
            model.textEncoder.setTrainable(false)
            model.unet.setTrainable(false)
        }
        var initRNG = RandomGenerator(seed: config.seed ^ 0x10_2A)
        guard policy.config.unetAdapter == nil else {
            throw DDPOError("\(config.model) has a timestep-gated UNet adapter; fine-tune from a model without one")
        }
        if let gate = DDPOConfig.halfOpenRange(config.loraTimestepRange) {
            let scheduler = try DDIMScheduler(schedule: policy.schedule, stepCount: config.sampling.steps, eta: config.sampling.eta)
            try DDPOTrainer.checkTrainedTimesteps(config, inside: gate, samplingTimesteps: scheduler.timesteps,
                                                  trainSteps: policy.schedule.trainSteps)
            let adapter = UNetAdapter(rank: config.loraRank, alpha: config.resolvedLoRAAlpha,
                                      timestepRange: [Double(gate.lowerBound), Double(gate.upperBound)])
            parameters = try policy.attachUNetAdapter(adapter, using: &initRNG)
        } else if config.loraRank > 0 {
            parameters = try applyLoRA(to: policy.unet, rank: config.loraRank, alpha: config.resolvedLoRAAlpha, using: &initRNG)
        } else {
            policy.unet.setTrainable(true)
            parameters = policy.unet.trainableParameters()
        }
        optimizer = AdamW(parameters, learningRate: config.learningRate, weightDecay: config.weightDecay)
        tracker = PerPromptStatTracker(bufferSize: config.statBufferSize, minCount: config.statMinCount)
        guard let split = Split(rawValue: config.evaluation.split) else { throw DDPOError("unknown split \(config.evaluation.split)") }
        evaluationPrompts = GoldEvaluation.prompts(split: split, count: config.evaluation.prompts)

        let logURL = output.appendingPathComponent("run.h5")
        if resume {
            guard let checkpoint = DDPOTrainer.latestCheckpoint(in: output) else {
                throw DDPOError("\(output.path) has no checkpoint to resume from")
            }
            let state = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: checkpoint.appendingPathComponent("state.json")))
            guard state.config == config else {
                throw DDPOError("the config differs from the one \(output.path) was started with; resume with the same config")
            }
            let weights = try Safetensors.read(checkpoint.appendingPathComponent("trainable.safetensors")).tensors
            let byName = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.tensor) })
            guard Set(weights.keys) == Set(byName.keys) else { throw DDPOError("checkpoint \(checkpoint.path) holds other tensors than the model trains") }
            for (name, tensor) in weights { byName[name]!.assign(tensor) }
            try optimizer.loadState(Safetensors.read(checkpoint.appendingPathComponent("optimizer.safetensors")).tensors)
            tracker = state.tracker
            epoch = state.epoch
            log = try RunLogWriter(resuming: logURL, keepingEpochs: state.epoch)
            notes = log.resumeNotes + ["resumed from \(checkpoint.lastPathComponent) after epoch \(state.epoch)"]
            try log.event(epoch: epoch, kind: "resume", "resumed from \(checkpoint.lastPathComponent) (\(state.epoch) epochs done)")
        } else {
            if FileManager.default.fileExists(atPath: logURL.path) && !overwrite {
                throw DDPOError("\(output.path) already holds a run; pass --resume to continue it or --force to start over")
            }
            if overwrite { try? FileManager.default.removeItem(at: output.appendingPathComponent("checkpoints")) }
            try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
            var info = RunInfo.current(config: ConfigLoader.json(config), seed: Int64(bitPattern: config.seed))
            info.commandLine = commandLine
            let layout = RunLayout(metrics: DDPOTrainer.metricNames(config), sampleColumns: DDPOTrainer.sampleColumnNames(config),
                                   prompts: promptPool + evaluationPrompts.map(\.caption),
                                   imageSize: [policy.config.imageSize, policy.config.imageSize])
            log = try RunLogWriter(url: logURL, layout: layout, info: info, overwrite: overwrite)
            try log.event(epoch: 0, kind: "info", "\(parameters.count) trainable tensors, \(parameterCount) parameters (\(config.trainedParametersDescription))")
            if config.kl.every > 0 {
                try log.event(epoch: 0, kind: "info", "KL drift on " + (config.kl.samples == 0 ? "all samples" : "the first \(config.kl.samples) samples")
                              + " every \(config.kl.every) epochs")
            }
            if config.kl.beta > 0 {
                try log.event(epoch: 0, kind: "info", "β·KL penalty on every trained step, β = \(config.kl.beta)")
            }
        }
    }

    // MARK: - Layout

    static func metricNames(_ config: DDPOConfig) -> [String] {
        var names = ["reward_mean", "reward_std"] + config.rewards.active.map { "reward_\($0)" }
        names += goldColumns.map { "gold_\($0)" }
        names += ["kl_mean", "kl_max", "kl_sqrt"] + (0..<config.sampling.steps).map { String(format: "kl_step_%02d", $0) }
        names += ["loss", "clip_fraction", "approx_kl", "ratio_mean", "grad_norm", "learning_rate", "skipped_batches", "effective_samples", "preference_accuracy"]
        for prefix in ["base_eval", "eval"] {
            names += evaluationScores.map { "\(prefix)_\($0)" } + ["\(prefix)_alignment_se"]
        }
        names += ["samples_per_second_sampling", "samples_per_second_training", "seconds_sampling", "seconds_training",
                  "seconds_kl", "seconds_evaluation", "seconds"]
        return names
    }

    static func sampleColumnNames(_ config: DDPOConfig) -> [String] {
        ["reward", "advantage", "kl"] + config.rewards.active.map { "reward_\($0)" } + goldColumns.map { "gold_\($0)" }
    }

    /// The distinct training prompts: drawn from a world split, or read from a text file.
    static func trainingPrompts(_ config: DDPOConfig) throws -> [String] {
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
            throw DDPOError("prompts: '\(config.prompts)' is neither train, validation, heldout nor a readable text file")
        }
        var seen = Set<String>()
        let pool = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && seen.insert($0).inserted }
        guard !pool.isEmpty else { throw DDPOError("prompt file \(url.path) has no prompts") }
        return pool
    }

    // MARK: - Running

    /// Runs the remaining epochs (up to `stopAfter` epochs in all, for tests), checkpointing as
    /// configured; after the last epoch writes the fine-tuned model to `output/model`.
    public func run(stopAfter: Int? = nil, progress: (String) -> Void = { _ in },
                    epochDone: (DDPOEpochSummary) -> Void = { _ in }) throws {
        if epoch == 0 {
            let report = try evaluate()
            for name in DDPOTrainer.evaluationScores { try log.record("base_eval_\(name)", report?.scores[name]?.mean ?? .nan) }
            try log.record("base_eval_alignment_se", report?.scores["alignment"]?.standardError ?? .nan)
            if let report { progress(String(format: "before training: gold alignment %.3f ± %.3f on %d %@ prompts × %d",
                                            report.scores["alignment"]!.mean, report.scores["alignment"]!.standardError,
                                            report.prompts, report.split, report.imagesPerPrompt)) }
        }
        let last = min(config.epochs, stopAfter ?? config.epochs)
        while epoch < last {
            try checkStop()
            let summary = try runEpoch()
            epochDone(summary)
            progress(DDPOTrainer.line(summary, of: config.epochs, loss: config.loss))
            if epoch % config.checkpointEvery == 0 || epoch == config.epochs { try writeCheckpoint() }
        }
        if epoch == config.epochs {
            // A timestep-gated adapter stays apart from the base weights (`unet_lora.safetensors`).
            if policy.config.unetAdapter == nil { try mergeAndRemoveLoRA(from: policy.unet) }
            try policy.save(to: output.appendingPathComponent("model"))
            let unet = output.appendingPathComponent("model/unet.safetensors")
            try log.checkpoint(epoch: epoch, path: "model/unet.safetensors", sha256: SHA256.hex(fileAt: unet))
            if policy.config.unetAdapter != nil {
                let adapter = output.appendingPathComponent("model/unet_lora.safetensors")
                try log.checkpoint(epoch: epoch, path: "model/unet_lora.safetensors", sha256: SHA256.hex(fileAt: adapter))
            }
            try log.event(epoch: epoch, kind: "done", "wrote the fine-tuned model to model/")
            try log.flush()
        }
    }

    /// Number of scalar parameters trained.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.tensor.count } }

    /// Closes the log (also done when the trainer is released).
    public func close() throws { try log.close() }

    static func line(_ s: DDPOEpochSummary, of epochs: Int, loss: PolicyLoss) -> String {
        var text = String(format: "epoch %d/%d  reward %.4f", s.epoch + 1, epochs, s.reward)
        for (name, value) in s.perspectives.sorted(by: { $0.key < $1.key }) { text += String(format: "  %@ %.4f", name, value) }
        if let kl = s.kl { text += String(format: "  KL %.3g (√ %.3g)", kl.mean, kl.rootMean) }
        switch loss {
        case .ppo, .reinforce:
            text += String(format: "  loss %.4g  clip %.3f  approx-KL %.3g  |g| %.3g", s.loss, s.clipFraction, s.approxKL, s.gradNorm)
        case .advantageWeighted:
            text += String(format: "  loss %.4g  ESS %.1f  |g| %.3g", s.loss, s.effectiveSamples, s.gradNorm)
        case .refl:
            text += String(format: "  loss %.4g  |g| %.3g", s.loss, s.gradNorm)
        case .diffusionDPO:
            text += String(format: "  loss %.4g  pairs %.0f  pair accuracy %.3f  |g| %.3g", s.loss, s.effectiveSamples, s.preferenceAccuracy, s.gradNorm)
        }
        if s.skippedBatches > 0 { text += "  skipped \(s.skippedBatches) batches" }
        if let e = s.evaluation {
            text += String(format: "  eval alignment %.3f ± %.3f", e.scores["alignment"]!.mean, e.scores["alignment"]!.standardError)
        }
        return text + String(format: "  %.1f s", s.seconds)
    }

    private func checkStop() throws {
        try log.stopIfRequested("before epoch \(epoch)", epoch: epoch, hint: "resume with --resume")
    }

    /// The random stream of one epoch: a function of (seed, epoch) only, so resuming replays it.
    func epochRNG(_ epoch: Int) -> RandomGenerator {
        RandomGenerator(seed: config.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch + 1) &* 0xBF58_476D_1CE4_E5B9)
    }

    func runEpoch() throws -> DDPOEpochSummary {
        let epochStart = Date()
        var rng = epochRNG(epoch)
        let seed = Int64(bitPattern: rng.next())
        // 1. Sampling: prompts × images, in batches, as trajectories.
        let samplingStart = Date()
        let (promptIndices, trajectories) = try sampleEpoch(using: &rng)
        let prompts = trajectories.prompts
        let samplingSeconds = Date().timeIntervalSince(samplingStart)

        // 2. Rewards; a batch with a non-finite reward is skipped whole.
        let rewards = try composer.score(trajectories.images, prompts: prompts)
        var usable: [Int] = [], skipped = 0
        for start in stride(from: 0, to: prompts.count, by: config.samplingBatch) {
            let members = Array(start ..< min(start + config.samplingBatch, prompts.count))
            let bad = members.filter { i in !rewards.total[i].isFinite || rewards.perspectives.values.contains { !$0[i].isFinite } }
            if bad.isEmpty { usable += members } else {
                skipped += 1
                try log.event(epoch: epoch, kind: "skipped", "sampling batch at \(start) has a non-finite reward (sample \(bad[0])); not trained on")
            }
        }
        let goldScores = try? gold.score(trajectories.images, prompts: prompts, perspectives: DDPOTrainer.goldColumns)

        // 3. Advantages over the usable samples.
        var advantages = [Double](repeating: .nan, count: prompts.count)
        if !usable.isEmpty {
            let clipped = clippedAdvantages(rewards: usable.map { rewards.total[$0] }, prompts: usable.map { prompts[$0] },
                                        groups: usable.map { promptIndices[$0] }, tracker: &tracker)
            for (i, a) in zip(usable, clipped) { advantages[i] = a }
        }

        // 4. KL drift to the reference on a subset.
        let klStart = Date()
        var kl: KLSummary?
        if config.kl.every > 0 && epoch % config.kl.every == 0 {
            let subset = Array(0 ..< (config.kl.samples == 0 ? prompts.count : min(config.kl.samples, prompts.count)))
            kl = try klDrift(trajectories, indices: subset)
        }
        let klSeconds = Date().timeIntervalSince(klStart)

        // 5. Training.
        let trainingStart = Date()
        let training: TrainingFigures
        switch config.loss {
        case .ppo, .reinforce: training = try train(trajectories, indices: usable, advantages: advantages, rng: &rng)
        case .advantageWeighted: training = try trainAdvantageWeighted(trajectories, indices: usable, advantages: advantages, rng: &rng)
        case .diffusionDPO:
            training = try trainDiffusionDPO(trajectories, indices: usable, rewards: rewards.total, groups: promptIndices, rng: &rng)
        case .refl: training = try trainReFL(trajectories, indices: usable, rng: &rng)
        }
        let trainingSeconds = Date().timeIntervalSince(trainingStart)

        // 6. Evaluation after this epoch's update.
        let evaluationStart = Date()
        var evaluation: GoldEvaluation.Report?
        if (epoch + 1) % config.evaluation.every == 0 || epoch + 1 == config.epochs {
            evaluation = try evaluate()
        }
        let evaluationSeconds = Date().timeIntervalSince(evaluationStart)

        // 7. The log.
        func mean(_ values: [Double]) -> Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }
        let usableTotals = usable.map { rewards.total[$0] }
        let rewardMean = mean(usableTotals)
        try log.record("reward_mean", rewardMean)
        try log.record("reward_std", meanAndStd(usableTotals).std)
        var perspectiveMeans: [String: Double] = [:]
        for name in config.rewards.active {
            perspectiveMeans[name] = mean(usable.map { rewards.perspectives[name]![$0] })
            try log.record("reward_\(name)", perspectiveMeans[name]!)
        }
        for name in DDPOTrainer.goldColumns { try log.record("gold_\(name)", goldScores.map { mean($0[name]!) } ?? .nan) }
        if let kl {
            try log.record("kl_mean", kl.mean)
            try log.record("kl_max", kl.max)
            try log.record("kl_sqrt", kl.rootMean)
            for (s, value) in kl.byStep.enumerated() { try log.record(String(format: "kl_step_%02d", s), value) }
        }
        try log.record("loss", training.loss)
        try log.record("clip_fraction", training.clipFraction)
        try log.record("approx_kl", training.approxKL)
        try log.record("ratio_mean", training.ratio)
        try log.record("grad_norm", training.gradNorm)
        try log.record("learning_rate", optimizer.learningRate)
        try log.record("skipped_batches", Double(skipped))
        try log.record("effective_samples", training.effectiveSamples)
        try log.record("preference_accuracy", training.preferenceAccuracy)
        if let evaluation {
            for name in DDPOTrainer.evaluationScores { try log.record("eval_\(name)", evaluation.scores[name]?.mean ?? .nan) }
            try log.record("eval_alignment_se", evaluation.scores["alignment"]?.standardError ?? .nan)
        }
        try log.record("samples_per_second_sampling", Double(prompts.count) / samplingSeconds)
        try log.record("samples_per_second_training", Double(usable.count * config.innerEpochs) / max(trainingSeconds, 1e-9))
        try log.record("seconds_sampling", samplingSeconds)
        try log.record("seconds_training", trainingSeconds)
        try log.record("seconds_kl", klSeconds)
        try log.record("seconds_evaluation", evaluationSeconds)
        let seconds = Date().timeIntervalSince(epochStart)
        try log.record("seconds", seconds)
        var columns: [String: [Double]] = ["reward": rewards.total, "advantage": advantages]
        if let kl { columns["kl"] = (0..<prompts.count).map { $0 < kl.perSample.count ? kl.perSample[$0] : .nan } }
        for name in config.rewards.active { columns["reward_\(name)"] = rewards.perspectives[name] }
        for name in DDPOTrainer.goldColumns { if let goldScores { columns["gold_\(name)"] = goldScores[name] } }
        try log.appendSamples(epoch: epoch, prompts: promptIndices, seeds: [Int64](repeating: seed, count: prompts.count), columns: columns)
        try log.endEpoch()
        epoch += 1
        return DDPOEpochSummary(epoch: epoch - 1, reward: rewardMean, perspectives: perspectiveMeans, kl: kl, loss: training.loss,
                                clipFraction: training.clipFraction, approxKL: training.approxKL, gradNorm: training.gradNorm,
                                effectiveSamples: training.effectiveSamples, preferenceAccuracy: training.preferenceAccuracy, skippedBatches: skipped, evaluation: evaluation, seconds: seconds)
    }

    /// With a timestep-gated LoRA, every timestep the loss trains must be one the adapter acts
    /// on, or its gradient would be zero: the trained sampling steps for the policy gradient, the
    /// drawn timestep range for the regression losses. ReFL differentiates through every step
    /// and needs no check.
    static func checkTrainedTimesteps(_ config: DDPOConfig, inside gate: Range<Int>, samplingTimesteps timesteps: [Int],
                                      trainSteps: Int) throws {
        switch config.loss {
        case .ppo, .reinforce:
            if let step = trainableSteps(config).first(where: { !gate.contains(timesteps[$0]) }) {
                throw DDPOError("step \(step) (t = \(timesteps[step])) is trained but outside loraTimestepRange \(config.loraTimestepRange); "
                                + "narrow trainStepRange or widen loraTimestepRange")
            }
        case .advantageWeighted, .diffusionDPO:
            let (name, pair) = config.loss == .diffusionDPO ? ("diffusionDPO", config.diffusionDPO.timestepRange)
                                                            : ("advantageWeighted", config.advantageWeighted.timestepRange)
            let drawn = DDPOConfig.halfOpenRange(pair) ?? 0 ..< trainSteps
            guard drawn.lowerBound >= gate.lowerBound && drawn.upperBound <= gate.upperBound else {
                throw DDPOError("\(name).timestepRange \(pair.isEmpty ? "(all)" : "\(pair)") must lie inside loraTimestepRange \(config.loraTimestepRange)")
            }
        case .refl:
            break
        }
    }

    /// The sampling steps training may use: `trainStepRange`, or every step.
    var trainableSteps: [Int] { DDPOTrainer.trainableSteps(config) }

    static func trainableSteps(_ config: DDPOConfig) -> [Int] {
        Array(DDPOConfig.halfOpenRange(config.trainStepRange) ?? 0 ..< config.sampling.steps)
    }

    /// How many of a sample's trainable steps one policy-gradient pass trains: `timestepFraction`
    /// of them, at least one.
    static func trainedStepsPerSample(_ config: DDPOConfig) -> Int {
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

    /// The epoch's prompts (indices into the pool, each repeated `imagesPerPrompt` times) and
    /// their trajectories, sampled in batches.
    func sampleEpoch(using rng: inout RandomGenerator) throws -> (promptIndices: [Int], trajectories: Trajectories) {
        var chosen = promptPool.indices.map { $0 }
        chosen.shuffle(using: &rng)
        let promptIndices = (0..<config.promptsPerEpoch).flatMap { i in
            [Int](repeating: chosen[i % chosen.count], count: config.imagesPerPrompt)
        }
        let prompts = promptIndices.map { promptPool[$0] }
        var parts: [Trajectories] = []
        // One standard normal latent per group of `size` consecutive images; with `antithetic`,
        // every second image of a group gets its negative.
        func noise(perGroupOf size: Int, antithetic: Bool) throws -> Tensor {
            let one = [policy.config.vae.latentChannels, policy.latentSize, policy.latentSize]
            let z = try Tensor.randn([(prompts.count + size - 1) / size] + one, using: &rng)
                .indexSelect(axis: 0, (0..<prompts.count).map { $0 / size })
            guard antithetic else { return z }
            return try z * Tensor((0..<prompts.count).map { $0 % 2 == 0 ? 1 : -1 }, shape: [prompts.count, 1, 1, 1])
        }
        func perPromptNoise() throws -> Tensor { try noise(perGroupOf: config.imagesPerPrompt, antithetic: false) }
        func perSampleNoise() throws -> Tensor? { config.antitheticNoise ? try noise(perGroupOf: 2, antithetic: true) : nil }
        // x_T when the config shares it, then z for each step in `sharedNoiseStepRange`; the
        // other noise is the sampler's own draw, or antithetic pairs.
        let initialLatents = config.shareInitialNoise ? try perPromptNoise() : try perSampleNoise()
        var stepNoise: [Int: Tensor] = [:]
        for step in 0..<config.sampling.steps {
            let shared = DDPOConfig.halfOpenRange(config.sharedNoiseStepRange)?.contains(step) ?? false
            stepNoise[step] = shared ? try perPromptNoise() : try perSampleNoise()
        }
        for start in stride(from: 0, to: prompts.count, by: config.samplingBatch) {
            let range = start ..< min(start + config.samplingBatch, prompts.count)
            let initial = try initialLatents.map { try $0.indexSelect(axis: 0, Array(range)) }
            parts.append(try policy.sampleTrajectories(Array(prompts[range]), settings: config.sampling, initialLatents: initial,
                                                       stepNoise: { step in try stepNoise[step]?.indexSelect(axis: 0, Array(range)) },
                                                       using: &rng))
        }
        return (promptIndices, try Trajectories.concatenated(parts))
    }

    /// Per-step KL between the policy's and the reference's Gaussians on the stored trajectories.
    /// Both means are recomputed with the same batches, so identical models give exactly 0.
    func klDrift(_ trajectories: Trajectories, indices: [Int]) throws -> KLSummary {
        var perStep = [[Double]](repeating: [], count: trajectories.stepCount)
        try withNoGrad {
            for start in stride(from: 0, to: indices.count, by: config.samplingBatch) {
                let batch = Array(indices[start ..< min(start + config.samplingBatch, indices.count)])
                let captions = batch.map { trajectories.prompts[$0] }
                let context = try policy.encodeText(captions), empty = try policy.encodeText(captions.map { _ in "" })
                for s in 0..<trajectories.stepCount {
                    let mine = try policy.stepLogProb(trajectories, step: s, indices: batch, context: context, empty: empty, settings: config.sampling)
                    let theirs = try reference.stepLogProb(trajectories, step: s, indices: batch, context: context, empty: empty,
                                                           settings: config.sampling)
                    perStep[s] += try stepKL(mean: mine.mean, referenceMean: theirs.mean, sigma: mine.sigma).values
                }
            }
        }
        return KLSummary(perStep: perStep)
    }

    /// What an epoch's update reports; a figure the objective does not have stays NaN.
    struct TrainingFigures {
        var loss = Double.nan, clipFraction = Double.nan, approxKL = Double.nan, ratio = Double.nan
        /// Summed by `applyAccumulatedGradients`, then averaged over the updates.
        var gradNorm = 0.0
        /// Advantage-weighted regression's effective sample size (Kish), Diffusion-DPO's pair count;
        /// the usable count otherwise.
        var effectiveSamples = Double.nan
        /// Diffusion-DPO: share of pairs the policy's implicit reward orders as the rewards do.
        var preferenceAccuracy = Double.nan
    }

    /// One optimizer step on the accumulated gradients (clipped to `maxGradNorm`; a non-finite norm
    /// skips the step and is logged), then the gradients are cleared.
    func applyAccumulatedGradients(_ figures: inout TrainingFigures, updates: inout Int) throws {
        let norm = try clipGradNorm(parameters, maxNorm: config.maxGradNorm)
        if norm.isFinite {
            try optimizer.step()
            figures.gradNorm += norm
            updates += 1
        } else {
            try log.event(epoch: epoch, kind: "skipped", "non-finite gradient norm; update skipped")
        }
        for p in parameters { p.tensor.grad = nil }
    }

    /// Inner epochs over `items` in shuffled batches of `trainBatch`, stepping the optimizer every
    /// `gradientAccumulation` batches and at the end. `backwardBatch` runs one batch's forward and
    /// backward (its loss scaled for the accumulation) and returns the loss to report, or nil when
    /// the batch was skipped. Fills in the mean loss and gradient norm.
    func trainInBatches<Item>(_ items: [Item], figures: inout TrainingFigures, rng: inout RandomGenerator,
                              backwardBatch: ([Item], inout RandomGenerator) throws -> Double?) throws {
        var terms = 0, updates = 0, loss = 0.0
        for _ in 0..<config.innerEpochs {
            var order = items
            order.shuffle(using: &rng)
            let batches = stride(from: 0, to: order.count, by: config.trainBatch).map { Array(order[$0 ..< min($0 + config.trainBatch, order.count)]) }
            for (b, batch) in batches.enumerated() {
                if let value = try backwardBatch(batch, &rng) {
                    loss += value
                    terms += 1
                }
                if (b + 1) % config.gradientAccumulation == 0 || b == batches.count - 1 {
                    try applyAccumulatedGradients(&figures, updates: &updates)
                }
            }
        }
        figures.loss = loss / Double(max(terms, 1))
        figures.gradNorm = updates > 0 ? figures.gradNorm / Double(updates) : .nan
    }

    /// Inner epochs of policy-gradient updates over the usable samples.
    func train(_ trajectories: Trajectories, indices: [Int], advantages: [Double], rng: inout RandomGenerator) throws -> TrainingFigures {
        guard !indices.isEmpty else { return TrainingFigures(gradNorm: .nan) }
        let eligible = trainableSteps
        let trainedSteps = DDPOTrainer.trainedStepsPerSample(config)
        var figures = TrainingFigures(effectiveSamples: Double(indices.count))
        var clipFraction = 0.0, approxKL = 0.0, ratio = 0.0, terms = 0
        let oldLogProbs = trajectories.logProbs.map(\.values)
        try trainInBatches(indices, figures: &figures, rng: &rng) { batch, rng in
            let captions = batch.map { trajectories.prompts[$0] }
            let (context, empty) = try withNoGrad { (try policy.encodeText(captions), try policy.encodeText(captions.map { _ in "" })) }
            var steps = eligible
            steps.shuffle(using: &rng)
            let scale = 1 / Double(trainedSteps * config.gradientAccumulation)
            var batchLoss = 0.0
            for s in steps.prefix(trainedSteps) {
                let step = try policy.stepLogProb(trajectories, step: s, indices: batch, context: context, empty: empty, settings: config.sampling)
                let result = try config.loss(logProb: step.logProb, oldLogProb: batch.map { oldLogProbs[s][$0] },
                                             advantages: batch.map { advantages[$0] }, clipRange: config.clipRange)
                var loss = result.loss
                if config.kl.beta > 0 {
                    let theirs = try withNoGrad {
                        try reference.stepLogProb(trajectories, step: s, indices: batch, context: context, empty: empty, settings: config.sampling).mean
                    }
                    loss = try loss + stepKL(mean: step.mean, referenceMean: theirs, sigma: step.sigma).mean() * config.kl.beta
                }
                try (loss * scale).backward()
                batchLoss += loss.item
                clipFraction += result.clipFraction
                approxKL += result.approxKL
                ratio += result.meanRatio
                terms += 1
            }
            // Every batch trains `trainedSteps` steps, so the mean over batches is the mean over terms.
            return batchLoss / Double(trainedSteps)
        }
        let n = Double(max(terms, 1))
        figures.clipFraction = clipFraction / n
        figures.approxKL = approxKL / n
        figures.ratio = ratio / n
        return figures
    }

    /// The gold evaluation on the fixed prompts (nil when there are none); logs a grid of the
    /// first image of each prompt.
    func evaluate() throws -> GoldEvaluation.Report? {
        guard config.evaluation.prompts > 0, let split = Split(rawValue: config.evaluation.split) else { return nil }
        var settings = config.sampling
        settings.seed = config.evaluation.seed
        var firstImages: [Int: RGBImage] = [:], seen = 0
        let report = try GoldEvaluation.run(model: policy, split: split, promptCount: config.evaluation.prompts,
                                            imagesPerPrompt: config.evaluation.imagesPerPrompt, settings: settings,
                                            batch: config.samplingBatch, collect: { _, images in
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

    // MARK: - Checkpoints

    struct TrainerState: Codable {
        var epoch: Int
        var tracker: PerPromptStatTracker
        var config: DDPOConfig
    }

    /// Writes `checkpoints/epoch-NNNN` (trainable weights, optimizer, reward statistics) atomically,
    /// records it in the log, and removes older checkpoints.
    func writeCheckpoint() throws {
        let folder = output.appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let name = String(format: "epoch-%04d", epoch), final = folder.appendingPathComponent(name)
        try writeFolderAtomically(final) { temporary in
            try Safetensors.write(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.tensor) }),
                                  to: temporary.appendingPathComponent("trainable.safetensors"))
            try Safetensors.write(optimizer.state(), to: temporary.appendingPathComponent("optimizer.safetensors"))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(TrainerState(epoch: epoch, tracker: tracker, config: config)).write(to: temporary.appendingPathComponent("state.json"))
        }
        try log.checkpoint(epoch: epoch, path: "checkpoints/\(name)/trainable.safetensors",
                           sha256: SHA256.hex(fileAt: final.appendingPathComponent("trainable.safetensors")))
        try log.flush()
        for old in try FileManager.default.contentsOfDirectory(atPath: folder.path) where old.hasPrefix("epoch-") && old != name {
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(old))
        }
    }

    /// The newest complete checkpoint folder of a run, if any.
    static func latestCheckpoint(in output: URL) -> URL? {
        let folder = output.appendingPathComponent("checkpoints")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return nil }
        return names.filter { $0.hasPrefix("epoch-") && !$0.hasSuffix(".partial") }.sorted().last.map { folder.appendingPathComponent($0) }
    }
}
