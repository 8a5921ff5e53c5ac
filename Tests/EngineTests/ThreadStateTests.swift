import Foundation
import XCTest
@testable import Engine

/// The engine's settings are per thread, so workers of one process can run models side by side:
/// one thread's `withNoGrad` (a backward pass runs in one) does not stop another from recording,
/// each counts its own FLOPs, and a thread count set on one thread is not another's.
final class ThreadStateTests: XCTestCase {
    func testRecordingThreadCountAndFlopsArePerThread() throws {
        let inside = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
        /// What the other thread saw, read after it signals `finished`.
        final class Seen: @unchecked Sendable { var recorded = false, threads = 0, flops = 0.0 }
        let seen = Seen()
        Threads.set(3)
        let thread = Thread {
            Threads.set(1)
            // While this thread is inside withNoGrad, the test's thread records.
            withNoGrad {
                inside.signal()
                release.wait()
            }
            var rng = RandomGenerator(seed: 2)
            let a = Tensor.randn([4, 5], using: &rng), b = Tensor.randn([5, 6], using: &rng)
            a.requiresGrad = true
            seen.recorded = (try? matmul(a, b))?.requiresGrad ?? false
            seen.threads = Threads.count
            seen.flops = (try? FlopCounter.measure { _ = try matmul(a, b) })?.flops ?? -1
            finished.signal()
        }
        thread.start()
        inside.wait()
        let x = Tensor.randn([2, 3], using: &rng)
        x.requiresGrad = true
        XCTAssertTrue(GradMode.isEnabled)
        XCTAssertTrue(try (x * 2).requiresGrad, "the other thread's withNoGrad stopped this one's recording")
        XCTAssertEqual(Threads.count, 3)
        release.signal()
        finished.wait()
        XCTAssertTrue(seen.recorded)
        XCTAssertEqual(seen.threads, 1)
        XCTAssertEqual(seen.flops, 2 * 4 * 5 * 6)
        let mine = try FlopCounter.measure { _ = try matmul(Tensor.randn([3, 3], using: &rng), Tensor.randn([3, 3], using: &rng)) }.flops
        XCTAssertEqual(mine, 2 * 27)
        Threads.set(1)
    }

    var rng = RandomGenerator(seed: 1)
}
