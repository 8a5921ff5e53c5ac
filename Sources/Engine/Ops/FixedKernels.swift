/// Winograd's transformed kernels (`winogradKernels`) kept across calls while the weights they
/// come from cannot change: a sampling epoch's 20 steps, or a LoRA epoch's training phase, where
/// every convolution kernel is frozen. Outside `withFixedKernels` each call transforms its kernel
/// again — at small batches that transform costs about what Winograd saves.
enum FixedKernels {
    /// How many `withFixedKernels` scopes are open.
    nonisolated(unsafe) static var depth = 0
    /// By weight storage: the storage itself (held, so that its identity is not reused) and U.
    nonisolated(unsafe) static var transformed: [ObjectIdentifier: (weight: Storage, kernels: Storage)] = [:]

    /// Whether `weight`'s transform is kept: inside a scope, when the weight is not recorded (so no
    /// optimizer step of this run can be updating it).
    static func keeps(_ weight: Tensor) -> Bool { depth > 0 && !Tensor.recording(weight) }

    /// U [16, O, C] for `weight` [O, C, 3, 3]: the kept one when `keeps(weight)`, else a fresh transform.
    static func winograd(_ weight: Tensor) -> Storage {
        let (o, c) = (weight.shape[0], weight.shape[1])
        let cacheable = keeps(weight)
        if cacheable, let kept = transformed[ObjectIdentifier(weight.storage)] { return kept.kernels }
        let kernels = Storage(dtype: weight.dtype, count: 16 * o * c, zeroed: false)
        switch weight.dtype {
        case .float32: winogradKernels(weight.storage.pointer(Float.self), kernels.pointer(Float.self), outputs: o, inputs: c)
        case .float64: winogradKernels(weight.storage.pointer(Double.self), kernels.pointer(Double.self), outputs: o, inputs: c)
        }
        if cacheable { transformed[ObjectIdentifier(weight.storage)] = (weight.storage, kernels) }
        return kernels
    }
}

/// Runs `body` with the transformed kernels of the convolutions it calls kept from call to call.
/// The caller promises that no convolution weight read without gradients inside `body` changes
/// there (weights that record gradients are never cached); the kept kernels are dropped when the
/// outermost scope ends.
public func withFixedKernels<R>(_ body: () throws -> R) rethrows -> R {
    FixedKernels.depth += 1
    defer {
        FixedKernels.depth -= 1
        if FixedKernels.depth == 0 { FixedKernels.transformed = [:] }
    }
    return try body()
}
