import CBLAS
import Dispatch

/// The program's one thread setting: OpenBLAS threads for GEMMs, and the number of chunks that
/// large elementwise ops, im2col and reductions are split into.
public enum Threads {
    nonisolated(unsafe) static var current = 1

    /// The number of threads in use.
    public static var count: Int { current }

    /// Sets the thread count for the whole program (OpenBLAS and the engine's own loops).
    public static func set(_ n: Int) {
        current = max(1, n)
        openblas_set_num_threads(Int32(current))
    }
}

/// Below this many elements of work a loop runs on one thread: waking a second core costs
/// more than it saves.
let parallelGrain = 1 << 15

/// Runs `body` over `0..<count` split into contiguous ranges, on up to `Threads.count` threads
/// when `count * costPerItem` is large enough to pay for it. Ranges are fixed by count and thread
/// count only, so results are reproducible at a given thread count.
@inline(__always)
func parallelFor(_ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void) {
    let threads = Threads.current
    if threads <= 1 || count < 2 || count &* costPerItem < parallelGrain {
        body(0..<count)
        return
    }
    let chunks = min(threads, count)
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let start = count * chunk / chunks, end = count * (chunk + 1) / chunks
            body(start..<end)
        }
    }
}
