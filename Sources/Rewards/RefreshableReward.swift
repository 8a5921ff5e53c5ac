import Engine
import Images

/// Settings of re-training a learned reward during fine-tuning (`rewardRefresh` in a fine-tuning
/// config): every `every` epochs, pairs of the epoch's own images of one prompt are labeled by the
/// annotators and the reward model takes `steps` optimizer steps on them (online reward learning,
/// so that a policy that found the reward model's blind spots is labeled there).
public struct RewardRefreshSettings: Codable, Equatable, Sendable {
    /// Refresh after scoring every this many epochs; 0: never.
    public var every = 0
    /// Optimizer steps per refresh.
    public var steps = 10
    /// Pairs per step, drawn among the images of each prompt group.
    public var pairsPerStep = 16
    public var learningRate = 1e-4

    public init() {}
}

/// A reward learned from preferences that the fine-tuning trainer can re-train on the policy's
/// own samples (the annotators label them; the trainer never sees the labels).
public protocol RefreshableReward: AnyObject {
    /// Trains on annotator-labeled pairs among the images of each group (`groups[i]` is image
    /// i's group); returns the mean preference loss of the steps and the share of labeled pairs
    /// the reward ordered as the annotators did before the first step.
    func refresh(images: [RGBImage], prompts: [String], groups: [Int], settings: RewardRefreshSettings,
                 using rng: inout RandomGenerator) throws -> (loss: Double, agreementBefore: Double)
    /// What a checkpoint must hold for a resumed run to refresh as an uninterrupted one (the
    /// re-trained weights and their optimizer's state); empty before the first refresh.
    func refreshState() throws -> [String: Tensor]
    func restoreRefreshState(_ state: [String: Tensor]) throws
}

/// The refreshable rewards behind `functions`, each once: looked up through every reward that
/// wraps another (`RewardWrapping`: `proxy_…` names, TextNorm), so that a model behind two names
/// is re-trained once.
public func refreshableRewards(_ functions: [any RewardFunction]) -> [any RefreshableReward] {
    var found: [any RefreshableReward] = []
    func visit(_ function: any RewardFunction) {
        if let refreshable = function as? RefreshableReward {
            if !found.contains(where: { $0 === refreshable }) { found.append(refreshable) }
        } else if let wrapping = function as? RewardWrapping {
            visit(wrapping.wrappedReward)
        }
    }
    functions.forEach(visit)
    return found
}

/// A reward computed from another reward function (a learned reward's heads under `proxy_` names,
/// TextNorm from them).
public protocol RewardWrapping {
    var wrappedReward: any RewardFunction { get }
}
