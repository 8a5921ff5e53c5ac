import Engine
import Layers

/// The VAE's shape: 32×32×3 images ↔ 8×8×4 latents by default (one halving per level but the last).
public struct VAEConfig: Codable, Equatable, Sendable {
    public var imageChannels = 3
    public var latentChannels = 4
    public var blockChannels = [32, 64, 64]
    public var layersPerBlock = 1
    public var normGroups = 8

    public init() {}

    /// A tiny VAE for tests.
    public static var tiny: VAEConfig {
        var config = VAEConfig()
        config.blockChannels = [4, 8]
        config.latentChannels = 2
        config.normGroups = 2
        return config
    }

    /// Pixels per latent pixel along each side.
    public var downsamplingFactor: Int { 1 << (blockChannels.count - 1) }
}

/// The encoder half: conv_in, per level resnets and a stride-2 downsampler (all but the last),
/// a middle resnet, then GroupNorm → SiLU → conv_out to the latent mean and log-variance.
final class VAEEncoder: Module {
    let convIn: Conv2d, levels: [(resnets: [ResnetBlock2D], downsampler: Downsample2D?)], middle: ResnetBlock2D
    let normOut: GroupNorm, convOut: Conv2d

    init(_ config: VAEConfig, dtype: DType, using rng: inout RandomGenerator) {
        let channels = config.blockChannels
        convIn = Conv2d(config.imageChannels, channels[0], kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
        var levels: [(resnets: [ResnetBlock2D], downsampler: Downsample2D?)] = []
        var previous = channels[0]
        for (i, width) in channels.enumerated() {
            let resnets = (0..<config.layersPerBlock).map { j in
                ResnetBlock2D(j == 0 ? previous : width, width, timeDimension: nil, groups: config.normGroups, eps: 1e-6, dtype: dtype, using: &rng)
            }
            levels.append((resnets, i < channels.count - 1 ? Downsample2D(width, dtype: dtype, using: &rng) : nil))
            previous = width
        }
        self.levels = levels
        middle = ResnetBlock2D(previous, previous, timeDimension: nil, groups: config.normGroups, eps: 1e-6, dtype: dtype, using: &rng)
        normOut = GroupNorm(groups: config.normGroups, channels: previous, eps: 1e-6, dtype: dtype)
        convOut = Conv2d(previous, 2 * config.latentChannels, kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
    }

    var children: [(name: String, module: any Module)] {
        var result: [(name: String, module: any Module)] = [("conv_in", convIn)]
        for (i, level) in levels.enumerated() {
            result += level.resnets.enumerated().map { ("down_blocks.\(i).resnets.\($0.offset)", $0.element as any Module) }
            if let d = level.downsampler { result.append(("down_blocks.\(i).downsamplers.0", d)) }
        }
        return result + [("mid_block.resnets.0", middle), ("conv_norm_out", normOut), ("conv_out", convOut)]
    }

    /// Mean and log-variance [B, L, h, w] of q(z | x).
    func callAsFunction(_ x: Tensor) throws -> (mean: Tensor, logVariance: Tensor) {
        var h = try convIn(x)
        for level in levels {
            for resnet in level.resnets { h = try resnet(h) }
            if let d = level.downsampler { h = try d(h) }
        }
        let moments = try convOut(silu(normOut(middle(h))))
        let parts = try moments.split(sizes: [moments.shape[1] / 2, moments.shape[1] / 2], axis: 1)
        return (parts[0], clamp(parts[1], min: -30, max: 20))
    }
}

/// The decoder half, mirroring the encoder with nearest ×2 upsamplers.
final class VAEDecoder: Module {
    let convIn: Conv2d, middle: ResnetBlock2D, levels: [(resnets: [ResnetBlock2D], upsampler: Upsample2D?)]
    let normOut: GroupNorm, convOut: Conv2d

    init(_ config: VAEConfig, dtype: DType, using rng: inout RandomGenerator) {
        let channels = Array(config.blockChannels.reversed())
        convIn = Conv2d(config.latentChannels, channels[0], kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
        middle = ResnetBlock2D(channels[0], channels[0], timeDimension: nil, groups: config.normGroups, eps: 1e-6, dtype: dtype, using: &rng)
        var levels: [(resnets: [ResnetBlock2D], upsampler: Upsample2D?)] = []
        var previous = channels[0]
        for (i, width) in channels.enumerated() {
            let resnets = (0..<config.layersPerBlock).map { j in
                ResnetBlock2D(j == 0 ? previous : width, width, timeDimension: nil, groups: config.normGroups, eps: 1e-6, dtype: dtype, using: &rng)
            }
            levels.append((resnets, i < channels.count - 1 ? Upsample2D(width, dtype: dtype, using: &rng) : nil))
            previous = width
        }
        self.levels = levels
        normOut = GroupNorm(groups: config.normGroups, channels: previous, eps: 1e-6, dtype: dtype)
        convOut = Conv2d(previous, config.imageChannels, kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
    }

    var children: [(name: String, module: any Module)] {
        var result: [(name: String, module: any Module)] = [("conv_in", convIn), ("mid_block.resnets.0", middle)]
        for (i, level) in levels.enumerated() {
            result += level.resnets.enumerated().map { ("up_blocks.\(i).resnets.\($0.offset)", $0.element as any Module) }
            if let u = level.upsampler { result.append(("up_blocks.\(i).upsamplers.0", u)) }
        }
        return result + [("conv_norm_out", normOut), ("conv_out", convOut)]
    }

    func callAsFunction(_ z: Tensor) throws -> Tensor {
        var h = try middle(convIn(z))
        for level in levels {
            for resnet in level.resnets { h = try resnet(h) }
            if let u = level.upsampler { h = try u(h) }
        }
        return try convOut(silu(normOut(h)))
    }
}

/// A KL-regularized autoencoder (Kingma & Welling; Rombach et al.'s latent diffusion):
///     q(z | x) = N(μ(x), diag σ²(x)),  z = μ + σ·ε,  x̂ = D(z)
///     loss = ‖x̂ − x‖² (mean) + β · KL(q(z | x) ‖ N(0, I))  with
///     KL = ½ Σ (μ² + σ² − 1 − log σ²)  per sample (averaged over the batch).
/// The diffusion model works on `scaleFactor · z`; the factor (1 / std of the training latents)
/// is computed from data and stored with the weights.
public final class AutoencoderKL: Module {
    public let config: VAEConfig
    let encoder: VAEEncoder
    let decoder: VAEDecoder
    /// Multiplies latents so that they have unit variance on the training data.
    public let scaleFactor: Tensor

    public init(_ config: VAEConfig = VAEConfig(), dtype: DType = .float32, using rng: inout RandomGenerator) {
        self.config = config
        encoder = VAEEncoder(config, dtype: dtype, using: &rng)
        decoder = VAEDecoder(config, dtype: dtype, using: &rng)
        scaleFactor = Tensor(repeating: 1, shape: [1], dtype: dtype)
    }

    public var parameters: [(name: String, tensor: Tensor)] { [("scale_factor", scaleFactor)] }
    public var children: [(name: String, module: any Module)] { [("encoder", encoder), ("decoder", decoder)] }

    /// μ and log σ² of q(z | x) for images x [B, 3, H, W] in [−1, 1].
    public func encode(_ images: Tensor) throws -> (mean: Tensor, logVariance: Tensor) {
        let factor = config.downsamplingFactor
        guard images.rank == 4, images.shape[1] == config.imageChannels, images.shape[2] % factor == 0, images.shape[3] % factor == 0 else {
            throw EngineError.shapeMismatch(op: "AutoencoderKL.encode",
                                            "images \(images.shape) need [B, \(config.imageChannels), H, W] with H, W divisible by \(factor)")
        }
        return try encoder(images)
    }

    /// Images [B, 3, H, W] (about [−1, 1]) from latents z [B, L, h, w] (unscaled).
    public func decode(_ latents: Tensor) throws -> Tensor {
        guard latents.rank == 4, latents.shape[1] == config.latentChannels else {
            throw EngineError.shapeMismatch(op: "AutoencoderKL.decode", "latents \(latents.shape) need [B, \(config.latentChannels), h, w]")
        }
        return try decoder(latents)
    }

    /// z = μ + σ·ε with ε ~ N(0, I).
    public func sample(mean: Tensor, logVariance: Tensor, using rng: inout RandomGenerator) throws -> Tensor {
        try mean + exp(logVariance * 0.5) * Tensor.randn(mean.shape, dtype: mean.dtype, using: &rng)
    }

    /// KL(q ‖ N(0, I)) per sample [B].
    public static func klDivergence(mean: Tensor, logVariance: Tensor) throws -> Tensor {
        let perElement = try (square(mean) + exp(logVariance) - logVariance - 1) * 0.5
        return try perElement.reshaped([mean.shape[0], -1]).sum(axes: [1])
    }

    /// The training loss on a batch of images and its two parts.
    public func loss(_ images: Tensor, beta: Double, using rng: inout RandomGenerator) throws
        -> (total: Tensor, reconstruction: Tensor, kl: Tensor) {
        let (mean, logVariance) = try encode(images)
        let reconstruction = try mseLoss(decode(sample(mean: mean, logVariance: logVariance, using: &rng)), images)
        let kl = try AutoencoderKL.klDivergence(mean: mean, logVariance: logVariance).mean()
        return (try reconstruction + kl * beta, reconstruction, kl)
    }
}
