import Engine
import Foundation
import Layers

/// The sinusoidal timestep features of diffusers' `Timesteps(dim, flip_sin_to_cos=True,
/// downscale_freq_shift=0)`: [cos(t·f_k), sin(t·f_k)], f_k = exp(−ln(10000)·k/(dim/2)).
public func timestepFeatures(_ timesteps: [Double], dimension: Int, dtype: DType) throws -> Tensor {
    let half = dimension / 2
    var values = [Double](repeating: 0, count: timesteps.count * dimension)
    for (b, t) in timesteps.enumerated() {
        for k in 0..<half {
            let angle = t * exp(-log(10000.0) * Double(k) / Double(half))
            values[b * dimension + k] = cos(angle)
            values[b * dimension + half + k] = sin(angle)
        }
    }
    return try Tensor(values, shape: [timesteps.count, dimension], dtype: dtype)
}

/// diffusers' `TimestepEmbedding`: linear_1 → SiLU → linear_2.
final class TimestepEmbedding: Module {
    let linear1: Linear, linear2: Linear
    init(_ input: Int, _ dimension: Int, dtype: DType, using rng: inout RandomGenerator) {
        linear1 = Linear(input, dimension, dtype: dtype, using: &rng)
        linear2 = Linear(dimension, dimension, dtype: dtype, using: &rng)
    }
    var children: [(name: String, module: any Module)] { [("linear_1", linear1), ("linear_2", linear2)] }
    func callAsFunction(_ x: Tensor) throws -> Tensor { try linear2(silu(linear1(x))) }
}

/// diffusers' `ResnetBlock2D`: norm1 → SiLU → conv1 (+ time_emb_proj(SiLU(temb))) → norm2 → SiLU →
/// conv2, plus the input (through a 1×1 `conv_shortcut` when the width changes).
/// Without a time dimension (the VAE's blocks) there is no `time_emb_proj`.
final class ResnetBlock2D: Module {
    let norm1: GroupNorm, conv1: Conv2d, timeEmbeddingProjection: Linear?, norm2: GroupNorm, conv2: Conv2d
    let shortcut: Conv2d?

