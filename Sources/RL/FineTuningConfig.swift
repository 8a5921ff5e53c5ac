import Diffusion
import Engine
import Rewards

/// How advantages are formed from rewards.
public enum AdvantageKind: String, Codable, Sendable {
    /// DDPO's per-prompt running statistics (`PerPromptStatTracker`).
    case perPrompt
    /// GRPO: standardized within the epoch's group of images of the same prompt.
    case group
    /// RLOO: minus the mean of the other images of the same prompt, not standardized.
    case leaveOneOut
}

/// When and on what the KL drift to the frozen reference model is computed.
public struct KLSettings: Codable, Equatable, Sendable {
    /// Every how many epochs (0: never, unless `beta` > 0 needs it anyway).
    public var every = 1
    /// On how many of the epoch's samples (0: all of them).
    public var samples = 8
    /// DPOK-style penalty: β·KL_t is added to the loss of every trained step (the reference then
    /// runs at every trained step).
    public var beta = 0.0

    public init() {}
}

/// The fixed gold evaluation run during training.
public struct TrainingEvaluation: Codable, Equatable, Sendable {
    /// "heldout" or "validation" (the world's splits).
    public var split = "heldout"
    public var prompts = 16
    public var imagesPerPrompt = 2
    /// Every how many epochs (and always after the last and before the first).
    public var every = 5
    /// Every how many evaluations a grid of one image per prompt goes into the log.
    public var gridEvery = 1
    public var seed: UInt64 = 1000
    /// A prompt file evaluated instead of the split: its first `prompts` distinct captions, in the
    /// world's grammar (the tuning set, for choosing a checkpoint by the gold judge).
    public var promptFile = ""
    /// Keep the model of every evaluated epoch in `models/epoch-NNNN/` (LoRA merged), so that
    /// the epoch the evaluation ranks first can be scored elsewhere: the oracle's checkpoint.
    public var keepModels = false

    public init() {}
}

