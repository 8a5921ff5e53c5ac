import Engine

/// A Linear layer with a low-rank adapter: y = x·Wᵀ + b + (α/r)·(x·Aᵀ)·Bᵀ, A [r, in], B [out, r].
/// Only A and B train; B starts at zero so the adapted layer starts equal to the base. The base
/// keeps its own parameter names, so a base checkpoint loads into the adapted model unchanged.
public final class LoRALinear: LinearLayer {
    public let base: Linear
    /// A, `lora_down.weight` [r, in].
    public let down: Tensor
    /// B, `lora_up.weight` [out, r].
    public let up: Tensor
    public let rank: Int
    public let alpha: Double
    /// Whether the adapter has been added into the base weight.
    public private(set) var isMerged = false

    public var scale: Double { alpha / Double(rank) }
    public var inFeatures: Int { base.inFeatures }
    public var outFeatures: Int { base.outFeatures }

    public init(base: Linear, rank: Int, alpha: Double? = nil, using rng: inout RandomGenerator) {
        self.base = base
        self.rank = rank
        self.alpha = alpha ?? Double(rank)
        base.setTrainable(false)
        down = .parameter([rank, base.inFeatures], bound: 1 / Double(base.inFeatures).squareRoot(),
                          dtype: base.weight.dtype, using: &rng)
        up = .parameter([base.outFeatures, rank], value: 0, dtype: base.weight.dtype)
    }

    public var parameters: [(name: String, tensor: Tensor)] {
        base.parameters + [(name: "lora_down.weight", tensor: down), (name: "lora_up.weight", tensor: up)]
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let y = try base(x)
        if isMerged { return y }
        let rows = try x.reshaped([-1, inFeatures])
        let update = try matmul(matmul(rows, down, transposeB: true), up, transposeB: true) * scale
        return try y + update.reshaped(y.shape)
    }

    /// Adds (α/r)·B·A into the base weight, so inference costs one GEMM.
    public func merge() throws {
        guard !isMerged else { return }
        try addDelta(sign: 1)
        isMerged = true
    }

    /// Removes the merged update from the base weight again.
    public func unmerge() throws {
        guard isMerged else { return }
        try addDelta(sign: -1)
        isMerged = false
    }

    private func addDelta(sign: Double) throws {
        try withNoGrad {
            let delta = try matmul(up, down) * (sign * scale)
            base.weight.assign(try base.weight + delta)
        }
    }
}
