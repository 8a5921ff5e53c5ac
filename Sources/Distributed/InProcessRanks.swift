import Foundation

/// Ranks that are threads of one process: `InProcessRanks.run(size:)` starts one thread per rank,
/// each with a `Communicator` over shared memory, so data-parallel code written for `mpirun`
/// splits its batches over the cores of one process without a launcher. The collectives meet in
/// `exchange`: every rank leaves its value and, once all have, takes all of them in rank order —
/// sums are formed in rank order (each rank summing its share of the elements, in place), so the
/// ranks agree bit for bit and a run repeats exactly. A rank that throws fails the group: the
/// others' next collective throws instead of waiting for it.
public final class InProcessRanks {
    public let size: Int
    private let condition = NSCondition()
    private var slots: [Any?]
    private var arrived = 0
    private var generation = 0
    private var results: [Any?] = []
    private var failure: String?

    private init(size: Int) {
        self.size = size
        slots = [Any?](repeating: nil, count: size)
    }

    /// Runs `body` once per rank, each on its own thread (`stackSize` bytes of stack) with that
    /// rank's communicator, and returns the results in rank order; rethrows the first rank's
    /// error (by rank) after every thread has ended. `prepare` runs first on each thread (to set
    /// per-thread settings).
    public static func run<R>(size: Int, stackSize: Int = 64 << 20, prepare: @escaping (Int) -> Void = { _ in },
                              _ body: @escaping (any Communicator) throws -> R) throws -> [R] {
        precondition(size >= 1, "InProcessRanks.run needs at least one rank")
        let group = InProcessRanks(size: size)
        let outcomes = Outcomes<R>(size)
        let done = DispatchGroup()
        for rank in 0..<size {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                prepare(rank)
                let outcome = Result { try body(Rank(group: group, rank: rank)) }
                if case .failure(let error) = outcome { group.fail("rank \(rank) failed: \(error)") }
                outcomes.lock.lock()
                outcomes.values[rank] = outcome
                outcomes.lock.unlock()
            }
            thread.stackSize = stackSize
            thread.start()
        }
        done.wait()
        return try outcomes.values.map { try $0!.get() }
    }

    /// Marks the group failed and wakes every waiting rank.
    func fail(_ message: String) {
        condition.lock()
        if failure == nil { failure = message }
        condition.broadcast()
        condition.unlock()
    }

    /// Every rank's `value` in rank order, once all have given theirs.
    func exchange(_ value: Any, rank: Int) throws -> [Any?] {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw CommunicatorError(failure) }
        slots[rank] = value
        arrived += 1
        if arrived == size {
            // The last to arrive publishes; `results` is replaced only when every rank has
            // arrived at the next exchange, so each has read this one by then.
            results = slots
            slots = [Any?](repeating: nil, count: size)
            arrived = 0
            generation += 1
            condition.broadcast()
            return results
        }
        let mine = generation
        while generation == mine && failure == nil { condition.wait() }
        if generation == mine, let failure { throw CommunicatorError(failure) }
        return results
    }

    /// The ranks' outcomes, each written once by its own thread.
    private final class Outcomes<R>: @unchecked Sendable {
        var values: [Result<R, Error>?]
        let lock = NSLock()
        init(_ size: Int) { values = Array(repeating: nil, count: size) }
    }

    /// One rank's view of the group.
    final class Rank: Communicator {
        let group: InProcessRanks
        let rank: Int
        var size: Int { group.size }

        init(group: InProcessRanks, rank: Int) {
            self.group = group
            self.rank = rank
        }

        func allreduceSum(_ values: inout [Double]) throws { try values.withUnsafeMutableBufferPointer { try sum([$0]) } }
        func allreduceSum(_ values: inout [Float]) throws { try values.withUnsafeMutableBufferPointer { try sum([$0]) } }
        func allreduceSum(_ buffers: [UnsafeMutableBufferPointer<Float>]) throws { try sum(buffers) }

        /// In place over shared memory: each rank sums its own share of the elements (a contiguous
        /// 1/size of them across the buffers), reading every rank's buffers and writing the sums into
        /// all of them — each element is read and written once per rank, where a gathered copy
        /// would pass over the whole of every buffer on every rank. The sums run in rank order, so
        /// the ranks agree bit for bit.
        private func sum<T: BinaryFloatingPoint>(_ buffers: [UnsafeMutableBufferPointer<T>]) throws {
            let counts = buffers.map(\.count)
            let all = try group.exchange(buffers, rank: rank).map { $0 as! [UnsafeMutableBufferPointer<T>] }
            guard all.allSatisfy({ $0.map(\.count) == counts }) else {
                throw CommunicatorError("allreduce of buffers of \(all.map { $0.map(\.count) }) values on the ranks")
            }
            let total = counts.reduce(0, +)
            let share = total * rank / size ..< total * (rank + 1) / size
            var offset = 0
            for (index, count) in counts.enumerated() {
                let (start, end) = (max(share.lowerBound, offset) - offset, min(share.upperBound, offset + count) - offset)
                offset += count
                guard start < end else { continue }
                let part = start ..< end
                let sum = all[0][index].baseAddress! + part.lowerBound
                for other in all.dropFirst() {
                    let values = other[index].baseAddress! + part.lowerBound
                    for i in 0..<part.count { sum[i] += values[i] }
                }
                for other in all.dropFirst() { (other[index].baseAddress! + part.lowerBound).update(from: sum, count: part.count) }
            }
            // No rank reads the sums (nor frees its buffers) before every share is written.
            try barrier()
        }

        func broadcast(_ bytes: inout [UInt8], root: Int) throws {
            guard root >= 0 && root < size else { throw CommunicatorError("broadcast from rank \(root) of \(size)") }
            bytes = try group.exchange(bytes, rank: rank)[root] as! [UInt8]
        }

        func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] {
            try group.exchange(bytes, rank: rank).map { $0 as! [UInt8] }
        }

        func barrier() throws { _ = try group.exchange((), rank: rank) }
    }
}