/// Everything `diffusion-rl finetune` reads from its config, with defaults that run: the model,
/// the prompts and sampling of an epoch, the reward composition, the objective with its own
/// settings (`advantageWeighted`, `diffusionDPO`, `refl`, `selfTraining`), what trains, the KL
/// tracking, the evaluation and checkpoints.
public struct FineTuningConfig: Codable, Equatable, Sendable, ValidatedConfig {
    /// The model folder to fine-tune (also the frozen reference).
    public var model = "Models/base"
    /// A trained reward model folder (`reward train` writes DIR/model), or empty. Its heads join
    /// the perspectives as `proxy_<head>` (`proxy_alignment`), beside the gold judge's, and the
    /// confidence-normalized heads of `textNorm` as `proxy_textnorm_<head>`.
    public var rewardModel = ""
    /// TextNorm's heads, contrastive prompts and τ, for the `proxy_textnorm_<head>` perspectives.
    public var textNorm = TextNormSettings()
    public var seed: UInt64 = 0
    public var threads = 2
    public var epochs = 40
    /// Training prompts: "train", "validation" or "heldout" (the world's splits), or a text file
    /// with one prompt per line.
    public var prompts = "train"
    /// How many distinct prompts are drawn from a split (a file gives its own).
    public var promptPool = 32
    public var promptsPerEpoch = 8
    public var imagesPerPrompt = 4
    public var sampling = SamplingSettings()
    public var samplingBatch = 32
    /// What turns an epoch's samples into an update (`FineTuningObjectives.registered`): DDPO's
    /// "ppo" or "reinforce", "advantageWeighted", "diffusionDPO", "refl", "selfTraining" or
    /// "diffusionNFT".
    public var objective = "ppo"
    /// PPO's ε, on the ratio of log-probabilities summed over latent dimensions.
    public var clipRange = 0.2
    /// With `"loss": "advantageWeighted"`: the weights' temperature and the noise levels trained.
    public var advantageWeighted = AdvantageWeightedSettings()
    /// With `"loss": "diffusionDPO"`: β, the noise levels trained and how many per pair.
    public var diffusionDPO = DiffusionDPOSettings()
    /// With `"loss": "refl"`: how many of the last sampling steps carry the reward's gradient.
    public var refl = ReFLSettings()
    /// With `"objective": "selfTraining"`: which samples are kept, the buffer, the pretraining anchor.
    public var selfTraining = SelfTrainingSettings()
    /// With `"objective": "diffusionNFT"`: β, the advantage scale, the noise levels trained.
    public var diffusionNFT = DiffusionNFTSettings()
    /// Online reward learning: every `every` epochs the learned reward (`rewardModel`) is
    /// re-trained on annotator-labeled pairs of the epoch's own images; `every` 0: never.
    public var rewardRefresh = RewardRefreshSettings()
    public var advantages = AdvantageKind.perPrompt
    /// The images of one prompt in an epoch start from the same x_T. x_T is not an action of the
    /// policy, yet it decides much of the layout: with a shared x_T, group advantages compare only
    /// what the policy's steps did.
    public var shareInitialNoise = false
    /// Sampling steps [first, end) whose noise z is also the same for all images of a prompt in
    /// an epoch (common random numbers); empty: none. Meant for steps that are not trained (outside
    /// `trainStepRange`): the reward differences within a group then come from the trained steps'
    /// actions only, not from the untrained steps' noise. The estimate stays unbiased, since that
    /// noise does not depend on the trained actions.
    public var sharedNoiseStepRange: [Int] = []
    /// Antithetic pairs: images 2j and 2j + 1 of a prompt draw opposite noise (z and −z) wherever
    /// they do not share it (x_T, and every step outside `sharedNoiseStepRange`). Each image is
    /// still a draw of the policy; at a state both share, the group baseline then cancels the
    /// reward's even part in z. Needs an even `imagesPerPrompt`.
    public var antitheticNoise = false
    public var statBufferSize = 32
    public var statMinCount = 8
    public var advantageClip = 5.0
    /// Share of the (eligible) sampling steps trained on per batch (chosen at random).
    public var timestepFraction = 1.0
    /// The eligible sampling steps [first, end) in sampling order (0 is the noisiest); empty: all.
    /// The late, low-σ steps have log-probability gradients ∝ 1/σ_t that swamp the early steps
    /// where layout, count and shape are decided; alignment runs may train the early ones only.
    public var trainStepRange: [Int] = []
    public var innerEpochs = 1
    /// Samples per training forward (the UNet sees twice as many with guidance).
    public var trainBatch = 8
    /// Training batches per optimizer step.
    public var gradientAccumulation = 4
    /// Trained sampling steps of a batch stacked into one UNet pass (DDPO): the update is the
    /// same, since parameters change only between optimizer steps; larger passes use the cores
    /// better and hold more activations (`trainBatch × stepsPerPass` rows, twice with guidance).
    public var stepsPerPass = 4
    public var learningRate = 3e-4
    public var weightDecay = 1e-4
    public var maxGradNorm = 1.0
    /// LoRA rank on the UNet's attention projections; 0 fine-tunes every UNet parameter.
    public var loraRank = 4
    /// With full fine-tuning (`loraRank` 0): the text encoder trains beside the UNet, as it did in
    /// pretraining — binding a color to its shape and an object to its place is partly the text
    /// encoder's work, which a frozen encoder leaves as the base had it.
    public var trainTextEncoder = false
    /// LoRA α; 0 means α = rank.
    public var loraAlpha = 0.0
    /// [first, end) in training timesteps: the LoRA acts only on samples at these timesteps and
    /// the base model runs unchanged at the others (empty: every timestep). With it the
    /// fine-tuned model is saved with its adapter unmerged (`unet_lora.safetensors`).
    public var loraTimestepRange: [Int] = []
    public var rewards = RewardComposition()
    public var kl = KLSettings()
    /// The overoptimization guard (off unless it has actions).
    public var `guard` = GuardSettings()
    public var evaluation = TrainingEvaluation()
    /// Every how many epochs a resumable checkpoint is written (and always after the last).
    public var checkpointEvery = 1

    public init() {}

