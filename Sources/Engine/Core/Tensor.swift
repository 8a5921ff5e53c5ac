import Foundation

/// An n-dimensional array of `Float` or `Double` in row-major (NCHW) order, and a node of the
/// reverse-mode autodiff graph: an op on tensors that require gradients records how to send the
/// gradient of its output back to its inputs.
///
/// A tensor's values do not change after it is made, except through `withMutableValues` (used by
/// optimizers and checkpoint loading on parameters).
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let storage: Storage
    /// Whether gradients flow to this tensor. Set it on leaf tensors (parameters, inputs).
    public var requiresGrad: Bool
    /// The accumulated gradient of a leaf that requires one, after `backward()`.
    public var grad: Tensor?
    /// The op that produced this tensor, when it was recorded for autodiff.
    var gradNode: GradNode?

    /// A tensor over an existing storage, which must hold exactly `shape.product` elements.
    public init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        precondition(shape.reduce(1, *) == storage.count,
                     "shape \(describe(shape)) does not hold \(storage.count) elements")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// A zero tensor.
    public convenience init(zeros shape: [Int], dtype: DType = .float32) {
        self.init(shape: shape, storage: Storage(dtype: dtype, count: shape.reduce(1, *)))
    }

    /// A tensor filled with `value`.
    public convenience init(repeating value: Double, shape: [Int], dtype: DType = .float32) {
        self.init(zeros: shape, dtype: dtype)
        switch dtype {
        case .float32: storage.pointer(Float.self).update(repeating: Float(value), count: count)
        case .float64: storage.pointer(Double.self).update(repeating: value, count: count)
        }
    }

    /// A tensor from values in row-major order; throws when the count does not fit the shape.
    public convenience init(_ values: [Double], shape: [Int], dtype: DType = .float32) throws {
        try checkShape(values.count == shape.reduce(1, *), "Tensor(_:shape:)",
                       "\(values.count) values for shape \(describe(shape))")
        self.init(zeros: shape, dtype: dtype)
        switch dtype {
        case .float32:
            let p = storage.pointer(Float.self)
            for i in values.indices { p[i] = Float(values[i]) }
        case .float64:
            let p = storage.pointer(Double.self)
            for i in values.indices { p[i] = values[i] }
        }
    }

    /// A Float32 tensor from values; throws when the count does not fit the shape.
    public convenience init(_ values: [Float], shape: [Int]) throws {
        try checkShape(values.count == shape.reduce(1, *), "Tensor(_:shape:)",
                       "\(values.count) values for shape \(describe(shape))")
        self.init(zeros: shape, dtype: .float32)
        values.withUnsafeBufferPointer { storage.pointer(Float.self).update(from: $0.baseAddress!, count: values.count) }
    }

    /// A scalar (rank-0) tensor.
    public convenience init(scalar: Double, dtype: DType = .float32) {
        self.init(repeating: scalar, shape: [], dtype: dtype)
    }

    public var dtype: DType { storage.dtype }
    public var count: Int { storage.count }
    public var rank: Int { shape.count }
    /// True for tensors that no recorded op produced (parameters, inputs, constants).
    public var isLeaf: Bool { gradNode == nil }

    /// The values in row-major order, as Doubles (for tests, logging and checks).
    public var values: [Double] {
        switch dtype {
        case .float32: return UnsafeBufferPointer(start: storage.pointer(Float.self), count: count).map(Double.init)
        case .float64: return Array(UnsafeBufferPointer(start: storage.pointer(Double.self), count: count))
        }
    }

    /// The values in row-major order, as Floats.
    public var floats: [Float] {
        switch dtype {
        case .float32: return Array(UnsafeBufferPointer(start: storage.pointer(Float.self), count: count))
        case .float64: return UnsafeBufferPointer(start: storage.pointer(Double.self), count: count).map(Float.init)
        }
    }

    /// The only value of a one-element tensor.
    public var item: Double {
        precondition(count == 1, "item of a tensor of shape \(describe(shape))")
        return values[0]
    }

    /// The value at a multi-index.
    public subscript(_ index: Int...) -> Double {
        precondition(index.count == rank, "index \(index) for shape \(describe(shape))")
        var offset = 0
        for (i, n) in zip(index, shape) {
            precondition(i >= 0 && i < n, "index \(index) out of range for shape \(describe(shape))")
            offset = offset * n + i
        }
        switch dtype {
        case .float32: return Double(storage.pointer(Float.self)[offset])
        case .float64: return storage.pointer(Double.self)[offset]
        }
    }

    /// Calls `body` with the typed buffer for reading.
    @inline(__always)
    public func withValues<T: Real, R>(_: T.Type, _ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
        try body(storage.pointer(T.self))
    }

    /// Overwrites the tensor's values in place (optimizers, checkpoint loading). Views that share
    /// the storage see the change.
    public func withMutableValues<T: Real, R>(_: T.Type, _ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
        try body(storage.pointer(T.self))
    }

    /// Overwrites this tensor's values with `source`'s (same count; dtype converted).
    public func assign(_ source: Tensor) {
        precondition(source.count == count, "assign \(source.count) values to \(count)")
        let converted = source.dtype == dtype ? source : source.to(dtype)
        storage.raw.copyMemory(from: converted.storage.raw, byteCount: count * dtype.size)
    }

    /// A new tensor with the same values and no autodiff history.
    public func copy() -> Tensor {
        let out = Tensor(shape: shape, storage: Storage(dtype: dtype, count: count, zeroed: false))
        out.storage.raw.copyMemory(from: storage.raw, byteCount: count * dtype.size)
        return out
    }

    /// The same values in another dtype (a copy, with no autodiff history).
    public func to(_ dtype: DType) -> Tensor {
        if dtype == self.dtype { return copy() }
        let out = Tensor(shape: shape, storage: Storage(dtype: dtype, count: count, zeroed: false))
        switch dtype {
        case .float32:
            let s = storage.pointer(Double.self), d = out.storage.pointer(Float.self)
            for i in 0..<count { d[i] = Float(s[i]) }
        case .float64:
            let s = storage.pointer(Float.self), d = out.storage.pointer(Double.self)
            for i in 0..<count { d[i] = Double(s[i]) }
        }
        return out
    }

    /// Whether every value is finite.
    public var isFinite: Bool {
        switch dtype {
        case .float32: return allFinite(storage.pointer(Float.self), count)
        case .float64: return allFinite(storage.pointer(Double.self), count)
        }
    }
}

private func allFinite<T: Real>(_ p: UnsafeMutablePointer<T>, _ n: Int) -> Bool {
    // x - x is NaN exactly when x is NaN or infinite; summing keeps the loop branch-free.
    var acc: T = 0
    for i in 0..<n { acc += p[i] - p[i] }
    return acc == 0
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = values.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor(\(describe(shape)), \(dtype)\(count > 0 ? ": " + shown : "")\(count > 8 ? ", …" : ""))"
    }
}
