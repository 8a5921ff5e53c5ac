import Foundation
import Images

/// How perspectives combine into the one reward RL maximizes: a weight per perspective (0 or
/// absent: not computed) and, optionally, per-perspective standardization over the batch.
public struct RewardComposition: Codable, Equatable, Sendable {
    public var weights: [String: Double] = ["alignment": 1]
    /// Perspectives replaced by (r − mean) / (std + 1e-6) over the batch before weighting, so that
    /// perspectives on different scales can be mixed.
    public var standardize: [String] = []

    public init() {}
    public init(weights: [String: Double], standardize: [String] = []) {
        self.weights = weights
        self.standardize = standardize
    }

    /// The perspectives with a non-zero weight, sorted by name.
    public var active: [String] { weights.filter { $0.value != 0 }.map(\.key).sorted() }
}

/// One batch's rewards: the raw score of every computed perspective, and the weighted total.
public struct ComposedRewards: Equatable {
    public var perspectives: [String: [Double]]
    public var total: [Double]
}

/// Scores batches with a composition over a set of reward functions; each perspective comes from
/// the first function that offers it.
public struct RewardComposer {
    public let composition: RewardComposition
    let sources: [(function: any RewardFunction, perspectives: [String])]

    /// Fails when a weighted perspective has no function, or a weight or name is malformed.
    public init(composition: RewardComposition, functions: [any RewardFunction]) throws {
        guard !composition.active.isEmpty else { throw RewardError("reward composition: no perspective has a non-zero weight") }
        for (name, weight) in composition.weights where !weight.isFinite {
            throw RewardError("reward composition: weight of '\(name)' is \(weight)")
        }
        for name in composition.standardize where composition.weights[name, default: 0] == 0 {
            throw RewardError("reward composition: '\(name)' is standardized but has no weight")
        }
        var sources: [(function: any RewardFunction, perspectives: [String])] = functions.map { ($0, []) }
        for name in composition.active {
            guard let index = functions.firstIndex(where: { $0.perspectives.contains(name) }) else {
                let known = functions.flatMap(\.perspectives).joined(separator: ", ")
                throw RewardError("no reward offers perspective '\(name)' (known: \(known))")
            }
            sources[index].perspectives.append(name)
        }
        self.composition = composition
        self.sources = sources.filter { !$0.perspectives.isEmpty }
    }

    /// Raw scores per active perspective and the total Σ w_p · r̂_p (r̂ standardized where asked).
    public func score(_ images: [RGBImage], prompts: [String]) throws -> ComposedRewards {
        try composed(perspectiveScores(images, prompts: prompts), count: images.count)
    }

    /// The raw scores of every active perspective; a perspective's score of an image depends on
    /// that image and its prompt only, so a batch can be scored in parts (by the ranks of a
    /// data-parallel run) and `composed` once whole.
    public func perspectiveScores(_ images: [RGBImage], prompts: [String]) throws -> [String: [Double]] {
        var perspectives: [String: [Double]] = [:]
        for source in sources {
            let scores = try source.function.score(images, prompts: prompts, perspectives: source.perspectives)
            for name in source.perspectives {
                guard let values = scores[name], values.count == images.count else {
                    throw RewardError("reward for '\(name)' returned \(scores[name]?.count ?? 0) scores for \(images.count) images")
                }
                perspectives[name] = values
            }
        }
        return perspectives
    }

    /// The batch's rewards from its raw perspective scores (`count` images): the total
    /// Σ w_p · r̂_p, r̂ standardized over the whole batch where asked.
    public func composed(_ perspectives: [String: [Double]], count: Int) throws -> ComposedRewards {
        var total = [Double](repeating: 0, count: count)
        for name in composition.active {
            guard var values = perspectives[name], values.count == count else {
                throw RewardError("reward composition: \(perspectives[name]?.count ?? 0) scores of '\(name)' for \(count) images")
            }
            if composition.standardize.contains(name) { values = RewardComposer.standardized(values) }
            let weight = composition.weights[name]!
            for i in total.indices { total[i] += weight * values[i] }
        }
        return ComposedRewards(perspectives: perspectives, total: total)
    }

    /// (r − mean) / (population std + 1e-6).
    public static func standardized(_ values: [Double]) -> [Double] {
        let (mean, std) = meanAndStd(values)
        return values.map { ($0 - mean) / (std + 1e-6) }
    }
}

/// Mean and population standard deviation (divide by n); (0, 0) for no values. Rewards are
/// standardized with it here and advantages in RL.
public func meanAndStd(_ values: [Double]) -> (mean: Double, std: Double) {
    guard !values.isEmpty else { return (0, 0) }
    let mean = values.reduce(0, +) / Double(values.count)
    let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
    return (mean, variance.squareRoot())
}