    /// Fails with one line naming the first setting that cannot run.
    public func validate() throws {
        func require(_ condition: Bool, _ message: String) throws {
            if !condition { throw FineTuningError(message) }
        }
        try require(sampling.eta > 0, "sampling.eta = \(sampling.eta): DDIM with η = 0 is deterministic and has no log-probability; use η > 0")
        try require(sampling.steps >= 1, "sampling.steps must be at least 1")
        try require(sampling.guidance >= 0 && sampling.guidance.isFinite, "sampling.guidance must be a finite number ≥ 0 (1: no guidance)")
        try require(epochs >= 1 && promptsPerEpoch >= 1 && imagesPerPrompt >= 1, "epochs, promptsPerEpoch and imagesPerPrompt must be at least 1")
        try require(samplingBatch >= 1 && trainBatch >= 1 && gradientAccumulation >= 1 && innerEpochs >= 1,
                    "samplingBatch, trainBatch, gradientAccumulation and innerEpochs must be at least 1")
        try require(timestepFraction > 0 && timestepFraction <= 1, "timestepFraction must be in (0, 1]")
        try require(stepsPerPass >= 1, "stepsPerPass must be at least 1")
        func requireRange(_ pair: [Int], _ name: String, end: Int?) throws {
            let valid = pair.isEmpty || (pair.count == 2 && pair[0] >= 0 && pair[0] < pair[1] && pair[1] <= (end ?? Int.max))
            try require(valid, "\(name) must be empty or [first, end) with 0 ≤ first < end" + (end.map { " ≤ sampling.steps (\($0))" } ?? ""))
        }
        try requireRange(trainStepRange, "trainStepRange", end: sampling.steps)
        try requireRange(sharedNoiseStepRange, "sharedNoiseStepRange", end: sampling.steps)
        try require(!antitheticNoise || imagesPerPrompt % 2 == 0,
                    "antitheticNoise pairs a prompt's images, so imagesPerPrompt (\(imagesPerPrompt)) must be even")
        try require(clipRange > 0 && advantageClip > 0, "clipRange and advantageClip must be positive")
        try require(advantageWeighted.temperature > 0 && advantageWeighted.temperature.isFinite && advantageWeighted.timestepsPerSample >= 1,
                    "advantageWeighted.temperature must be positive and advantageWeighted.timestepsPerSample at least 1")
        try requireRange(advantageWeighted.timestepRange, "advantageWeighted.timestepRange", end: nil)
        try require(diffusionDPO.beta > 0 && diffusionDPO.beta.isFinite && diffusionDPO.timestepsPerPair >= 1,
                    "diffusionDPO.beta must be positive and diffusionDPO.timestepsPerPair at least 1")
        try requireRange(diffusionDPO.timestepRange, "diffusionDPO.timestepRange", end: nil)
        try require(refl.gradientSteps >= 1 && refl.gradientSteps <= sampling.steps,
                    "refl.gradientSteps must be in 1...sampling.steps (\(sampling.steps))")
        try require(FineTuningObjectives.registered[objective] != nil,
                    "objective '\(objective)' is not one of \(FineTuningObjectives.names.joined(separator: ", "))")
        try require(selfTraining.k >= 1 && selfTraining.temperature > 0 && selfTraining.temperature.isFinite && selfTraining.bufferSize >= 0,
                    "selfTraining.k must be at least 1, selfTraining.temperature positive and selfTraining.bufferSize ≥ 0")
        try require(selfTraining.anchorShare >= 0 && selfTraining.anchorShare < 1 && selfTraining.captionDropout >= 0 && selfTraining.captionDropout <= 1,
                    "selfTraining.anchorShare must be in [0, 1) and selfTraining.captionDropout in [0, 1]")
        try require(selfTraining.threshold.isFinite, "selfTraining.threshold must be a finite number")
        try require(selfTraining.relabelCandidates >= 0, "selfTraining.relabelCandidates must be 0 (off) or more")
        try require(selfTraining.composites >= 0 && selfTraining.partsPerObject >= 1 && selfTraining.compositesKept >= 1,
                    "selfTraining.composites must be 0 (off) or more, selfTraining.partsPerObject and selfTraining.compositesKept at least 1")
        try requireRange(selfTraining.timestepRange, "selfTraining.timestepRange", end: nil)
        try require(diffusionNFT.beta > 0 && diffusionNFT.beta.isFinite && diffusionNFT.advantageScale > 0 && diffusionNFT.advantageScale.isFinite,
                    "diffusionNFT.beta and diffusionNFT.advantageScale must be positive")
        try require(diffusionNFT.timestepsPerSample >= 1 && diffusionNFT.captionDropout >= 0 && diffusionNFT.captionDropout <= 1,
                    "diffusionNFT.timestepsPerSample must be at least 1 and diffusionNFT.captionDropout in [0, 1]")
        try requireRange(diffusionNFT.timestepRange, "diffusionNFT.timestepRange", end: nil)
        try require(objective != "refl" || rewards.standardize.isEmpty, "refl backpropagates raw rewards; rewards.standardize must be empty")
        try require(objective != "diffusionDPO" || imagesPerPrompt >= 2, "diffusionDPO pairs a prompt's images, so imagesPerPrompt must be at least 2")
        try require(learningRate > 0 && learningRate.isFinite, "learningRate must be positive")
        try require(rewardRefresh.every >= 0 && rewardRefresh.steps >= 1 && rewardRefresh.pairsPerStep >= 1
                    && rewardRefresh.learningRate > 0 && rewardRefresh.learningRate.isFinite,
                    "rewardRefresh: every must be ≥ 0, steps and pairsPerStep at least 1, learningRate positive")
        try require(rewardRefresh.every == 0 || imagesPerPrompt >= 2, "rewardRefresh labels pairs of a prompt's images, so imagesPerPrompt must be at least 2")
        try require(loraRank >= 0, "loraRank must be ≥ 0")
        try require(!trainTextEncoder || loraRank == 0, "trainTextEncoder trains the text encoder's full weights beside the UNet's, so loraRank must be 0")
        try requireRange(loraTimestepRange, "loraTimestepRange", end: nil)
        try require(loraTimestepRange.isEmpty || loraRank > 0, "loraTimestepRange gates a LoRA adapter, so loraRank must be > 0")
        try require(kl.beta >= 0 && kl.every >= 0 && kl.samples >= 0, "kl settings must be ≥ 0")
        if let problem = OveroptimizationGuard.problem(with: self.guard, objectiveUsesBeta: FineTuningObjectives.names(having: \.usesKLPenalty, self).contains(objective)) {
            throw FineTuningError(problem)
        }
        try require(!self.guard.has("adaptBeta") || kl.beta > 0, "guard: adaptBeta adapts kl.beta, which must start above 0")
        try require(!self.guard.isActive || !self.guard.limitsKL || kl.every > 0, "guard: a KL budget or growth limit needs the KL measured (kl.every ≥ 1)")
        try require(["heldout", "validation"].contains(evaluation.split), "evaluation.split must be heldout or validation")
        try require(evaluation.every >= 1 && evaluation.prompts >= 0 && evaluation.imagesPerPrompt >= 1,
                    "evaluation.every and evaluation.imagesPerPrompt must be at least 1")
        try require(!evaluation.keepModels || evaluation.prompts > 0, "evaluation.keepModels keeps the models the evaluation scores; set evaluation.prompts")
        try require(checkpointEvery >= 1, "checkpointEvery must be at least 1")
        try require(advantages != .group || imagesPerPrompt >= 2, "group advantages need imagesPerPrompt ≥ 2")
    }
}

