import Diffusion
import Distributed
import Engine
import Foundation
import Images
import Rewards
import RunLog

/// The gradient all-reduces of a run so far: how many, their bytes and their wall time.
public struct AllreduceTally: Codable, Sendable {
    public var calls = 0
    public var bytes = 0
    public var seconds = 0.0

    mutating func record(bytes: Int, seconds: Double) {
        calls += 1
        self.bytes += bytes
        self.seconds += seconds
    }
}

// What data-parallel fine-tuning exchanges between ranks: the epoch's trajectories, the KL drift's
// per-sample values, the gradients of each optimizer step and the epoch's training figures, and
// whether to stop. With one process every exchange is the identity.
extension FineTuningTrainer {
    /// The batches of the epoch (their starts, `samplingBatch` apart over `count` samples) this
    /// rank draws: batch b on rank b mod size.
    func ownBatches(count: Int) -> [Int] { communicator.batchStarts(count: count, batch: config.samplingBatch) }

    /// Every rank's trajectories of its batches, assembled in batch order on every rank: the
    /// epoch one process would have drawn.
    func gatherTrajectories(_ mine: [(start: Int, trajectories: Trajectories)]) throws -> Trajectories {
        guard communicator.size > 1 else { return try Trajectories.concatenated(mine.map(\.trajectories)) }
        var writer = ByteWriter()
        for part in mine {
            writer.put(part.start)
            writer.put(bytes: part.trajectories.encoded())
        }
        var parts: [(start: Int, trajectories: Trajectories)] = []
        for bytes in try communicator.allgather(writer.bytes) {
            var reader = ByteReader(bytes, source: "gathered trajectories")
            while !reader.isAtEnd { parts.append((try reader.int(), try Trajectories(encoded: try reader.byteString()))) }
        }
        return try Trajectories.concatenated(parts.sorted { $0.start < $1.start }.map(\.trajectories))
    }

    /// `composer`'s rewards of the epoch's samples `indices` (in that order): each rank scores
    /// the ones in its own sampling batches (`ownBatches`), or the positions `own` of `indices`
    /// when given, the raw scores are summed over the ranks (zeros elsewhere) and composed on
    /// every rank — so a learned reward model's forward is split like the sampling, not repeated
    /// on every rank.
    func sharedScores(_ composer: RewardComposer, images: [RGBImage], prompts: [String], indices: [Int], own given: [Int]? = nil) throws
        -> ComposedRewards {
        guard communicator.size > 1 else {
            return try composer.score(indices.map { images[$0] }, prompts: indices.map { prompts[$0] })
        }
        let starts = Set(ownBatches(count: images.count))
        let own = given ?? indices.indices.filter { starts.contains(indices[$0] / config.samplingBatch * config.samplingBatch) }
        let names = composer.composition.active
        var flat = [Double](repeating: 0, count: names.count * indices.count)
        if !own.isEmpty {
            let scores = try composer.perspectiveScores(own.map { images[indices[$0]] }, prompts: own.map { prompts[indices[$0]] })
            for (n, name) in names.enumerated() {
                for (k, position) in own.enumerated() { flat[n * indices.count + position] = scores[name]![k] }
            }
        }
        flat = try sumOverRanks(flat)
        let perspectives = Dictionary(uniqueKeysWithValues: names.enumerated().map { n, name in
            (name, Array(flat[n * indices.count ..< (n + 1) * indices.count]))
        })
        return try composer.composed(perspectives, count: indices.count)
    }

    /// Element-wise sums of `values` over the ranks.
    func sumOverRanks(_ values: [Double]) throws -> [Double] {
        var sums = values
        try communicator.allreduceSum(&sums)
        return sums
    }

    /// Sums the accumulated gradients over the ranks (`allreduceGradients`), so that every rank
    /// steps with the gradient of the whole batch.
    func sumGradientsOverRanks() throws {
        guard communicator.size > 1 else { return }
        let start = Date()
        let bytes = try communicator.allreduceGradients(parameters)
        allreduces.record(bytes: bytes, seconds: Date().timeIntervalSince(start))
    }

}
