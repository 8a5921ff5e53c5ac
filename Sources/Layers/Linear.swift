import Engine

/// A layer that maps the last dimension of its input: Linear, or Linear with a LoRA adapter.
public protocol LinearLayer: Module {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    func callAsFunction(_ x: Tensor) throws -> Tensor
}

/// y = x·Wᵀ + b, for x [..., in] (`torch.nn.Linear`; weight [out, in]).
public final class Linear: LinearLayer {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, dtype: DType = .float32,
                using rng: inout RandomGenerator) {
        let bound = 1 / Double(inFeatures).squareRoot()
        weight = .parameter([outFeatures, inFeatures], bound: bound, dtype: dtype, using: &rng)
        self.bias = bias ? .parameter([outFeatures], bound: bound, dtype: dtype, using: &rng) : nil
    }

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    public var parameters: [(name: String, tensor: Tensor)] {
        [(name: "weight", tensor: weight)] + (bias.map { [(name: "bias", tensor: $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try Linear.apply(x, weight: weight, bias: bias) }

    /// x·Wᵀ + b over the last axis of x, for any weight [out, in] (a LoRA adapter's merged one too).
    static func apply(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        guard x.shape.last == weight.shape[1] else {
            throw EngineError.shapeMismatch(op: "Linear", "input \(x.shape) for weight \(weight.shape)")
        }
        let rows = try x.reshaped([-1, weight.shape[1]])
        return try linear(rows, weight: weight, bias: bias).reshaped(Array(x.shape.dropLast()) + [weight.shape[0]])
    }
}
