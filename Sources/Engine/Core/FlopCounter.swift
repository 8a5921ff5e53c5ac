import Foundation

/// Counts the floating-point operations of the GEMM-backed ops (conv2d, matmul, attention),
/// forward and backward, for benchmarks that report achieved GFLOP/s. Multiply and add count as
/// two. Elementwise ops, norms and softmax are not counted: they are small next to the GEMMs and
/// memory-bound. Counting is per thread that runs a model (`ThreadState.tally`), so workers of one
/// process each count their own; the kernel threads an op splits into add to their caller's tally.
public enum FlopCounter {
    /// One measurement's FLOPs and BLAS core-seconds; kernel threads add to it at once.
    final class Tally: @unchecked Sendable {
        var flops = 0.0
        var blasSeconds = 0.0
        let timing: Bool
        let lock = NSLock()
        init(timing: Bool) { self.timing = timing }
    }

    /// Runs `body` with a fresh tally on this thread (an enclosing one does not see its counts).
    private static func counting<R>(timing: Bool, _ body: () throws -> R) rethrows -> (R, Tally) {
        let state = ThreadState.current
        let saved = state.tally
        let tally = Tally(timing: timing)
        state.tally = tally
        defer { state.tally = saved }
        return (try body(), tally)
    }

    /// Runs `body` with counting on; returns its result and the FLOPs it performed.
    public static func measure<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Double) {
        let (result, tally) = try counting(timing: false, body)
        return (result, tally.flops)
    }

    /// Runs `body` counting FLOPs and the core-seconds spent inside BLAS GEMM calls (summed over
    /// the kernel threads; divide by wall time × threads for the share of compute in GEMMs).
    public static func profile<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Double, blasCoreSeconds: Double) {
        let (result, tally) = try counting(timing: true, body)
        return (result, tally.flops, tally.blasSeconds)
    }

    @inline(__always)
    static func add(_ flops: Double) {
        guard let tally = ThreadState.current.tally else { return }
        tally.lock.lock()
        tally.flops += flops
        tally.lock.unlock()
    }

    /// Wraps one BLAS call, timing it when profiling.
    @inline(__always)
    static func timed(_ call: () -> Void) {
        guard let tally = ThreadState.current.tally, tally.timing else { call(); return }
        let start = DispatchTime.now().uptimeNanoseconds
        call()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        tally.lock.lock()
        tally.blasSeconds += seconds
        tally.lock.unlock()
    }
}
