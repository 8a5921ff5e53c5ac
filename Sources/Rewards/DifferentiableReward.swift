import Engine

/// A reward some of whose perspectives are differentiable in the image: ReFL / DRaFT fine-tuning
/// backpropagates through them into the sampler. Learned reward models and brightness are; the
/// gold judge and PNG compressibility are not.
public protocol DifferentiableReward: RewardFunction {
    /// The perspectives `differentiableScores` can compute.
    var differentiablePerspectives: [String] { get }
    /// Scores [B] per perspective asked for, for images [B, 3, S, S] in [−1, 1], keeping the graph.
    func differentiableScores(_ images: Tensor, prompts: [String], perspectives: [String]) throws -> [String: Tensor]
}

extension PrefixedReward: DifferentiableReward {
    /// The base function's differentiable perspectives under the prefix (none if it has none).
    public var differentiablePerspectives: [String] {
        (base as? DifferentiableReward)?.differentiablePerspectives.map { prefix + $0 } ?? []
    }

    public func differentiableScores(_ images: Tensor, prompts: [String], perspectives: [String]) throws -> [String: Tensor] {
        guard let base = base as? DifferentiableReward else { throw RewardError("'\(prefix)' scores are not differentiable") }
        let names = try perspectives.map { name -> String in
            guard differentiablePerspectives.contains(name) else {
                throw RewardError("'\(name)' is not one of \(differentiablePerspectives.joined(separator: ", "))")
            }
            return String(name.dropFirst(prefix.count))
        }
        let scores = try base.differentiableScores(images, prompts: prompts, perspectives: names)
        return Dictionary(uniqueKeysWithValues: zip(perspectives, names).map { ($0, scores[$1]!) })
    }
}
