import Engine

/// 2-D convolution layer (`torch.nn.Conv2d` with square kernel, groups = 1): weight [O, C, k, k].
public final class Conv2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int
    public let padding: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true, dtype: DType = .float32, using rng: inout RandomGenerator) {
        let bound = 1 / Double(inChannels * kernelSize * kernelSize).squareRoot()
        weight = .parameter([outChannels, inChannels, kernelSize, kernelSize], bound: bound, dtype: dtype, using: &rng)
        self.bias = bias ? .parameter([outChannels], bound: bound, dtype: dtype, using: &rng) : nil
        self.stride = stride
        self.padding = padding
    }

    public var parameters: [(name: String, tensor: Tensor)] {
        [(name: "weight", tensor: weight)] + (bias.map { [(name: "bias", tensor: $0)] } ?? [])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }
}
