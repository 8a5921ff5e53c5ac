import Foundation
import XCTest
@testable import Distributed
import Engine

/// Threads of one process as ranks: every collective gives each rank the same, right answer (sums
/// formed in rank order, so identical bits on every rank), results come back in rank order, and a
/// rank that throws fails the others' next collective instead of leaving them waiting.
final class InProcessRanksTests: XCTestCase {
    func testCollectivesAgreeOnEveryRank() throws {
        let results = try InProcessRanks.run(size: 3) { ranks -> [String] in
            var doubles = [Double(ranks.rank + 1), 10 * Double(ranks.rank + 1)]
            try ranks.allreduceSum(&doubles)
            // Float sums in rank order: (0.1 + 0.2) + 0.3 on every rank, not another association.
            var floats: [Float] = [[0.1, 0.2, 0.3][ranks.rank]]
            try ranks.allreduceSum(&floats)
            var bytes: [UInt8] = Array("from rank \(ranks.rank)".utf8)
            try ranks.broadcast(&bytes, root: 2)
            let gathered = try ranks.allgather(Array("rank \(ranks.rank)".utf8)).map { String(decoding: $0, as: UTF8.self) }
            // Many rounds in a row: a fast rank's next exchange must not disturb a slow one's.
            var total = 0.0
            for round in 0..<200 {
                var value = [Double(round * (ranks.rank + 1))]
                try ranks.allreduceSum(&value)
                total += value[0]
            }
            try ranks.barrier()
            return ["\(ranks.rank)/\(ranks.size)", "\(doubles)", "\(floats[0].bitPattern)", String(decoding: bytes, as: UTF8.self),
                    gathered.joined(separator: ","), "\(total)"]
        }
        XCTAssertEqual(results.map { $0[0] }, ["0/3", "1/3", "2/3"])
        let expectedFloat = ((Float(0.1) + Float(0.2)) + Float(0.3)).bitPattern
        for result in results {
            XCTAssertEqual(result[1], "[6.0, 60.0]")
            XCTAssertEqual(result[2], "\(expectedFloat)")
            XCTAssertEqual(result[3], "from rank 2")
            XCTAssertEqual(result[4], "rank 0,rank 1,rank 2")
            XCTAssertEqual(result[5], "\(6.0 * Double((0..<200).reduce(0, +)))")
        }
    }

    struct Refused: Error {}

