import Engine
import Images
import Inputs

/// What one sampling batch records for policy-gradient training (DDPO): every latent of the
/// trajectory, the timesteps, and per step the Gaussian mean μ_θ, σ_t and log π(x_t′ | x_t, c).
public struct Trajectories {
    public var prompts: [String]
    /// x_T, …, x_{t_last}′: `timesteps.count + 1` tensors [B, C, h, w].
    public var latents: [Tensor]
    /// Sampling timesteps, noisiest first.
    public var timesteps: [Int]
    /// σ_t per step.
    public var sigmas: [Double]
    /// μ_θ per step, [B, C, h, w] (the policy's mean at sampling time, for the KL to a reference).
    public var means: [Tensor]
    /// log π per step, each [B].
    public var logProbs: [Tensor]
    /// The decoded final latents.
    public var images: [RGBImage]

    public var count: Int { prompts.count }
    public var stepCount: Int { timesteps.count }

    /// Several batches sampled with the same settings, as one.
    public static func concatenated(_ parts: [Trajectories]) throws -> Trajectories {
        guard let first = parts.first else { throw DiffusionError.invalidSettings("no trajectories to concatenate") }
        guard parts.allSatisfy({ $0.timesteps == first.timesteps }) else {
            throw DiffusionError.invalidSettings("trajectories with different timesteps cannot be concatenated")
        }
        if parts.count == 1 { return first }
        func joined(_ column: (Trajectories) -> [Tensor]) throws -> [Tensor] {
            try (0..<column(first).count).map { i in try concat(parts.map { column($0)[i] }, axis: 0) }
        }
        return Trajectories(prompts: parts.flatMap(\.prompts), latents: try joined(\.latents), timesteps: first.timesteps,
                            sigmas: first.sigmas, means: try joined(\.means), logProbs: try joined(\.logProbs),
                            images: parts.flatMap(\.images))
    }
}

extension LatentDiffusionModel {
    /// Samples `prompts` as a stochastic policy (η > 0 is required) and records the trajectories,
    /// without gradients. `initialLatents` [B, C, h, w] replaces the drawn x_T (samples sharing an
    /// x_T differ only by the policy's own noise); `stepNoise(i)`, when not nil, is the noise z
    /// [B, C, h, w] of step i instead of a drawn one (common random numbers across samples).
    public func sampleTrajectories(_ prompts: [String], settings: SamplingSettings, initialLatents: Tensor? = nil,
                                   stepNoise: (Int) throws -> Tensor? = { _ in nil },
                                   using rng: inout RandomGenerator, progress: (Int) -> Void = { _ in }) throws -> Trajectories {
        guard !prompts.isEmpty else { throw DiffusionError.invalidSettings("no prompts") }
        guard settings.eta > 0 else {
            throw DiffusionError.degeneratePolicy("η = \(settings.eta) makes every step deterministic; policy-gradient training needs η > 0")
        }
        let scheduler = try DDIMScheduler(schedule: schedule, stepCount: settings.steps, eta: settings.eta)
        // No weight changes while it samples: the convolutions' transformed kernels are kept.
        return try withNoGrad { try withFixedKernels {
            let (context, mask) = try encodeText(prompts)
            let (empty, emptyMask) = try encodeText([String](repeating: "", count: prompts.count))
            let shape = [prompts.count, config.vae.latentChannels, latentSize, latentSize]
            if let initialLatents, initialLatents.shape != shape {
                throw EngineError.shapeMismatch(op: "sampleTrajectories", "initial latents \(initialLatents.shape) for \(shape)")
            }
            var x = initialLatents ?? Tensor.randn(shape, using: &rng)
            var latents = [x], means: [Tensor] = [], logProbs: [Tensor] = [], sigmas: [Double] = []
            for (i, t) in scheduler.timesteps.enumerated() {
                let epsilon = try guidedEpsilon(x, timestep: t, context: context, mask: mask, empty: empty, emptyMask: emptyMask,
                                                guidance: settings.guidance)
                let step = try scheduler.step(modelOutput: epsilon, timestep: t, sample: x, noise: stepNoise(i), using: &rng,
                                              requireDensity: true)
                x = step.previousSample
                latents.append(x)
                means.append(step.mean)
                logProbs.append(step.logProb)
                sigmas.append(step.sigma)
                progress(i)
            }
            let images = try ImageTensors.images(vae.decode(x / vae.scaleFactor.item))
            return Trajectories(prompts: prompts, latents: latents, timesteps: scheduler.timesteps, sigmas: sigmas,
                                means: means, logProbs: logProbs, images: images)
        } }
    }

    /// Recomputes step `step` of the stored trajectories for the samples `indices` under the
    /// model's current parameters, with gradients: the mean μ_θ and log π of the stored x_t′.
    /// `context` is the text encoding of those samples' prompts (the text encoder is not trained
    /// here, so callers encode once).
    public func stepLogProb(_ trajectories: Trajectories, step: Int, indices: [Int], context: (Tensor, AttentionMask),
                            empty: (Tensor, AttentionMask), settings: SamplingSettings) throws -> DDIMStep {
        try stepLogProbs(trajectories, steps: [step], indices: indices, context: context, empty: empty, settings: settings)[0]
    }

