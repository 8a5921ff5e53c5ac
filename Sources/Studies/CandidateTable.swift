import Foundation
import Statistics

/// A best-of-N selector: candidates ranked by Σ_k w_k · z_k over columns k of the candidate table,
/// z_k the column standardized by the plain samples' (candidate 0's) mean and standard deviation —
/// so heads on different scales weigh alike, and adding candidates never moves the scale. Ties
/// (a binary score) are broken at random by a fixed hash of image slot and candidate.
public struct StudySelector: Codable, Equatable, Sendable {
    /// The selector's name in metrics and tables.
    public var name: String
    /// Column name → weight.
    public var weights: [String: Double]

    public init(name: String, weights: [String: Double]) {
        self.name = name
        self.weights = weights
    }
}

/// Every candidate's scores in a best-of-N study: `columns[name][c][j]` is column `name` of
/// candidate `c` in image slot `j`. Candidate 0 is plain sampling; every selection is computed from
/// the table, so a study draws its candidates once and any selector or N costs nothing more.
public struct CandidateTable: Sendable {
    public private(set) var columns: [String: [[Double]]]
    /// The prompt (its index) of each image slot: the cluster of the standard errors.
    public let slotPrompts: [Int]

    public init(columnNames: [String], slotPrompts: [Int]) {
        columns = Dictionary(uniqueKeysWithValues: columnNames.map { ($0, []) })
        self.slotPrompts = slotPrompts
    }

    /// Candidates held so far.
    public var candidates: Int { columns.values.first?.count ?? 0 }

    /// Adds the next candidate's scores: one value per slot in every column.
    public mutating func append(_ candidate: [String: [Double]]) throws {
        guard Set(candidate.keys) == Set(columns.keys) else {
            throw StudyError("a candidate's columns \(candidate.keys.sorted()) differ from the table's \(columns.keys.sorted())")
        }
        for (name, values) in candidate {
            guard values.count == slotPrompts.count else {
                throw StudyError("column \(name): \(values.count) values for \(slotPrompts.count) image slots")
            }
            columns[name]!.append(values)
        }
    }

    /// For each slot, the candidate among the first `n` that `selector` ranks first (a NaN score
    /// never wins).
    public func chosen(_ selector: StudySelector, n: Int) throws -> [Int] {
        guard n >= 1, n <= candidates else { throw StudyError("best of \(n) needs 1 … \(candidates) candidates") }
        var scales: [(values: [[Double]], weight: Double, mean: Double, sd: Double)] = []
        for (name, weight) in selector.weights.sorted(by: { $0.key < $1.key }) {
            guard let values = columns[name] else { throw StudyError("selector \(selector.name) names no column '\(name)' of the table") }
            let plain = values[0].filter(\.isFinite)
            let mean = plain.isEmpty ? 0 : plain.reduce(0, +) / Double(plain.count)
            let variance = plain.isEmpty ? 0 : plain.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(plain.count)
            scales.append((values, weight, mean, variance > 0 ? variance.squareRoot() : 1))
        }
        return slotPrompts.indices.map { slot in
            var best = 0, bestKey = (-Double.infinity, -1.0)
            for c in 0..<n {
                var score = 0.0
                for s in scales { score += s.weight * (s.values[c][slot] - s.mean) / s.sd }
                let key = (score.isNaN ? -Double.infinity : score, Self.tieBreak(slot: slot, candidate: c))
                if key > bestKey { (best, bestKey) = (c, key) }
            }
            return best
        }
    }

    /// The paired gain of best-of-`n` by `selector` over plain sampling (candidate 0) in each of
    /// `names`, image slot by image slot, clustered by prompt.
    public func gains(_ selector: StudySelector, n: Int, in names: [String]) throws -> [String: Estimate] {
        let picks = try chosen(selector, n: n)
        var result: [String: Estimate] = [:]
        for name in names {
            guard let values = columns[name] else { throw StudyError("no column '\(name)' in the table") }
            let kept = picks.enumerated().map { values[$0.element][$0.offset] }
            result[name] = Estimate.paired(kept, values[0], clusters: slotPrompts)
        }
        return result
    }

    /// A number in [0, 1) fixed by slot and candidate (SplitMix64): the random order of tied candidates.
    static func tieBreak(slot: Int, candidate: Int) -> Double {
        var z = UInt64(truncatingIfNeeded: slot) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(truncatingIfNeeded: candidate) &+ 0xD1B5_4A32_D192_ED03
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53)
    }
}

/// A study that cannot run as asked, in one line.
public struct StudyError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
