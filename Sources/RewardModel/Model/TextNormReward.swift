import Engine
import Foundation
import Images
import Inputs
import Rewards

/// A learned reward model's prompt-dependent heads, confidence-normalized (TextNorm), as the
/// perspectives `textnorm_<head>`; differentiable in the image, so ReFL can climb them. Each
/// image's tokens are computed once and shared by its k + 1 prompts.
public final class TextNormReward: DifferentiableReward, RewardWrapping {
    public var wrappedReward: any RewardFunction { base }
    public let base: LearnedReward
    public let settings: TextNormSettings
    public let sets: ContrastiveSets

    public init(_ base: LearnedReward, settings: TextNormSettings) throws {
        for head in settings.heads where !base.perspectives.contains(head) {
            throw RewardError("TextNorm: the reward model has no '\(head)' head (it has \(base.perspectives.joined(separator: ", ")))")
        }
        self.base = base
        self.settings = settings
        sets = try ContrastiveSets(settings)
    }

    public static let prefix = "textnorm_"
    public var perspectives: [String] { settings.heads.map { Self.prefix + $0 } }
    public var differentiablePerspectives: [String] { perspectives }

    /// The raw rewards [Σ nᵢ] per asked head of each image against each prompt of its set, with the set sizes.
    public func setRewards(_ images: Tensor, prompts: [String], heads: [String]) throws -> (rewards: [String: Tensor], setSizes: [Int]) {
        try checkShape(images.shape.first == prompts.count, "TextNormReward", "images \(describe(images.shape)) for \(prompts.count) prompts")
        let promptSets = try prompts.map { [$0] + (try sets.contrastive($0)) }
        let rows = promptSets.enumerated().flatMap { [Int](repeating: $0.offset, count: $0.element.count) }
        let imageTokens = try base.model.decoder.projectedImageTokens(images).indexSelect(axis: 0, rows)
        let (tokens, valid) = base.encode(promptSets.flatMap { $0 })
        let all = try base.model.rewards(imageTokens: imageTokens, tokens: tokens, valid: valid)
        return (Dictionary(uniqueKeysWithValues: try heads.map { ($0, try base.model.column(all, $0)) }), promptSets.map(\.count))
    }

    public func differentiableScores(_ images: Tensor, prompts: [String], perspectives: [String]) throws -> [String: Tensor] {
        let heads = try perspectives.map { name -> String in
            guard self.perspectives.contains(name) else {
                throw RewardError("TextNorm has no perspective '\(name)' (it has \(self.perspectives.joined(separator: ", ")))")
            }
            return String(name.dropFirst(Self.prefix.count))
        }
        let (rewards, sizes) = try setRewards(images, prompts: prompts, heads: heads)
        return Dictionary(uniqueKeysWithValues: try zip(perspectives, heads).map {
            ($0, try textNormalized(rewards[$1]!, setSizes: sizes, temperature: settings.temperature))
        })
    }

    public func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        guard images.count == prompts.count else { throw RewardError("TextNorm: \(images.count) images for \(prompts.count) prompts") }
        var result = Dictionary(uniqueKeysWithValues: perspectives.map { ($0, [Double]()) })
        try withNoGrad {
            for first in stride(from: 0, to: images.count, by: base.batchSize) {
                let range = first..<min(first + base.batchSize, images.count)
                let scores = try differentiableScores(ImageTensors.tensor(Array(images[range])), prompts: Array(prompts[range]), perspectives: perspectives)
                for name in perspectives { result[name]! += scores[name]!.values }
            }
        }
        return result
    }
}
