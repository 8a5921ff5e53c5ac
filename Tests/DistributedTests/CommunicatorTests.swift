import XCTest
@testable import Distributed

/// One process is a communicator of size 1 whose collectives are the identity; without mpirun's
/// environment the current communicator is that one, and MPI is never initialized. (The MPI
/// communicator is tested under `mpirun -np 2` in the command-line tests.)
final class CommunicatorTests: XCTestCase {
    func testOneProcessCollectivesAreTheIdentity() throws {
        let one = SingleProcess()
        XCTAssertEqual(one.rank, 0)
        XCTAssertEqual(one.size, 1)
        var values = [1.5, -2.0]
        try one.allreduceSum(&values)
        XCTAssertEqual(values, [1.5, -2.0])
        var bytes: [UInt8] = [1, 2, 3]
        try one.broadcast(&bytes, root: 0)
        XCTAssertEqual(bytes, [1, 2, 3])
        XCTAssertThrowsError(try one.broadcast(&bytes, root: 1))
        XCTAssertEqual(try one.allgather([7, 8]), [[7, 8]])
    }

    func testWithoutMpirunTheCurrentCommunicatorIsOneProcess() throws {
        XCTAssertTrue(try currentCommunicator(environment: [:]) is SingleProcess)
    }
}
