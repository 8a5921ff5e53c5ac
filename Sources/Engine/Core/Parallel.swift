import CBLAS
import Dispatch

/// How many blocks GEMMs, im2col, large elementwise ops and reductions are split into, per
/// thread that runs a model (`ThreadState`). OpenBLAS itself runs single-threaded inside each block.
public enum Threads {
    static var current: Int { @inline(__always) get { ThreadState.current.threads } }

    /// The number of threads in use.
    public static var count: Int { current }

    /// Sets the thread count of the calling thread, and of threads that start later.
    public static func set(_ n: Int) {
        ThreadState.current.threads = max(1, n)
        ThreadState.defaultThreads = max(1, n)
        openblas_set_num_threads(1)
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
    let tally = ThreadState.current.tally
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let start = count * chunk / chunks, end = count * (chunk + 1) / chunks
            onBehalf(of: tally) { body(start..<end) }
        }
    }
}

/// Runs `body` on a kernel thread counting into its caller's `tally`.
@inline(__always)
private func onBehalf(of tally: FlopCounter.Tally?, _ body: () -> Void) {
    guard let tally else { body(); return }
    let state = ThreadState.current
    let saved = state.tally
    state.tally = tally
    defer { state.tally = saved }
    body()
}

/// Splits `0..<count` into at most `Threads.count` contiguous ranges (one when the work is too
/// small to share), fixed by count and thread count only.
func parallelRanges(_ count: Int, costPerItem: Int = 1) -> [Range<Int>] {
    let threads = Threads.current
    let chunks = threads <= 1 || count < 2 || count &* costPerItem < parallelGrain ? 1 : min(threads, count)
    return (0..<chunks).map { count * $0 / chunks ..< count * ($0 + 1) / chunks }
}

/// Runs `body(index, range)` for each range on its own thread (the caller's when there is one).
@inline(__always)
func parallelRun(_ ranges: [Range<Int>], _ body: (Int, Range<Int>) -> Void) {
    if ranges.count == 1 { body(0, ranges[0]); return }
    let tally = ThreadState.current.tally
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: ranges.count) { i in onBehalf(of: tally) { body(i, ranges[i]) } }
    }
}
