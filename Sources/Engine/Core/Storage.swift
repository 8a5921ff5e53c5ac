#if os(Linux)
/// glibc's `mallopt` (declared in malloc.h, which the Glibc module does not export).
@_silgen_name("mallopt") private func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
private let mallocTrimThreshold: Int32 = -1, mallocMmapThreshold: Int32 = -3
#endif

/// A contiguous, 64-byte aligned buffer of `count` elements of one dtype. Tensors share a storage
/// when one is a reshaped view of another; optimizers update parameters in place through it.
public final class Storage: @unchecked Sendable {
    public let dtype: DType
    public let count: Int
    public let raw: UnsafeMutableRawPointer

    /// A buffer of `count` elements; zero-filled when `zeroed`, else uninitialized memory that the
    /// caller must overwrite completely.
    public init(dtype: DType, count: Int, zeroed: Bool = true) {
        _ = Storage.allocatorConfigured
        self.dtype = dtype
        self.count = count
        raw = UnsafeMutableRawPointer.allocate(byteCount: max(count * dtype.size, 1), alignment: 64)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: count * dtype.size) }
    }

    deinit { raw.deallocate() }

    /// Keeps large buffers in the heap: by default glibc maps each big allocation fresh from the
    /// kernel and returns it on free, so every op's output would page-fault its memory in again.
    private static let allocatorConfigured: Bool = {
        #if os(Linux)
        _ = mallopt(mallocMmapThreshold, 1 << 30)
        _ = mallopt(mallocTrimThreshold, 1 << 30)
        #endif
        return true
    }()

    /// The buffer as typed elements; `T` must match `dtype`.
    @inline(__always)
    public func pointer<T: Real>(_: T.Type = T.self) -> UnsafeMutablePointer<T> {
        assert(T.dtype == dtype, "storage of \(dtype) read as \(T.dtype)")
        return raw.assumingMemoryBound(to: T.self)
    }
}
