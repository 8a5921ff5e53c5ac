import Engine
import Layers

/// A down level: resnets (each followed by a transformer in cross-attention levels), then a
/// stride-2 downsampler except at the last level. Every layer's output is kept for the skips.
final class DownBlock: Module {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2D]
    let downsampler: Downsample2D?

    init(_ input: Int, _ output: Int, layers: Int, crossAttention: Bool, downsample: Bool, config: UNetConfig, dtype: DType,
         using rng: inout RandomGenerator) {
        resnets = (0..<layers).map { i in
            ResnetBlock2D(i == 0 ? input : output, output, timeDimension: config.timeEmbeddingDimension, config: config, dtype: dtype, using: &rng)
        }
        attentions = crossAttention ? (0..<layers).map { _ in Transformer2D(output, config: config, dtype: dtype, using: &rng) } : []
        downsampler = downsample ? Downsample2D(output, dtype: dtype, using: &rng) : nil
    }

    var children: [(name: String, module: any Module)] {
        resnets.enumerated().map { ("resnets.\($0.offset)", $0.element as any Module) }
            + attentions.enumerated().map { ("attentions.\($0.offset)", $0.element as any Module) }
            + (downsampler.map { [("downsamplers.0", $0 as any Module)] } ?? [])
    }

    func callAsFunction(_ x: Tensor, time: Tensor, context: Tensor, contextMask: AttentionMask, skips: inout [Tensor]) throws -> Tensor {
        var h = x
        for (i, resnet) in resnets.enumerated() {
            h = try resnet(h, time: time)
            if !attentions.isEmpty { h = try attentions[i](h, context: context, contextMask: contextMask) }
            skips.append(h)
        }
        if let downsampler {
            h = try downsampler(h)
            skips.append(h)
        }
        return h
    }
}

/// diffusers' `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
final class MidBlock: Module {
    let resnet1: ResnetBlock2D, attention: Transformer2D, resnet2: ResnetBlock2D

    init(_ channels: Int, config: UNetConfig, dtype: DType, using rng: inout RandomGenerator) {
        resnet1 = ResnetBlock2D(channels, channels, timeDimension: config.timeEmbeddingDimension, config: config, dtype: dtype, using: &rng)
        attention = Transformer2D(channels, config: config, dtype: dtype, using: &rng)
        resnet2 = ResnetBlock2D(channels, channels, timeDimension: config.timeEmbeddingDimension, config: config, dtype: dtype, using: &rng)
    }

    var children: [(name: String, module: any Module)] { [("resnets.0", resnet1), ("attentions.0", attention), ("resnets.1", resnet2)] }

    func callAsFunction(_ x: Tensor, time: Tensor, context: Tensor, contextMask: AttentionMask) throws -> Tensor {
        try resnet2(attention(resnet1(x, time: time), context: context, contextMask: contextMask), time: time)
    }
}

/// An up level: layers+1 resnets, each taking the previous output concatenated with one skip
/// (popped last-in, first-out), each followed by a transformer in cross-attention levels, then
/// a ×2 upsampler except at the last level.
final class UpBlock: Module {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2D]
    let upsampler: Upsample2D?

    init(input: Int, output: Int, previousOutput: Int, layers: Int, crossAttention: Bool, upsample: Bool, config: UNetConfig,
         dtype: DType, using rng: inout RandomGenerator) {
        resnets = (0..<layers).map { i in
            let skip = i == layers - 1 ? input : output
            let incoming = i == 0 ? previousOutput : output
            return ResnetBlock2D(incoming + skip, output, timeDimension: config.timeEmbeddingDimension, config: config, dtype: dtype, using: &rng)
        }
        attentions = crossAttention ? (0..<layers).map { _ in Transformer2D(output, config: config, dtype: dtype, using: &rng) } : []
        upsampler = upsample ? Upsample2D(output, dtype: dtype, using: &rng) : nil
    }

    var children: [(name: String, module: any Module)] {
        resnets.enumerated().map { ("resnets.\($0.offset)", $0.element as any Module) }
            + attentions.enumerated().map { ("attentions.\($0.offset)", $0.element as any Module) }
            + (upsampler.map { [("upsamplers.0", $0 as any Module)] } ?? [])
    }

    func callAsFunction(_ x: Tensor, time: Tensor, context: Tensor, contextMask: AttentionMask, skips: inout [Tensor]) throws -> Tensor {
        var h = x
        for (i, resnet) in resnets.enumerated() {
            h = try resnet(concat([h, skips.removeLast()], axis: 1), time: time)
            if !attentions.isEmpty { h = try attentions[i](h, context: context, contextMask: contextMask) }
        }
        if let upsampler { h = try upsampler(h) }
        return h
    }
}

