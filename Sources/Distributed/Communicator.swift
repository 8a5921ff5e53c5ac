import CMPI
import Foundation

/// The processes one job runs on, and the collective operations between them: what data-parallel
/// training needs (sum the gradients, share the epoch's samples, agree on a value). One process is
/// a communicator of size 1 on which every operation is the identity, so code written against
/// this protocol runs unchanged without MPI.
public protocol Communicator: AnyObject {
    /// This process's index, 0 ..< size; rank 0 writes logs and checkpoints.
    var rank: Int { get }
    var size: Int { get }
    /// Element-wise sum over all ranks, in place: every rank receives the sum.
    func allreduceSum(_ values: inout [Double]) throws
    func allreduceSum(_ values: inout [Float]) throws
    /// Element-wise sum over all ranks of each buffer, in place (every rank passes buffers of the
    /// same counts, in the same order): the gradients' all-reduce, without gathering them into one
    /// array first where the ranks share memory.
    func allreduceSum(_ buffers: [UnsafeMutableBufferPointer<Float>]) throws
    /// Rank `root`'s bytes, on every rank (the others' input is replaced).
    func broadcast(_ bytes: inout [UInt8], root: Int) throws
    /// Every rank's bytes in rank order, on every rank; each rank may send a different count.
    func allgather(_ bytes: [UInt8]) throws -> [[UInt8]]
    /// Returns when every rank has called it.
    func barrier() throws
}

extension Communicator {
    /// By default the buffers go through one flat array and back: one collective call.
    public func allreduceSum(_ buffers: [UnsafeMutableBufferPointer<Float>]) throws { try allreduceSumGathered(buffers) }

    /// The buffers' all-reduce through one flat array: copied in, summed in one call, copied back.
    public func allreduceSumGathered(_ buffers: [UnsafeMutableBufferPointer<Float>]) throws {
        guard size > 1 else { return }
        var flat: [Float] = []
        flat.reserveCapacity(buffers.reduce(0) { $0 + $1.count })
        for buffer in buffers { flat.append(contentsOf: buffer) }
        try allreduceSum(&flat)
        var offset = 0
        for buffer in buffers {
            _ = UnsafeMutableBufferPointer(rebasing: buffer[...]).update(fromContentsOf: flat[offset ..< offset + buffer.count])
            offset += buffer.count
        }
    }

    /// The first index of every `batch`-sized batch of `count` items that this rank takes: batch b
    /// goes to rank b mod size, so each batch (and the seed it is drawn with) is the same whatever
    /// the number of ranks.
    public func batchStarts(count: Int, batch: Int) -> [Int] {
        stride(from: 0, to: count, by: batch).enumerated().filter { $0.offset % size == rank }.map(\.element)
    }

    /// The rows of a batch of `count` this rank computes when every rank holds the whole batch
    /// (drawn alike from one random stream): every size-th row from its rank, all of them in one
    /// process.
    public func ownRows(of count: Int) -> [Int] { Array(stride(from: rank, to: count, by: size)) }

    /// Whether `flag` is true on any rank, on every rank.
    public func anyRank(_ flag: Bool) throws -> Bool {
        guard size > 1 else { return flag }
        var count = [flag ? 1.0 : 0.0]
        try allreduceSum(&count)
        return count[0] > 0
    }

    /// Every rank's doubles in rank order, on every rank (each rank may send a different count).
    public func allgather(_ values: [Double]) throws -> [[Double]] {
        try allgather(values.withUnsafeBytes { Array($0) }).map { bytes in bytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) } }
    }
}

/// A collective operation that failed, in one line.
public struct CommunicatorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One process: size 1, every operation the identity.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduceSum(_ values: inout [Double]) throws {}
    public func allreduceSum(_ values: inout [Float]) throws {}
    public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
        guard root == 0 else { throw CommunicatorError("broadcast from rank \(root) in a job of one process") }
    }
    public func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes] }
    public func barrier() throws {}
}

