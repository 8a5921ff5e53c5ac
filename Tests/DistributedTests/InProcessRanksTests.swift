import Foundation
import XCTest
@testable import Distributed

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
}