    func testAFailingRankFailsTheOthersInsteadOfHanging() {
        let start = Date()
        XCTAssertThrowsError(try InProcessRanks.run(size: 2) { ranks -> Int in
            if ranks.rank == 1 { throw Refused() }
            try ranks.barrier()
            return 0
        }) { error in
            // Rank 0's error comes first by rank: the group's failure, naming rank 1's.
            XCTAssertTrue("\(error)".contains("rank 1 failed"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        var bytes: [UInt8] = []
        XCTAssertThrowsError(try InProcessRanks.run(size: 2) { ranks in try ranks.broadcast(&bytes, root: 2) })
    }

    /// The all-reduces of arrays and of buffers give every rank the rank-order sum's bits, across
    /// buffer boundaries that the ranks' shares cut through (counts 5, 1, 0 and 7 over three ranks),
    /// with values whose float sum depends on the order of addition.
    func testArrayAndBufferAllreducesGiveTheRankOrderSum() throws {
        let counts = [5, 1, 0, 7]
        func values(_ rank: Int) -> [Float] {
            (0..<counts.reduce(0, +)).map { i in Float(sin(Double(7 * i + 3 * rank + 1))) * pow(10, Float((i + rank) % 5) - 2) }
        }
        let results = try InProcessRanks.run(size: 3) { ranks -> ([UInt32], [UInt32]) in
            var gathered = values(ranks.rank)
            try ranks.allreduceSum(&gathered)
            var storage = counts.map { _ in [Float]() }
            var offset = 0
            let mine = values(ranks.rank)
            for (i, count) in counts.enumerated() { storage[i] = Array(mine[offset ..< offset + count]); offset += count }
            let pointers = storage.map { b -> UnsafeMutableBufferPointer<Float> in
                let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: b.count)
                _ = p.initialize(from: b)
                return p
            }
            defer { pointers.forEach { $0.deallocate() } }
            try ranks.allreduceSum(pointers)
            return (gathered.map(\.bitPattern), pointers.flatMap { Array($0) }.map(\.bitPattern))
        }
        let expected = (0..<13).map { i in ((values(0)[i] + values(1)[i]) + values(2)[i]).bitPattern }
        XCTAssertNotEqual(expected, (0..<13).map { i in (values(0)[i] + (values(1)[i] + values(2)[i])).bitPattern },
                          "the values should tell the orders of addition apart")
        for (gathered, inPlace) in results {
            XCTAssertEqual(gathered, expected)
            XCTAssertEqual(inPlace, expected)
        }
        // Ranks that disagree on the buffers' counts fail, all of them, instead of reading past an end.
        XCTAssertThrowsError(try InProcessRanks.run(size: 2) { ranks in
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: 2 + ranks.rank)
            defer { p.deallocate() }
            p.initialize(repeating: 0)
            try ranks.allreduceSum([p])
        })
    }

    /// Gradients summed over ranks: a parameter only one rank has a gradient for gets that one
    /// everywhere, one no rank has stays without (an optimizer skips it), and every rank ends with
    /// the same sums — under worker threads and through the default (gathered) path alike.
    func testGradientsAreSummedAndMissingOnesStayMissing() throws {
        func run(_ body: @escaping (any Communicator) throws -> [String]) throws -> [[String]] {
            try InProcessRanks.run(size: 2, body)
        }
        let results = try run { ranks in
            let shared = try Tensor([1, 2, 3], shape: [3]), single = try Tensor([4], shape: [1]), none = Tensor(zeros: [2])
            shared.grad = try Tensor([Double(ranks.rank + 1), 0.5, -1], shape: [3])
            if ranks.rank == 1 { single.grad = try Tensor([7], shape: [1]) }
            let bytes = try ranks.allreduceGradients([("shared", shared), ("single", single), ("none", none)])
            return ["\(shared.grad!.floats)", "\(single.grad?.floats ?? [])", "\(none.grad == nil)", "\(bytes)"]
        }
        XCTAssertEqual(results[0], ["[3.0, 1.0, -2.0]", "[7.0]", "true", "16"])
        XCTAssertEqual(results[1], results[0])
        // The default implementation (what MPI ranks use): gather, sum, scatter back.
        let gathered = try InProcessRanks.run(size: 2) { ranks -> [Float] in
            let p = UnsafeMutableBufferPointer<Float>.allocate(capacity: 3), q = UnsafeMutableBufferPointer<Float>.allocate(capacity: 1)
            defer { p.deallocate(); q.deallocate() }
            _ = p.initialize(from: [1, 2, Float(ranks.rank)])
            q.initialize(repeating: Float(10 * (ranks.rank + 1)))
            try GatheringRanks(ranks).allreduceSum([p, q])
            return Array(p) + Array(q)
        }
        XCTAssertEqual(gathered[0], [2, 4, 1, 30])
        XCTAssertEqual(gathered[1], gathered[0])
    }
}

/// A communicator that forwards everything but the buffers' all-reduce, which it leaves to the
/// protocol's default.
private final class GatheringRanks: Communicator {
    let base: any Communicator
    init(_ base: any Communicator) { self.base = base }
    var rank: Int { base.rank }
    var size: Int { base.size }
    func allreduceSum(_ values: inout [Double]) throws { try base.allreduceSum(&values) }
    func allreduceSum(_ values: inout [Float]) throws { try base.allreduceSum(&values) }
    func broadcast(_ bytes: inout [UInt8], root: Int) throws { try base.broadcast(&bytes, root: root) }
    func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] { try base.allgather(bytes) }
    func barrier() throws { try base.barrier() }
}
