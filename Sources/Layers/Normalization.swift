import Engine

/// Group normalization with per-channel affine (`torch.nn.GroupNorm`).
public final class GroupNorm: Module {
    public let groups: Int
    public let eps: Double
    public let weight: Tensor?
    public let bias: Tensor?

    public init(groups: Int, channels: Int, eps: Double = 1e-5, affine: Bool = true, dtype: DType = .float32) {
        self.groups = groups
        self.eps = eps
        weight = affine ? .parameter([channels], value: 1, dtype: dtype) : nil
        bias = affine ? .parameter([channels], value: 0, dtype: dtype) : nil
    }

    public var parameters: [(name: String, tensor: Tensor)] {
        [weight.map { (name: "weight", tensor: $0) }, bias.map { (name: "bias", tensor: $0) }].compactMap { $0 }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try groupNorm(x, groups: groups, weight: weight, bias: bias, eps: eps)
    }
}

/// Layer normalization over the last dimension (`torch.nn.LayerNorm`).
public final class LayerNorm: Module {
    public let eps: Double
    public let weight: Tensor?
    public let bias: Tensor?

    public init(_ dimension: Int, eps: Double = 1e-5, affine: Bool = true, dtype: DType = .float32) {
        self.eps = eps
        weight = affine ? .parameter([dimension], value: 1, dtype: dtype) : nil
        bias = affine ? .parameter([dimension], value: 0, dtype: dtype) : nil
    }

    public var parameters: [(name: String, tensor: Tensor)] {
        [weight.map { (name: "weight", tensor: $0) }, bias.map { (name: "bias", tensor: $0) }].compactMap { $0 }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try layerNorm(x, weight: weight, bias: bias, eps: eps)
    }
}

/// RMS normalization over the last dimension with a learned scale.
public final class RMSNorm: Module {
    public let eps: Double
    public let weight: Tensor

    public init(_ dimension: Int, eps: Double = 1e-6, dtype: DType = .float32) {
        self.eps = eps
        weight = .parameter([dimension], value: 1, dtype: dtype)
    }

    public var parameters: [(name: String, tensor: Tensor)] { [(name: "weight", tensor: weight)] }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try rmsNorm(x, weight: weight, eps: eps)
    }
}