/// The ranks of an MPI job (`mpirun -np N`), over MPI_COMM_WORLD. MPI is initialized once per
/// process when the first one is made and finalized at exit; errors are returned, not fatal, and
/// become `CommunicatorError`s naming the operation.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    private let world = cmpi_comm_world()

    public init() throws {
        try MPICommunicator.initialize()
        var r: Int32 = 0, s: Int32 = 0
        try Self.check(MPI_Comm_rank(world, &r), "MPI_Comm_rank")
        try Self.check(MPI_Comm_size(world, &s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
    }

    nonisolated(unsafe) private static var initialized = false

    private static func initialize() throws {
        guard !initialized else { return }
        var already: Int32 = 0
        try check(MPI_Initialized(&already), "MPI_Initialized")
        if already == 0 { try check(MPI_Init(nil, nil), "MPI_Init") }
        try check(MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return()), "MPI_Comm_set_errhandler")
        initialized = true
        atexit { var finalized: Int32 = 0; MPI_Finalized(&finalized); if finalized == 0 { MPI_Finalize() } }
    }

    static func check(_ status: Int32, _ operation: String) throws {
        guard status == cmpi_success() else {
            var text = [CChar](repeating: 0, count: 512), length: Int32 = 0
            MPI_Error_string(status, &text, &length)
            throw CommunicatorError("\(operation) failed: \(String(cString: text))")
        }
    }

    /// MPI counts are 32-bit.
    private func count(_ n: Int, _ operation: String) throws -> Int32 {
        guard n <= Int(Int32.max) else { throw CommunicatorError("\(operation): \(n) elements exceed MPI's 32-bit count") }
        return Int32(n)
    }

    public func allreduceSum(_ values: inout [Double]) throws {
        let n = try count(values.count, "allreduce")
        try values.withUnsafeMutableBytes { buffer in
            try Self.check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress, n, cmpi_double(), cmpi_sum(), world), "MPI_Allreduce")
        }
    }

    public func allreduceSum(_ values: inout [Float]) throws {
        let n = try count(values.count, "allreduce")
        try values.withUnsafeMutableBytes { buffer in
            try Self.check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress, n, cmpi_float(), cmpi_sum(), world), "MPI_Allreduce")
        }
    }

    /// Buffers of at least `inPlaceCount` elements are summed where they lie, one call each (a
    /// copy in and out costs more than a call); the rest go through one flat array together.
    public func allreduceSum(_ buffers: [UnsafeMutableBufferPointer<Float>]) throws {
        guard size > 1 else { return }
        for buffer in buffers where buffer.count >= Self.inPlaceCount {
            let n = try count(buffer.count, "allreduce")
            try Self.check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress, n, cmpi_float(), cmpi_sum(), world), "MPI_Allreduce")
        }
        try allreduceSumGathered(buffers.filter { $0.count < Self.inPlaceCount })
    }

    /// 32,768 floats (128 KiB): the UNet's larger kernels (most of its 3.15 M parameters) go in place.
    static let inPlaceCount = 1 << 15

    public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
        guard root >= 0 && root < size else { throw CommunicatorError("broadcast from rank \(root) in a job of \(size)") }
        var length = [Int64(bytes.count)]
        try length.withUnsafeMutableBytes { try Self.check(MPI_Bcast($0.baseAddress, 1, cmpi_int64(), Int32(root), world), "MPI_Bcast") }
        if rank != root { bytes = [UInt8](repeating: 0, count: Int(length[0])) }
        let n = try count(bytes.count, "broadcast")
        try bytes.withUnsafeMutableBytes { try Self.check(MPI_Bcast($0.baseAddress, n, cmpi_byte(), Int32(root), world), "MPI_Bcast") }
    }

    public func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var lengths = [Int64](repeating: 0, count: size)
        var mine = [Int64(bytes.count)]
        try mine.withUnsafeMutableBytes { send in
            try lengths.withUnsafeMutableBytes { receive in
                try Self.check(MPI_Allgather(send.baseAddress, 1, cmpi_int64(), receive.baseAddress, 1, cmpi_int64(), world), "MPI_Allgather")
            }
        }
        let counts = try lengths.map { try count(Int($0), "allgather") }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<max(size, 1) { displacements[r] = displacements[r - 1] + counts[r - 1] }
        let total = counts.reduce(0) { $0 + Int($1) }
        var received = [UInt8](repeating: 0, count: total)
        var send = bytes
        try send.withUnsafeMutableBytes { sendBuffer in
            try received.withUnsafeMutableBytes { receiveBuffer in
                try Self.check(MPI_Allgatherv(sendBuffer.baseAddress, counts[rank], cmpi_byte(), receiveBuffer.baseAddress, counts,
                                              displacements, cmpi_byte(), world), "MPI_Allgatherv")
            }
        }
        return (0..<size).map { Array(received[Int(displacements[$0]) ..< Int(displacements[$0]) + Int(counts[$0])]) }
    }

    public func barrier() throws { try Self.check(MPI_Barrier(world), "MPI_Barrier") }
}

/// The communicator of this process: MPI's ranks when it was started by `mpirun` (Open MPI sets
/// OMPI_COMM_WORLD_SIZE), otherwise one process — MPI is not even initialized then, so a run
/// without `mpirun` is exactly what it was before MPI existed here.
public func currentCommunicator(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Communicator {
    guard environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil else { return SingleProcess() }
    return try MPICommunicator()
}
