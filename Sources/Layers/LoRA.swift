import Engine

/// Which rows of a batch the LoRA adapters sharing this gate act on: every row (`open == nil`,
/// the default) or the rows marked true — a diffusion UNet's adapter that acts only at noisy
/// timesteps, say. All adapters of a model share one gate, so the model sets it once per forward
/// from what it knows about each row (its timestep); the adapters only see batch rows.
public final class AdapterGate {
    /// Per batch row, whether the adapters act on it; nil: on every row.
    public var open: [Bool]?

    public init(open: [Bool]? = nil) { self.open = open }
}

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
    /// Limits the adapter to some rows of the batch (dimension 0 of the input); nil: every row.
    public var gate: AdapterGate?
    /// W + (α/r)·B·A in a tensor of its own, while `withMergedAdapters` runs: forward passes that
    /// record nothing then cost one GEMM, and the base weight is never written (merging into it and
    /// out again would not give back the same floats).
    var mergedWeight: Tensor?

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
        if let mergedWeight, !GradMode.isEnabled { return try Linear.apply(x, weight: mergedWeight, bias: base.bias) }
        if isMerged { return try base(x) }
        let open = gate?.open
        if let open {
            guard x.rank >= 2, x.shape[0] == open.count else {
                throw EngineError.shapeMismatch(op: "LoRALinear", "input \(x.shape) for a gate over \(open.count) rows")
            }
            if !open.contains(true) { return try base(x) }
        }
        guard x.shape.last == inFeatures else {
            throw EngineError.shapeMismatch(op: "LoRALinear", "input \(x.shape) for \(inFeatures) features")
        }
        let rows = try x.reshaped([-1, inFeatures])
        guard let open, open.contains(false) else {
            // Every row adapted: the base map and the update as one op.
            return try lowRankLinear(rows, weight: base.weight, bias: base.bias, down: down, up: up, scale: scale)
                .reshaped(Array(x.shape.dropLast()) + [outFeatures])
        }
        // Some rows closed: zero their update; the mask is a constant, so their rows get no gradient either.
        let y = try base(x)
        let update = try matmul(matmul(rows, down, transposeB: true), up, transposeB: true) * scale
        let mask = try Tensor(open.map { $0 ? 1 : 0 }, shape: [open.count, 1], dtype: y.dtype)
        return try y + (update.reshaped([open.count, -1]) * mask).reshaped(y.shape)
    }

    /// Adds (α/r)·B·A into the base weight, so inference costs one GEMM. A gated adapter cannot
    /// be merged: the merged weight would act on every row.
    public func merge() throws {
        guard !isMerged else { return }
        guard gate == nil else { throw EngineError.invalidArgument(op: "LoRA", "a gated adapter cannot be merged into its base weight") }
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
        try withNoGrad { base.weight.assign(try base.weight + mergedDelta(sign: sign)) }
    }

    /// sign·(α/r)·B·A, the adapter's update to the base weight.
    private func mergedDelta(sign: Double = 1) throws -> Tensor { try withNoGrad { try matmul(up, down) * (sign * scale) } }

    /// Keeps W + (α/r)·B·A beside the base weight (nil again with `keep` false); a gated adapter
    /// keeps none, since its update acts on some rows only.
    func keepMergedWeight(_ keep: Bool) throws {
        mergedWeight = keep && gate == nil && !isMerged ? try withNoGrad { try base.weight + mergedDelta() } : nil
    }
}

/// Runs `body` with every ungated LoRA adapter under `module` holding its merged weight, so that
/// the forward passes in `body` that record no gradient (sampling) run one GEMM per adapted
/// projection instead of three; recording passes keep the adapter's own path. The adapters must
/// not change inside `body` (the merged weights are taken once, at its start).
public func withMergedAdapters<R>(in module: any Module, _ body: () throws -> R) throws -> R {
    var adapters: [LoRALinear] = []
    try mapProjections(of: module, targets: [.attention, .feedForward]) { layer in
        if let adapter = layer as? LoRALinear { adapters.append(adapter) }
        return layer
    }
    for adapter in adapters { try adapter.keepMergedWeight(true) }
    defer { for adapter in adapters { try? adapter.keepMergedWeight(false) } }
    return try body()
}

/// Which projections LoRA adapts: attention (q, k, v, out) — DDPO's default — and the MLPs of
/// transformer layers (`FeedForward` fc1, fc2), as LLaVA-Reward adapts its decoder.
public struct LoRATargets: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let attention = LoRATargets(rawValue: 1)
    public static let feedForward = LoRATargets(rawValue: 2)
}

/// Calls `transform` on each projection of `node` that `targets` names and puts back what it returns.
private func mapProjections(of node: any Module, targets: LoRATargets,
                            _ transform: (any LinearLayer) throws -> any LinearLayer) rethrows {
    if targets.contains(.attention), let attention = node as? MultiHeadAttention {
        attention.toQ = try transform(attention.toQ)
        attention.toK = try transform(attention.toK)
        attention.toV = try transform(attention.toV)
        attention.toOut = try transform(attention.toOut)
    }
    if targets.contains(.feedForward), let mlp = node as? FeedForward {
        mlp.fc1 = try transform(mlp.fc1)
        mlp.fc2 = try transform(mlp.fc2)
    }
    for child in node.children { try mapProjections(of: child.module, targets: targets, transform) }
}

/// Wraps the projections `targets` names, everywhere in the tree under `module`, in LoRA
/// adapters: afterwards only the adapters train. Returns the adapters' parameters, by their
/// names in the tree (`….attn1.to_q.lora_down.weight`). With `gate`, every adapter acts only
/// on the rows the gate opens.
@discardableResult
public func applyLoRA(to module: any Module, rank: Int, alpha: Double? = nil, targets: LoRATargets = .attention,
                      gate: AdapterGate? = nil, using rng: inout RandomGenerator) throws -> [(name: String, tensor: Tensor)] {
    try checkLoRARank(rank)
    module.setTrainable(false)
    mapProjections(of: module, targets: targets) { layer in
        guard let linear = layer as? Linear else { return layer }
        let adapter = LoRALinear(base: linear, rank: rank, alpha: alpha, using: &rng)
        adapter.gate = gate
        return adapter
    }
    return module.trainableParameters()
}

func checkLoRARank(_ rank: Int) throws {
    guard rank >= 1 else { throw EngineError.invalidArgument(op: "LoRA", "rank \(rank) must be at least 1") }
}

/// Merges every LoRA adapter under `module` into its base weight and puts the base layer back,
/// so the module has its original parameter names again (to save a fine-tuned model that loads
/// like the base one).
public func mergeAndRemoveLoRA(from module: any Module) throws {
    try mapProjections(of: module, targets: [.attention, .feedForward]) { layer in
        guard let adapter = layer as? LoRALinear else { return layer }
        try adapter.merge()
        return adapter.base
    }
}
