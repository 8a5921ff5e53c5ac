/// A contiguous, 64-byte aligned buffer of `count` elements of one dtype. Tensors share a storage
/// when one is a reshaped view of another; optimizers update parameters in place through it.
public final class Storage: @unchecked Sendable {
    public let dtype: DType
    public let count: Int
    public let raw: UnsafeMutableRawPointer

    /// A buffer of `count` elements; zero-filled when `zeroed`, else uninitialized memory that the
    /// caller must overwrite completely.
    public init(dtype: DType, count: Int, zeroed: Bool = true) {
        self.dtype = dtype
        self.count = count
        raw = UnsafeMutableRawPointer.allocate(byteCount: max(count * dtype.size, 1), alignment: 64)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: count * dtype.size) }
    }

    deinit { raw.deallocate() }

    /// The buffer as typed elements; `T` must match `dtype`.
    @inline(__always)
    public func pointer<T: Real>(_: T.Type = T.self) -> UnsafeMutablePointer<T> {
        assert(T.dtype == dtype, "storage of \(dtype) read as \(T.dtype)")
        return raw.assumingMemoryBound(to: T.self)
    }
}
