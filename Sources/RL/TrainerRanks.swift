import Diffusion
import Distributed
import Engine
import Foundation
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

    /// Element-wise sums of `values` over the ranks.
    func sumOverRanks(_ values: [Double]) throws -> [Double] {
        var sums = values
        try communicator.allreduceSum(&sums)
        return sums
    }

    /// Sums the accumulated gradients over the ranks in one all-reduce of one flat buffer, so that
    /// every rank steps with the gradient of the whole batch.
    func sumGradientsOverRanks() throws {
        guard communicator.size > 1 else { return }
        var flat = flatGradients(parameters)
        let start = Date()
        try communicator.allreduceSum(&flat)
        allreduces.record(bytes: flat.count * MemoryLayout<Float>.size, seconds: Date().timeIntervalSince(start))
        try setFlatGradients(flat, parameters)
    }

}
