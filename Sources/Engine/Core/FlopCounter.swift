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
}
