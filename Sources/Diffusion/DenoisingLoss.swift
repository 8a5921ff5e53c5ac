import Engine

extension LatentDiffusionModel {
    /// Each sample's denoising error, mean((ε̂(x_t, t, c_i) − ε)²) [B], for clean latents `x0`
    /// [B, C, h, w] noised with `noise` at `timesteps` (differentiable in the UNet). ε̂ is the
    /// prediction with classifier-free guidance at `guidance` (1: the conditional branch alone);
    /// differentiable in the text encoder too when its parameters require gradients.
    public func denoisingErrors(x0: Tensor, captions: [String], timesteps: [Int], noise: Tensor, guidance: Double) throws -> Tensor {
        let n = x0.shape.first ?? 0
        guard x0.rank == 4, captions.count == n, timesteps.count == n, noise.shape == x0.shape else {
            throw EngineError.shapeMismatch(op: "denoisingErrors",
                                            "latents \(x0.shape) and noise \(noise.shape) for \(captions.count) captions and \(timesteps.count) timesteps")
        }
        let noisy = try schedule.addNoise(x0, noise: noise, timesteps: timesteps)
        let (text, emptyText) = (try encodeText(captions), try encodeText(captions.map { _ in "" }))
        let prediction = try guidedEpsilon(noisy, timesteps: timesteps.map(Double.init), context: text.context, mask: text.mask,
                                           empty: emptyText.context, emptyMask: emptyText.mask, guidance: guidance)
        return try mseLoss(prediction, schedule.target(x0: x0, noise: noise, timesteps: timesteps), reduction: .none).mean(axes: [1, 2, 3])
    }

    /// `n` timesteps drawn uniformly from `range` (default: the whole schedule).
    public func drawTimesteps(_ n: Int, in range: Range<Int>? = nil, using rng: inout RandomGenerator) throws -> [Int] {
        let range = range ?? 0 ..< schedule.trainSteps
        guard !range.isEmpty, range.lowerBound >= 0, range.upperBound <= schedule.trainSteps else {
            throw EngineError.invalidArgument(op: "drawTimesteps", "timesteps \(range) outside 0..<\(schedule.trainSteps)")
        }
        return (0..<n).map { _ in range.lowerBound + Int(rng.next() % UInt64(range.count)) }
    }

    /// The denoising loss on clean latents `x0` of the model as it samples: Σ_i w_i · (denoising
    /// error of sample i), with ε̂ guided at `guidance`, timesteps uniform in `timesteps` and the
    /// noise drawn from `rng`. Advantage-weighted regression trains the guided prediction because
    /// that is the policy: fitting the conditional branch alone to guided samples compounds the
    /// guidance at every round.
    ///
    /// With `rows`, only those rows' terms are computed and summed, but every row's timestep and
    /// noise is drawn: the processes of a data-parallel run each compute their rows of one batch
    /// from the same stream, and their sums add up to the whole batch's.
    public func weightedDenoisingLoss(x0: Tensor, captions: [String], weights: [Double], guidance: Double,
                                      timesteps range: Range<Int>? = nil, rows: [Int]? = nil,
                                      using rng: inout RandomGenerator) throws -> Tensor {
        let n = x0.shape.first ?? 0
        guard weights.count == n, captions.count == n else {
            throw EngineError.shapeMismatch(op: "weightedDenoisingLoss", "latents \(x0.shape) for \(weights.count) weights and \(captions.count) captions")
        }
        let timesteps = try drawTimesteps(n, in: range, using: &rng)
        let noise = Tensor.randn(x0.shape, using: &rng)
        let selected = rows ?? Array(0..<n)
        guard rows == nil || (!selected.isEmpty && selected.allSatisfy { (0..<n).contains($0) }) else {
            throw EngineError.invalidArgument(op: "weightedDenoisingLoss", "rows \(selected): none, or outside a batch of \(n)")
        }
        // The whole batch needs no copy.
        func rowsOf(_ tensor: Tensor) throws -> Tensor { rows == nil ? tensor : try tensor.indexSelect(axis: 0, selected) }
        let errors = try denoisingErrors(x0: rowsOf(x0), captions: selected.map { captions[$0] }, timesteps: selected.map { timesteps[$0] },
                                         noise: rowsOf(noise), guidance: guidance)
        return try (errors * Tensor(selected.map { weights[$0] }, shape: [selected.count], dtype: errors.dtype)).sum()
    }
}