extension FineTuningConfig: OpenConfigMaps, RenamedConfigKeys {
    public static var openMaps: Set<String> { ["rewards.weights"] }
    public static var renamedKeys: [String: String] { ["loss": "objective"] }
}

extension FineTuningConfig {
    /// LoRA α as used: `loraAlpha`, or the rank when it is 0.
    var resolvedLoRAAlpha: Double { loraAlpha > 0 ? loraAlpha : Double(loraRank) }

    /// What trains, for logs and progress lines: "LoRA rank 4", "LoRA rank 4 at timesteps [750, 1000)"
    /// or "full fine-tuning".
    public var trainedParametersDescription: String {
        guard loraRank > 0 else { return "full fine-tuning" + (trainTextEncoder ? " with the text encoder" : "") }
        return "LoRA rank \(loraRank)" + (loraTimestepRange.isEmpty ? "" : " at timesteps [\(loraTimestepRange[0]), \(loraTimestepRange[1]))")
    }

    /// A config's [first, end) pair as a range; nil when the pair is empty ("all").
    static func halfOpenRange(_ pair: [Int]) -> Range<Int>? { pair.count == 2 ? pair[0] ..< pair[1] : nil }
}

/// What went wrong in fine-tuning, in one line.
public struct FineTuningError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension FineTuningConfig {
    /// What `make demo` runs: the base model fitted to pretraining scenes the reward model's
    /// safety head passes (95 % of each batch) and its own samples the head passes (5 %) — the
    /// objective that moves a perspective most on unseen captions here (docs/fine-tuning.md): the
    /// hazard mark at guidance 1 falls from about 5 % of images to under 1 %, alignment unchanged.
    /// Each epoch samples 32 of 256 training captions × 8 images at guidance 1, keeps those the
    /// safety head calls safe, and fits the whole UNet with its pretraining loss; about 12 minutes
    /// on 2 cores. The demo evaluates afterwards, on captions it did not train on.
    public static var demo: FineTuningConfig {
        var config = FineTuningConfig()
        config.rewardModel = "Models/reward"
        config.epochs = 24
        config.promptPool = 256
        config.promptsPerEpoch = 32
        config.imagesPerPrompt = 8
        config.sampling.guidance = 1
        config.objective = "selfTraining"
        config.selfTraining.selection = .threshold
        config.selfTraining.threshold = 0
        config.selfTraining.bufferSize = 128
        config.selfTraining.anchorShare = 0.95
        config.selfTraining.captionDropout = 0.1
        config.selfTraining.filterAnchors = true
        config.trainBatch = 1
        config.gradientAccumulation = 1
        config.learningRate = 1e-4
        config.weightDecay = 0
        config.loraRank = 0
        config.rewards = RewardComposition(weights: ["proxy_safety": 1])
        config.kl.every = 4
        config.evaluation.prompts = 0
        return config
    }
}
