import Images
import World

/// The world's gold judge as a reward: every named judge score is a perspective
/// (`alignment`, `alignment_partial`, `color`, …, `fidelity`, `safety`, `overall`).
public struct GoldJudgeReward: RewardFunction {
    public let judge: GoldJudge

    public init(judge: GoldJudge = GoldJudge()) { self.judge = judge }

    public var perspectives: [String] { JudgeScores.names }

    public func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        guard images.count == prompts.count else {
            throw RewardError("gold judge: \(images.count) images for \(prompts.count) prompts")
        }
        try requireOffered(perspectives, name: "gold judge")
        let parsed = try prompts.map { try Prompt(parsing: $0) }
        let scores = judge.score(images, prompts: parsed).map { Dictionary(uniqueKeysWithValues: $0.named) }
        var result: [String: [Double]] = [:]
        for name in perspectives { result[name] = scores.map { $0[name]! } }
        return result
    }
}
