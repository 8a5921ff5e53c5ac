import Engine
import Foundation
import Rewards
import Statistics

/// How well a reward model agrees with preferences, per perspective.
public struct PerspectiveAgreement: Codable, Sendable {
    /// Pairs with a strict gold preference, and the share the reward orders as the gold judge does
    /// (ties count half), with its standard error clustered by prompt (a prompt's pairs share
    /// images, so they are not independent). Accuracies are nil where there is nothing to count.
    public var goldPairs: Int
    public var goldPairAccuracy: Double?
    public var goldPairAccuracySE: Double?
    /// The same against the annotators' labels (what the model was trained on).
    public var annotatorPairs: Int
    public var annotatorPairAccuracy: Double?
    /// Labeled images, and the share whose reward sign (> 0 good) matches the gold label.
    public var goldLabels: Int
    public var goldLabelAccuracy: Double?
    /// Expected calibration error of P(a ≻ b) = σ(r_a − r_b) against the gold outcome, over 10
    /// equal-width probability bins (pairs) or of σ(r) against the gold label (labeled images).
    public var calibrationError: Double?
}

/// Two reward models' gold pairwise accuracy on the same pairs, and their difference, paired pair by
/// pair with its standard error clustered by prompt.
public struct PairedAgreement: Codable, Sendable {
    public var goldPairs: Int
    public var accuracy: Double
    public var baselineAccuracy: Double
    public var difference: Double
    public var differenceSE: Double

    /// From each pair's agreement under the model (`a`) and the baseline (`b`) and its prompt.
    init(_ a: [Double], _ b: [Double], prompts: [String]) {
        let estimate = Estimate.paired(a, b, clusters: PairwiseEvaluation.clusters(prompts))
        goldPairs = a.count
        accuracy = a.reduce(0, +) / Double(a.count)
        baselineAccuracy = b.reduce(0, +) / Double(b.count)
        difference = estimate.mean
        differenceSE = estimate.standardError
    }
}

/// Scores held-out preference records with a reward model and compares with gold and annotator labels.
public enum PairwiseEvaluation {
    public static func run(model: LearnedReward, records: [PreferenceRecord], folder: URL,
                           progress: (String) -> Void = { _ in }) throws -> [String: PerspectiveAgreement] {
        try run(perspectives: model.perspectives, imageSize: model.config.imageSize, batchSize: model.batchSize, records: records,
                folder: folder, progress: progress) { images, prompts in try model.rewards(images, prompts: prompts).values }
    }

    /// The same for any scorer: `score` maps a batch of images [B, 3, S, S] and their prompts to
    /// B × `perspectives.count` values, row-major (for example the decoder's caption likelihood
    /// as a zero-shot alignment score).
    public static func run(perspectives: [String], imageSize: Int, batchSize: Int, records: [PreferenceRecord], folder: URL,
                           progress: (String) -> Void = { _ in },
                           score: (Tensor, [String]) throws -> [Double]) throws -> [String: PerspectiveAgreement] {
        let images = try PreferenceImages(records: records, folder: folder, imageSize: imageSize)
        let (rows, rewards) = try scores(perspectives: perspectives, images: images, batchSize: batchSize, records: records,
                                         progress: progress, score: score)
        var result: [String: PerspectiveAgreement] = [:]
        for (column, perspective) in perspectives.enumerated() {
            let gold = goldAgreements(perspective, column: column, records: records, rows: rows, rewards: rewards)
            var annotator: [Double] = [], labels: [Double] = []
            var calibration: [(probability: Double, outcome: Double)] = []
            for (record, rows) in zip(records, rows) {
                let r = rows.map { rewards[$0][column] }
                if let winner = record.goldPreferred?[perspective] {
                    calibration.append((1 / (1 + exp(-(r[0] - r[1]))), winner == 0 ? 1 : 0))
                }
                if let winner = record.preferred?[perspective] { annotator.append(pairAgreement(preferred: r[winner], other: r[1 - winner])) }
                if let good = record.goldLabels?[perspective] {
                    labels.append((r[0] > 0) == good ? 1 : 0)
                    calibration.append((1 / (1 + exp(-r[0])), good ? 1 : 0))
                }
            }
            guard !gold.agreements.isEmpty || !labels.isEmpty else { continue }
            let goldAccuracy = accuracy(gold.agreements, prompts: gold.prompts)
            result[perspective] = PerspectiveAgreement(
                goldPairs: gold.agreements.count, goldPairAccuracy: goldAccuracy?.mean, goldPairAccuracySE: goldAccuracy?.standardError,
                annotatorPairs: annotator.count, annotatorPairAccuracy: mean(annotator),
                goldLabels: labels.count, goldLabelAccuracy: mean(labels),
                calibrationError: expectedCalibrationError(calibration))
        }
        return result
    }

