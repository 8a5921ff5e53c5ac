import Foundation

/// The engine's per-thread settings: whether ops record, how many threads an op may split into,
/// and the kept Winograd kernels. Per thread, so that several workers of one process (each taking
/// its own rows of a batch through the whole network) can run models side by side — one in a
/// backward pass, which records nothing, while another records its forward.
final class ThreadState {
    /// Whether ops are recorded (`GradMode`).
    var gradEnabled = true
    /// How many blocks an op may split into (`Threads`).
    var threads: Int
    /// `FixedKernels`: open scopes, and the kept transforms by weight storage.
    var fixedKernelDepth = 0
    var fixedKernels: [ObjectIdentifier: (weight: Storage, kernels: Storage)] = [:]
    /// Where `FlopCounter` counts (nil: not counting); kernel threads borrow their caller's.
    var tally: FlopCounter.Tally?

    init(threads: Int) { self.threads = threads }

    /// A new thread starts from this thread count (the last `Threads.set` of any thread).
    nonisolated(unsafe) static var defaultThreads = 1

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        // The state is retained for its thread and released when the thread ends.
        pthread_key_create(&key) { pointer in Unmanaged<ThreadState>.fromOpaque(pointer!).release() }
        return key
    }()

    /// The calling thread's state, created on first use.
    @inline(__always) static var current: ThreadState {
        if let pointer = pthread_getspecific(key) { return Unmanaged<ThreadState>.fromOpaque(pointer).takeUnretainedValue() }
        let state = ThreadState(threads: defaultThreads)
        pthread_setspecific(key, Unmanaged.passRetained(state).toOpaque())
        return state
    }
}
