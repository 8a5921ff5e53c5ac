import Engine
import Images
import Inputs

/// Settings of one generation call (with defaults that run).
public struct SamplingSettings: Codable, Equatable, Sendable {
    public var steps = 20
    public var eta = 1.0
    public var guidance = 5.0
    public var seed: UInt64 = 0

    public init() {}
}

extension LatentDiffusionModel {
    /// ε̂ with classifier-free guidance: one UNet call on [unconditional; conditional].
    func guidedEpsilon(_ x: Tensor, timestep t: Int, context: Tensor, mask: AttentionMask, empty: Tensor, emptyMask: AttentionMask,
                       guidance: Double) throws -> Tensor {
        try guidedEpsilon(x, timesteps: [Double](repeating: Double(t), count: x.shape[0]), context: context, mask: mask,
                          empty: empty, emptyMask: emptyMask, guidance: guidance)
    }

    /// ε̂ with classifier-free guidance at a timestep per sample (differentiable).
    public func guidedEpsilon(_ x: Tensor, timesteps: [Double], context: Tensor, mask: AttentionMask, empty: Tensor,
                              emptyMask: AttentionMask, guidance: Double) throws -> Tensor {
        let b = x.shape[0]
        guard guidance != 1 else { return try unet(x, timesteps: timesteps, context: context, contextMask: mask) }
        let both = try unet(concat([x, x], axis: 0), timesteps: timesteps + timesteps,
                            context: concat([empty, context], axis: 0),
                            contextMask: AttentionMask(keyValid: (emptyMask.keyValid ?? []) + (mask.keyValid ?? [])))
        let halves = try both.split(sizes: [b, b], axis: 0)
        return try classifierFreeGuidance(unconditional: halves[0], conditional: halves[1], scale: guidance)
    }

    /// Images for prompts by DDIM with η and classifier-free guidance, without gradients.
    /// `progress` gets each step's index.
    public func generate(_ prompts: [String], settings: SamplingSettings, progress: (Int) -> Void = { _ in }) throws -> [RGBImage] {
        try withNoGrad {
            let x = try denoise(prompts, settings: settings) { i, _, _ in progress(i) }
            return try ImageTensors.images(vae.decode(x / vae.scaleFactor.item))
        }
    }

    /// Images as the scaled latents the UNet models (the VAE's posterior means × the scale
    /// factor), without gradients: what `generate` decodes, and what fitting an image trains on.
    public func encodeLatents(_ images: [RGBImage]) throws -> Tensor {
        try withNoGrad { try vae.encode(ImageTensors.tensor(images)).mean * vae.scaleFactor.item }
    }

    /// The final latents of DDIM with η and guidance from x_T ~ N(0, I), all noise drawn from
    /// `settings.seed` in one stream. After each step, `afterStep` gets the step's index, the step
    /// and the new latents x_t′, which it may replace (Feynman–Kac steering resamples them).
    func denoise(_ prompts: [String], settings: SamplingSettings,
                 afterStep: (Int, DDIMStep, inout Tensor) throws -> Void) throws -> Tensor {
        guard !prompts.isEmpty else { throw DiffusionError.invalidSettings("no prompts") }
        let scheduler = try DDIMScheduler(schedule: schedule, stepCount: settings.steps, eta: settings.eta)
        var rng = RandomGenerator(seed: settings.seed)
        // No weight changes while it samples: the convolutions' transformed kernels are kept.
        return try withNoGrad { try withFixedKernels {
            let (context, mask) = try encodeText(prompts)
            let (empty, emptyMask) = try encodeText([String](repeating: "", count: prompts.count))
            var x = Tensor.randn([prompts.count, config.vae.latentChannels, latentSize, latentSize], using: &rng)
            for (i, t) in scheduler.timesteps.enumerated() {
                let epsilon = try guidedEpsilon(x, timestep: t, context: context, mask: mask, empty: empty, emptyMask: emptyMask,
                                                guidance: settings.guidance)
                let step = try scheduler.step(modelOutput: epsilon, timestep: t, sample: x, using: &rng)
                x = step.previousSample
                try afterStep(i, step, &x)
            }
            return x
        } }
    }
}