    /// `stepLogProb` for several steps of the same samples in one UNet pass: the steps' latents
    /// stacked along the batch, each row at its own timestep, so the network sees
    /// `steps.count × indices.count` rows (twice that with guidance) instead of `steps.count`
    /// passes of `indices.count`. Each step's result is computed from its rows alone, so it equals
    /// `stepLogProb`'s; only the GEMMs are larger. One step per result, in the order of `steps`.
    public func stepLogProbs(_ trajectories: Trajectories, steps: [Int], indices: [Int], context: (Tensor, AttentionMask),
                             empty: (Tensor, AttentionMask), settings: SamplingSettings) throws -> [DDIMStep] {
        guard !steps.isEmpty else { throw DiffusionError.invalidSettings("no step to recompute") }
        if let bad = steps.first(where: { !(0 ..< trajectories.stepCount).contains($0) }) {
            throw DiffusionError.invalidSettings("step \(bad) of \(trajectories.stepCount)")
        }
        guard context.0.shape[0] == indices.count, empty.0.shape[0] == indices.count else {
            throw EngineError.shapeMismatch(op: "stepLogProbs", "context \(context.0.shape) for \(indices.count) samples")
        }
        let scheduler = try DDIMScheduler(schedule: schedule, stepCount: trajectories.stepCount, eta: settings.eta)
        guard scheduler.timesteps == trajectories.timesteps else {
            throw DiffusionError.invalidSettings("trajectories were sampled with other timesteps than \(trajectories.stepCount) steps give")
        }
        let x = try steps.map { try trajectories.latents[$0].indexSelect(axis: 0, indices) }
        /// The context repeated once per step, masks with it.
        func stacked(_ encoding: (Tensor, AttentionMask)) throws -> (Tensor, AttentionMask) {
            guard steps.count > 1 else { return encoding }
            let mask = encoding.1.keyValid.map { rows in AttentionMask(keyValid: Array(repeating: rows, count: steps.count).flatMap { $0 }) } ?? encoding.1
            return (try concat(Array(repeating: encoding.0, count: steps.count), axis: 0), mask)
        }
        let (c, e) = (try stacked(context), try stacked(empty))
        let timesteps = steps.flatMap { [Double](repeating: Double(trajectories.timesteps[$0]), count: indices.count) }
        let epsilon = try guidedEpsilon(steps.count > 1 ? concat(x, axis: 0) : x[0], timesteps: timesteps, context: c.0, mask: c.1,
                                        empty: e.0, emptyMask: e.1, guidance: settings.guidance)
        let parts = steps.count > 1 ? try epsilon.split(sizes: [Int](repeating: indices.count, count: steps.count), axis: 0) : [epsilon]
        var unused = RandomGenerator(seed: 0)
        return try zip(steps, zip(x, parts)).map { s, pair in
            let next = try trajectories.latents[s + 1].indexSelect(axis: 0, indices)
            return try scheduler.step(modelOutput: pair.1, timestep: trajectories.timesteps[s], sample: pair.0, previousSample: next,
                                      using: &unused, requireDensity: true)
        }
    }
}

extension Trajectories {
    /// The samples at `indices`, in that order.
    public func subset(_ indices: [Int]) throws -> Trajectories {
        Trajectories(prompts: indices.map { prompts[$0] }, latents: try latents.map { try $0.indexSelect(axis: 0, indices) }, timesteps: timesteps,
                     sigmas: sigmas, means: try means.map { try $0.indexSelect(axis: 0, indices) },
                     logProbs: try logProbs.map { try $0.indexSelect(axis: 0, indices) }, images: indices.map { images[$0] })
    }

    /// The trajectories as bytes (`ByteWriter`), for gathering the samples several processes drew;
    /// `init(encoded:)` reads them back exactly (tensors keep their dtype).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.put(prompts.count)
        for prompt in prompts { writer.put(prompt) }
        writer.put(timesteps.map(Double.init))
        writer.put(sigmas)
        for list in [latents, means, logProbs] {
            writer.put(list.count)
            for tensor in list {
                writer.put(tensor.shape.map(Double.init))
                writer.put(tensor.dtype == .float64 ? 1 : 0)
                if tensor.dtype == .float64 { writer.put(tensor.values) } else { writer.put(tensor.floats) }
            }
        }
        writer.put(images.count)
        for image in images { writer.put(image) }
        return writer.bytes
    }

    public init(encoded bytes: [UInt8]) throws {
        var reader = ByteReader(bytes, source: "trajectories")
        prompts = try (0..<reader.int()).map { _ in try reader.string() }
        timesteps = try reader.doubles().map { Int($0) }
        sigmas = try reader.doubles()
        var lists: [[Tensor]] = []
        for _ in 0..<3 {
            lists.append(try (0..<reader.int()).map { _ in
                let shape = try reader.doubles().map { Int($0) }
                return try reader.int() == 1 ? try Tensor(try reader.doubles(), shape: shape, dtype: .float64) : try Tensor(try reader.floats(), shape: shape)
            })
        }
        (latents, means, logProbs) = (lists[0], lists[1], lists[2])
        images = try (0..<reader.int()).map { _ in try reader.image() }
        guard reader.isAtEnd, latents.count == timesteps.count + 1, means.count == timesteps.count, logProbs.count == timesteps.count,
              images.count == prompts.count else {
            throw DiffusionError.invalidSettings("gathered trajectories are inconsistent")
        }
    }
}
