import Engine

/// A table of learned vectors looked up by integer id (`torch.nn.Embedding`), initialized N(0, 1).
public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ dimension: Int, dtype: DType = .float32, using rng: inout RandomGenerator) {
        weight = Tensor.randn([count, dimension], dtype: dtype, using: &rng)
        weight.requiresGrad = true
    }

    public var parameters: [(name: String, tensor: Tensor)] { [(name: "weight", tensor: weight)] }

    /// Vectors for `ids` laid out in `shape`: result [shape..., dimension].
    public func callAsFunction(_ ids: [Int], shape: [Int]) throws -> Tensor {
        try embedding(weight, ids: ids, shape: shape)
    }
}
