import Diffusion
import Engine
import Rewards

/// One sampling epoch as an objective trains on it: the trajectories, which prompt each sample
/// belongs to, which samples are usable (every reward finite), their rewards and — for objectives
/// that ask for them — their clipped advantages.
public struct EpochSamples {
    public var trajectories: Trajectories
    /// Sample i's prompt group: an index into the trainer's prompt pool, the same for the images
    /// of one prompt in this epoch.
    public var groups: [Int]
    /// Sample i's prompt as an index into the trainer's prompt pool.
    public var promptIndices: [Int]
    /// The samples whose rewards are all finite; only these are trained on.
    public var usable: [Int]
    /// The weighted total reward of each sample (non-finite ones are not in `usable`).
    public var rewards: [Double]
    /// Clipped advantages (NaN outside `usable`), when the objective uses them; NaN otherwise.
    public var advantages: [Double]

    public var count: Int { rewards.count }
}

/// What a fine-tuning objective is: it checks its settings, declares the metrics it logs, and
/// turns one sampling epoch into parameter updates. The trainer owns everything else (sampling,
/// rewards, advantages, KL drift, evaluation, log, checkpoints).
///
/// Adding an objective: one file with a type conforming to this protocol, and one line in
/// `FineTuningObjectives.registered` that maps its config name to a constructor. Its `train`
/// trains through the trainer's `trainInBatches` (items split among the ranks) or
/// `trainInBatchRows` (the batch's randomness drawn alike on every rank, then rows split), so
/// it runs data-parallel under mpirun like the others.
protocol FineTuningObjective: AnyObject {
    /// Metrics this objective records every epoch besides the trainer's own (`loss`, `grad_norm`):
    /// the log's layout declares them before the run starts.
    var metricNames: [String] { get }
    /// Whether the trainer should form advantages (ReFL and Diffusion-DPO use none).
    var usesAdvantages: Bool { get }
    /// Whether the objective adds the β·KL penalty (`kl.beta`, adapted by the guard's `adaptBeta`)
    /// to its loss; a config with β > 0 for one that does not is refused.
    var usesKLPenalty: Bool { get }
    /// With a timestep-gated LoRA, every timestep the objective trains must be one the adapter
    /// acts on, or its gradient would be zero: refuses, naming the setting, when one is not.
    func checkTrainedTimesteps(inside gate: Range<Int>, samplingTimesteps: [Int], trainSteps: Int) throws
    /// Checks, when the trainer starts, that the reward functions can serve the objective (ReFL
    /// needs differentiable ones), and keeps what it resolves from them.
    func prepare(rewardFunctions: [any RewardFunction], composition: RewardComposition) throws
    /// Updates the trainer's parameters from one epoch's samples; returns `loss`, `grad_norm` and
    /// the declared metrics (NaN for one it has no value for this epoch).
    func train(_ samples: EpochSamples, trainer: FineTuningTrainer, rng: inout RandomGenerator) throws -> [String: Double]
    /// The objective's part of the epoch's progress line, from the metrics `train` returned.
    func progressText(_ metrics: [String: Double]) -> String
    /// Tensors a checkpoint must hold for a resumed run to equal an uninterrupted one (a replay
    /// buffer); empty for objectives without state.
    func checkpointState() throws -> [String: Tensor]
    func restore(_ state: [String: Tensor]) throws
}

extension FineTuningObjective {
    func prepare(rewardFunctions: [any RewardFunction], composition: RewardComposition) throws {}
    func checkTrainedTimesteps(inside gate: Range<Int>, samplingTimesteps: [Int], trainSteps: Int) throws {}
    func checkpointState() throws -> [String: Tensor] { [:] }
    func restore(_ state: [String: Tensor]) throws {
        guard state.isEmpty else { throw FineTuningError("the checkpoint holds objective state this objective does not keep") }
    }
    var usesAdvantages: Bool { true }
    var usesKLPenalty: Bool { false }
}

/// The objectives a config can name in `"objective"`.
enum FineTuningObjectives {
    typealias Constructor = (FineTuningConfig) throws -> any FineTuningObjective

    /// Config name → constructor: the one place an objective is registered.
    static let registered: [String: Constructor] = [
        "ppo": { PolicyGradientObjective(config: $0, loss: .ppo) },
        "reinforce": { PolicyGradientObjective(config: $0, loss: .reinforce) },
        "advantageWeighted": { AdvantageWeightedObjective(config: $0) },
        "diffusionDPO": { DiffusionDPOObjective(config: $0) },
        "refl": { ReFLObjective(config: $0) },
        "selfTraining": { SelfTrainingObjective(config: $0) },
        "diffusionNFT": { DiffusionNFTObjective(config: $0) },
    ]

    static var names: [String] { registered.keys.sorted() }

    /// The registered objectives with `property` (made with `config`), by name.
    static func names(having property: KeyPath<any FineTuningObjective, Bool>, _ config: FineTuningConfig) -> [String] {
        registered.filter { (try? $0.value(config))?[keyPath: property] == true }.keys.sorted()
    }

    /// The objective a config names; fails with the registered names for one that is not.
    static func make(_ config: FineTuningConfig) throws -> any FineTuningObjective {
        guard let constructor = registered[config.objective] else {
            throw FineTuningError("objective '\(config.objective)' is not one of \(names.joined(separator: ", "))")
        }
        let objective = try constructor(config)
        guard config.kl.beta == 0 || objective.usesKLPenalty else {
            let users = names(having: \.usesKLPenalty, config)
            throw FineTuningError("kl.beta: '\(config.objective)' has no β·KL penalty (\(users.joined(separator: ", ")) do); set it to 0")
        }
        return objective
    }
}

/// "loss 0.123  |g| 0.4" plus the named extras, for progress lines.
func progressFigures(_ metrics: [String: Double], _ extras: [(label: String, key: String, format: String)] = []) -> String {
    var text = String(format: "loss %.4g", metrics["loss"] ?? .nan)
    for extra in extras { text += "  \(extra.label) " + String(format: extra.format, metrics[extra.key] ?? .nan) }
    return text + String(format: "  |g| %.3g", metrics["grad_norm"] ?? .nan)
}
