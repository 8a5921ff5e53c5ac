import Distributed
import Engine

extension Option {
    /// `--workers N`: the process's cores as ranks (`InProcessRanks`), each taking its share of
    /// every batch through the whole network, as `mpirun`'s ranks do.
    static let workers = integer("workers", default: 1, minimum: 1,
                                 "split every batch over N worker threads of this process, as mpirun's ranks do (give each --threads 1)")
}

/// Runs `body` on every rank of the job with that rank's communicator: `mpirun`'s ranks, or
/// `workers` threads of this process (each with `threads` engine threads), or this process alone.
func onEveryRank(workers: Int, threads: Int, _ body: @escaping (any Communicator) throws -> Void) throws {
    let communicator = try currentCommunicator()
    guard workers > 1 else { try body(communicator); return }
    guard communicator.size == 1 else { throw CommandError("--workers splits one process into ranks; under mpirun the ranks are already there") }
    _ = try InProcessRanks.run(size: workers, prepare: { _ in Threads.set(threads) }, body)
}
