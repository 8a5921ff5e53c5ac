import Engine
import Images

/// A sanity reward whose direction is easy to find: the mean RGB intensity in [0, 1] (perspective
/// `brightness`). Every sampling step can raise it by shifting its mean a little, so a working
/// RL pipeline raises it within a few updates; if a run cannot, the pipeline is at fault, not the
/// difficulty of the reward. Differentiable, so ReFL can climb it too.
public struct BrightnessReward: DifferentiableReward {
    public init() {}

    public var perspectives: [String] { ["brightness"] }
    public var differentiablePerspectives: [String] { ["brightness"] }

    public func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        try requireOffered(perspectives, name: "brightness reward")
        guard !perspectives.isEmpty else { return [:] }
        return ["brightness": images.map { image in
            let rgb = image.rgb()
            guard !rgb.pixels.isEmpty else { return 0 }
            return Double(rgb.pixels.reduce(0) { $0 + Int($1) }) / Double(rgb.pixels.count * 255)
        }]
    }

    /// The same score on images [B, 3, S, S] in [−1, 1]: (mean + 1) / 2.
    public func differentiableScores(_ images: Tensor, prompts: [String], perspectives: [String]) throws -> [String: Tensor] {
        try requireOffered(perspectives, name: "brightness reward")
        guard !perspectives.isEmpty else { return [:] }
        return ["brightness": try (images.mean(axes: [1, 2, 3]) + 1) * 0.5]
    }
}

/// The reward functions every run can weight without a model file: the gold judge,
/// compressibility and brightness.
public var builtInRewardFunctions: [any RewardFunction] { [GoldJudgeReward(), CompressibilityReward(), BrightnessReward()] }