/// The conditional denoiser ε_θ(x_t, t, c), layer for layer diffusers' `UNet2DConditionModel`
/// with the same parameter names, so weights move between the two by name.
public final class UNet2DConditionModel: Module {
    public let config: UNetConfig
    let convIn: Conv2d
    let timeEmbedding: TimestepEmbedding
    let downBlocks: [DownBlock]
    let midBlock: MidBlock
    let upBlocks: [UpBlock]
    let normOut: GroupNorm
    let convOut: Conv2d
    /// A timestep-gated adapter's gate and the timesteps [first, end) it opens; nil when the UNet
    /// has none (`LatentDiffusionModel.attachUNetAdapter`).
    public internal(set) var timestepGate: (gate: AdapterGate, timesteps: Range<Double>)?

    public init(_ config: UNetConfig = UNetConfig(), dtype: DType = .float32, using rng: inout RandomGenerator) throws {
        try config.validate()
        self.config = config
        let channels = config.blockOutChannels, last = channels.count - 1
        convIn = Conv2d(config.inChannels, channels[0], kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
        timeEmbedding = TimestepEmbedding(channels[0], config.timeEmbeddingDimension, dtype: dtype, using: &rng)
        var down: [DownBlock] = []
        for (i, output) in channels.enumerated() {
            down.append(DownBlock(i == 0 ? channels[0] : channels[i - 1], output, layers: config.layersPerBlock,
                                  crossAttention: config.crossAttention[i], downsample: i < last, config: config, dtype: dtype, using: &rng))
        }
        downBlocks = down
        midBlock = MidBlock(channels[last], config: config, dtype: dtype, using: &rng)
        let reversed = Array(channels.reversed()), reversedAttention = Array(config.crossAttention.reversed())
        var up: [UpBlock] = []
        var previous = reversed[0]
        for (i, output) in reversed.enumerated() {
            up.append(UpBlock(input: reversed[min(i + 1, last)], output: output, previousOutput: previous, layers: config.layersPerBlock + 1,
                              crossAttention: reversedAttention[i], upsample: i < last, config: config, dtype: dtype, using: &rng))
            previous = output
        }
        upBlocks = up
        normOut = GroupNorm(groups: config.normGroups, channels: channels[0], eps: config.normEps, dtype: dtype)
        convOut = Conv2d(channels[0], config.outChannels, kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
    }

    public var children: [(name: String, module: any Module)] {
        [("conv_in", convIn), ("time_embedding", timeEmbedding)]
            + downBlocks.enumerated().map { ("down_blocks.\($0.offset)", $0.element as any Module) }
            + [("mid_block", midBlock)]
            + upBlocks.enumerated().map { ("up_blocks.\($0.offset)", $0.element as any Module) }
            + [("conv_norm_out", normOut), ("conv_out", convOut)]
    }

    /// ε̂ (or v̂) for latents x [B, C, H, W] at timesteps t (one per sample), attending to the text
    /// tokens `context` [B, L, D] (padding keys hidden by `contextMask`).
    public func callAsFunction(_ x: Tensor, timesteps: [Double], context: Tensor,
                               contextMask: AttentionMask = AttentionMask()) throws -> Tensor {
        guard x.rank == 4, x.shape[1] == config.inChannels, timesteps.count == x.shape[0], context.rank == 3,
              context.shape[0] == x.shape[0], context.shape[2] == config.crossAttentionDimension else {
            throw EngineError.shapeMismatch(op: "UNet2DConditionModel",
                                            "latents \(x.shape), \(timesteps.count) timesteps, context \(context.shape)")
        }
        let levels = config.blockOutChannels.count - 1
        guard x.shape[2] % (1 << levels) == 0 && x.shape[3] % (1 << levels) == 0 else {
            throw EngineError.shapeMismatch(op: "UNet2DConditionModel", "latents \(x.shape) are not divisible by \(1 << levels)")
        }
        if let timestepGate { timestepGate.gate.open = timesteps.map(timestepGate.timesteps.contains) }
        let time = try timeEmbedding(timestepFeatures(timesteps, dimension: config.blockOutChannels[0], dtype: x.dtype))
        var h = try convIn(x)
        var skips = [h]
        for block in downBlocks { h = try block(h, time: time, context: context, contextMask: contextMask, skips: &skips) }
        h = try midBlock(h, time: time, context: context, contextMask: contextMask)
        for block in upBlocks { h = try block(h, time: time, context: context, contextMask: contextMask, skips: &skips) }
        return try convOut(silu(normOut(h)))
    }
}
