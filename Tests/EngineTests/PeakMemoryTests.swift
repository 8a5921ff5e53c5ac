import XCTest
import Engine

/// The peak resident memory benchmarks report: readable on Linux, and it rises past a buffer the
/// process has just filled.
final class PeakMemoryTests: XCTestCase {
    func testPeakResidentMemoryCoversAFilledBuffer() throws {
        #if os(Linux)
        let before = try XCTUnwrap(peakResidentBytes())
        XCTAssertGreaterThan(before, 1 << 20)
        let count = 48 << 20  // 192 MiB of Float, every page written
        var buffer = [Float](repeating: 1, count: count)
        buffer[count - 1] = 2
        let after = try XCTUnwrap(peakResidentBytes())
        XCTAssertEqual([buffer[0], buffer[count / 2], buffer[count - 1]], [1, 1, 2])
        XCTAssertGreaterThanOrEqual(after, before)
        XCTAssertGreaterThanOrEqual(after, count * MemoryLayout<Float>.size)
        #else
        throw XCTSkip("peak resident memory is read from /proc on Linux")
        #endif
    }
}
