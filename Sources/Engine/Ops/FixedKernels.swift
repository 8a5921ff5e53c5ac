/// Winograd's transformed kernels (`winogradKernels`) kept across calls while the weights they
/// come from cannot change: a sampling epoch's 20 steps, or a LoRA epoch's training phase, where
/// every convolution kernel is frozen. Outside `withFixedKernels` each call transforms its kernel
/// again (about 10 ns per kernel pair: at batch 4, a tenth of the UNet's forward + backward).
enum FixedKernels {
    /// How many `withFixedKernels` scopes are open (on this thread: `ThreadState`).
    static var depth: Int {
        get { ThreadState.current.fixedKernelDepth }
        set { ThreadState.current.fixedKernelDepth = newValue }
    }
    /// By weight storage: the storage itself (held, so that its identity is not reused) and U.
    static var transformed: [ObjectIdentifier: (weight: Storage, kernels: Storage)] {
        get { ThreadState.current.fixedKernels }
        set { ThreadState.current.fixedKernels = newValue }
    }

    /// Whether `weight`'s transform is kept: inside a scope, when the weight is not recorded (so no
    /// optimizer step of this run can be updating it).
    static func keeps(_ weight: Tensor) -> Bool { depth > 0 && !Tensor.recording(weight) }

    /// U [16, O, C] for `weight` [O, C, 3, 3]: the kept one when `keeps(weight)`, else a fresh transform.
    static func winograd(_ weight: Tensor) -> Storage {
        let (o, c) = (weight.shape[0], weight.shape[1])
        let cacheable = keeps(weight)
        let state = ThreadState.current
        if cacheable, let kept = state.fixedKernels[ObjectIdentifier(weight.storage)] { return kept.kernels }
        let kernels = Storage(dtype: weight.dtype, count: 16 * o * c, zeroed: false)
        switch weight.dtype {
        case .float32: winogradKernels(weight.storage.pointer(Float.self), kernels.pointer(Float.self), outputs: o, inputs: c)
        case .float64: winogradKernels(weight.storage.pointer(Double.self), kernels.pointer(Double.self), outputs: o, inputs: c)
        }
        if cacheable { state.fixedKernels[ObjectIdentifier(weight.storage)] = (weight.storage, kernels) }
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
