import Foundation

/// Counts the floating-point operations of the GEMM-backed ops (conv2d, matmul, attention),
/// forward and backward, for benchmarks that report achieved GFLOP/s. Multiply and add count as
/// two. Elementwise ops, norms and softmax are not counted: they are small next to the GEMMs and
/// memory-bound.
public enum FlopCounter {
    nonisolated(unsafe) static var enabled = false
    nonisolated(unsafe) static var count = 0.0

    /// Runs `body` with counting on; returns its result and the FLOPs it performed.
    public static func measure<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Double) {
        let (savedEnabled, savedCount) = (enabled, count)
        enabled = true
        count = 0
        defer { enabled = savedEnabled; count = savedCount }
        let result = try body()
        return (result, count)
    }

    @inline(__always)
    static func add(_ flops: Double) { if enabled { count += flops } }

    nonisolated(unsafe) static var timing = false
    nonisolated(unsafe) static var blasSeconds = 0.0
    static let lock = NSLock()

    /// Runs `body` counting FLOPs and the core-seconds spent inside BLAS GEMM calls (summed over
    /// threads; divide by wall time × threads for the share of compute in GEMMs).
    public static func profile<R>(_ body: () throws -> R) rethrows -> (result: R, flops: Double, blasCoreSeconds: Double) {
        let saved = (enabled, count, timing, blasSeconds)
        (enabled, count, timing, blasSeconds) = (true, 0, true, 0)
        defer { (enabled, count, timing, blasSeconds) = saved }
        let result = try body()
        return (result, count, blasSeconds)
    }

    /// Wraps one BLAS call, timing it when profiling.
    @inline(__always)
    static func timed(_ call: () -> Void) {
        guard timing else { call(); return }
        let start = DispatchTime.now().uptimeNanoseconds
        call()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        lock.lock()
        blasSeconds += seconds
        lock.unlock()
    }
}