    /// Gold pairwise accuracy of `model` minus `baseline`'s on the same held-out pairs, for each
    /// perspective both score: paired pair by pair, the standard error clustered by prompt.
    public static func compare(model: LearnedReward, baseline: LearnedReward, records: [PreferenceRecord], folder: URL,
                               progress: (String) -> Void = { _ in }) throws -> [String: PairedAgreement] {
        // The images are read once, and again only for a baseline that takes another size.
        let images = try PreferenceImages(records: records, folder: folder, imageSize: model.config.imageSize)
        func agreements(_ reward: LearnedReward) throws -> [String: (agreements: [Double], prompts: [String])] {
            let sized = reward.config.imageSize == model.config.imageSize ? images
                : try PreferenceImages(records: records, folder: folder, imageSize: reward.config.imageSize)
            let (rows, rewards) = try scores(perspectives: reward.perspectives, images: sized, batchSize: reward.batchSize,
                                             records: records, progress: progress) { images, prompts in
                try reward.rewards(images, prompts: prompts).values
            }
            return Dictionary(uniqueKeysWithValues: reward.perspectives.enumerated().map { column, perspective in
                (perspective, goldAgreements(perspective, column: column, records: records, rows: rows, rewards: rewards))
            })
        }
        let (mine, theirs) = (try agreements(model), try agreements(baseline))
        var result: [String: PairedAgreement] = [:]
        for (perspective, a) in mine {
            guard let b = theirs[perspective], !a.agreements.isEmpty else { continue }
            result[perspective] = PairedAgreement(a.agreements, b.agreements, prompts: a.prompts)
        }
        return result
    }

    /// Each distinct image of `records` (read into `images`) scored: one row of
    /// `perspectives.count` values, and per record the rows of its images.
    private static func scores(perspectives: [String], images: PreferenceImages, batchSize: Int, records: [PreferenceRecord],
                               progress: (String) -> Void,
                               score: (Tensor, [String]) throws -> [Double]) throws -> (rows: [[Int]], rewards: [[Double]]) {
        // One reward row per distinct image (its first record's prompt: an image belongs to one prompt).
        var prompts = [String](repeating: "", count: images.pixels.count)
        for (record, rows) in zip(records, images.rows) { for row in rows { prompts[row] = record.prompt } }
        var rewards: [[Double]] = []
        let p = perspectives.count
        try withNoGrad {
            for first in stride(from: 0, to: prompts.count, by: batchSize) {
                let rows = Array(first..<Swift.min(first + batchSize, prompts.count))
                let values = try score(images.tensor(rows), rows.map { prompts[$0] })
                guard values.count == rows.count * p else {
                    throw RewardError("a scorer gave \(values.count) values for \(rows.count) images × \(p) perspectives")
                }
                rewards += rows.indices.map { Array(values[($0 * p)..<(($0 + 1) * p)]) }
                progress("scored \(rewards.count)/\(prompts.count) images")
            }
        }
        return (images.rows, rewards)
    }

    /// The pairs the gold judge strictly orders in `perspective`: whether the reward (column
    /// `column`) orders each the same way (ties count half), and its prompt.
    static func goldAgreements(_ perspective: String, column: Int, records: [PreferenceRecord], rows: [[Int]],
                               rewards: [[Double]]) -> (agreements: [Double], prompts: [String]) {
        var agreements: [Double] = [], prompts: [String] = []
        for (record, rows) in zip(records, rows) {
            guard let winner = record.goldPreferred?[perspective] else { continue }
            let r = rows.map { rewards[$0][column] }
            agreements.append(pairAgreement(preferred: r[winner], other: r[1 - winner]))
            prompts.append(record.prompt)
        }
        return (agreements, prompts)
    }

    /// The mean agreement and its standard error clustered by each pair's prompt; nil for no pairs.
    static func accuracy(_ agreements: [Double], prompts: [String]) -> (mean: Double, standardError: Double)? {
        guard !agreements.isEmpty else { return nil }
        let estimate = Estimate(agreements, clusters: clusters(prompts))
        return (estimate.mean, estimate.standardError)
    }

    /// A cluster label per pair: pairs of one prompt share images, so they share a label.
    static func clusters(_ prompts: [String]) -> [Int] {
        var ids: [String: Int] = [:]
        return prompts.map { prompt in
            if let id = ids[prompt] { return id }
            ids[prompt] = ids.count
            return ids.count - 1
        }
    }

    static func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }

    /// Σ_bins (n_b / n) · |mean probability − mean outcome| over 10 equal-width bins.
    static func expectedCalibrationError(_ items: [(probability: Double, outcome: Double)]) -> Double? {
        guard !items.isEmpty else { return nil }
        var bins = [(p: Double, o: Double, n: Int)](repeating: (0, 0, 0), count: 10)
        for item in items {
            let b = Swift.min(Int(item.probability * 10), 9)
            bins[b].p += item.probability
            bins[b].o += item.outcome
            bins[b].n += 1
        }
        return bins.filter { $0.n > 0 }.map { Double($0.n) / Double(items.count) * Swift.abs($0.p / Double($0.n) - $0.o / Double($0.n)) }
            .reduce(0, +)
    }
}