    init(_ input: Int, _ output: Int, timeDimension: Int?, groups: Int, eps: Double = 1e-5, dtype: DType,
         using rng: inout RandomGenerator) {
        norm1 = GroupNorm(groups: groups, channels: input, eps: eps, dtype: dtype)
        conv1 = Conv2d(input, output, kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
        timeEmbeddingProjection = timeDimension.map { Linear($0, output, dtype: dtype, using: &rng) }
        norm2 = GroupNorm(groups: groups, channels: output, eps: eps, dtype: dtype)
        conv2 = Conv2d(output, output, kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
        shortcut = input == output ? nil : Conv2d(input, output, kernelSize: 1, dtype: dtype, using: &rng)
    }

    convenience init(_ input: Int, _ output: Int, timeDimension: Int, config: UNetConfig, dtype: DType, using rng: inout RandomGenerator) {
        self.init(input, output, timeDimension: timeDimension, groups: config.normGroups, eps: config.normEps, dtype: dtype, using: &rng)
    }

    var children: [(name: String, module: any Module)] {
        [("norm1", norm1 as any Module), ("conv1", conv1)] + (timeEmbeddingProjection.map { [("time_emb_proj", $0 as any Module)] } ?? [])
            + [("norm2", norm2), ("conv2", conv2)] + (shortcut.map { [("conv_shortcut", $0 as any Module)] } ?? [])
    }

    /// x [B, C, H, W] and, in the UNet, the time embedding [B, T] (SiLU is applied here, as in diffusers).
    func callAsFunction(_ x: Tensor, time: Tensor? = nil) throws -> Tensor {
        var h = try conv1(silu(norm1(x)))
        if let projection = timeEmbeddingProjection, let time {
            let t = try projection(silu(time))
            h = try h + t.reshaped([t.shape[0], t.shape[1], 1, 1])
        }
        h = try conv2(silu(norm2(h)))
        return try (shortcut.map { try $0(x) } ?? x) + h
    }
}

/// diffusers' `FeedForward(dim, mult=4, activation_fn="geglu")`: net.0.proj → GEGLU → net.2.
final class FeedForward: Module {
    let projection: Linear, output: Linear
    init(_ dimension: Int, dtype: DType, using rng: inout RandomGenerator) {
        projection = Linear(dimension, dimension * 8, dtype: dtype, using: &rng)
        output = Linear(dimension * 4, dimension, dtype: dtype, using: &rng)
    }
    var children: [(name: String, module: any Module)] { [("net.0.proj", projection), ("net.2", output)] }
    func callAsFunction(_ x: Tensor) throws -> Tensor {
        return try output(geglu(projection(x)))
    }
}

/// diffusers' `BasicTransformerBlock`: self-attention, cross-attention to the text, GEGLU
/// feed-forward, each after a LayerNorm and added back.
final class BasicTransformerBlock: Module {
    let norm1: LayerNorm, attention1: MultiHeadAttention, norm2: LayerNorm, attention2: MultiHeadAttention
    let norm3: LayerNorm, feedForward: FeedForward

    init(_ dimension: Int, heads: Int, contextDimension: Int, dtype: DType, using rng: inout RandomGenerator) {
        norm1 = LayerNorm(dimension, dtype: dtype)
        attention1 = MultiHeadAttention(queryDimension: dimension, heads: heads, headDimension: dimension / heads, dtype: dtype, using: &rng)
        norm2 = LayerNorm(dimension, dtype: dtype)
        attention2 = MultiHeadAttention(queryDimension: dimension, contextDimension: contextDimension, heads: heads,
                                        headDimension: dimension / heads, dtype: dtype, using: &rng)
        norm3 = LayerNorm(dimension, dtype: dtype)
        feedForward = FeedForward(dimension, dtype: dtype, using: &rng)
    }

    var children: [(name: String, module: any Module)] {
        [("norm1", norm1), ("attn1", attention1), ("norm2", norm2), ("attn2", attention2), ("norm3", norm3), ("ff", feedForward)]
    }

    func callAsFunction(_ x: Tensor, context: Tensor, contextMask: AttentionMask) throws -> Tensor {
        var h = try x + attention1(norm1(x))
        h = try h + attention2(norm2(h), context: context, mask: contextMask)
        return try h + feedForward(norm3(h))
    }
}

/// diffusers' `Transformer2DModel` with convolutional projections: GroupNorm(ε = 1e-6) → 1×1 conv
/// in → tokens → transformer block → 1×1 conv out → added to the input.
final class Transformer2D: Module {
    let norm: GroupNorm, projectionIn: Conv2d, block: BasicTransformerBlock, projectionOut: Conv2d

    init(_ channels: Int, config: UNetConfig, dtype: DType, using rng: inout RandomGenerator) {
        norm = GroupNorm(groups: config.normGroups, channels: channels, eps: 1e-6, dtype: dtype)
        projectionIn = Conv2d(channels, channels, kernelSize: 1, dtype: dtype, using: &rng)
        block = BasicTransformerBlock(channels, heads: config.attentionHeads, contextDimension: config.crossAttentionDimension,
                                      dtype: dtype, using: &rng)
        projectionOut = Conv2d(channels, channels, kernelSize: 1, dtype: dtype, using: &rng)
    }

    var children: [(name: String, module: any Module)] {
        [("norm", norm), ("proj_in", projectionIn), ("transformer_blocks.0", block), ("proj_out", projectionOut)]
    }

    func callAsFunction(_ x: Tensor, context: Tensor, contextMask: AttentionMask) throws -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let tokens = try projectionIn(norm(x)).reshaped([b, c, h * w]).permuted([0, 2, 1])
        let attended = try block(tokens, context: context, contextMask: contextMask)
        return try projectionOut(attended.permuted([0, 2, 1]).reshaped([b, c, h, w])) + x
    }
}

/// diffusers' `Downsample2D(use_conv=True)`: a stride-2 3×3 convolution.
final class Downsample2D: Module {
    let conv: Conv2d
    init(_ channels: Int, dtype: DType, using rng: inout RandomGenerator) {
        conv = Conv2d(channels, channels, kernelSize: 3, stride: 2, padding: 1, dtype: dtype, using: &rng)
    }
    var children: [(name: String, module: any Module)] { [("conv", conv)] }
    func callAsFunction(_ x: Tensor) throws -> Tensor { try conv(x) }
}

/// diffusers' `Upsample2D(use_conv=True)`: nearest ×2, then a 3×3 convolution.
final class Upsample2D: Module {
    let conv: Conv2d
    init(_ channels: Int, dtype: DType, using rng: inout RandomGenerator) {
        conv = Conv2d(channels, channels, kernelSize: 3, padding: 1, dtype: dtype, using: &rng)
    }
    var children: [(name: String, module: any Module)] { [("conv", conv)] }
    func callAsFunction(_ x: Tensor) throws -> Tensor { try conv(upsampleNearest(x, scale: 2)) }
}
