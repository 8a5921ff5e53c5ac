import Foundation
import XCTest
import Engine
import Layers
@testable import Diffusion

final class UNetTests: XCTestCase {
    /// The default config is diffusers' UNet2DConditionModel with 3,152,644 parameters, under its names.
    func testDefaultUNetMatchesDiffusersLayout() throws {
        var rng = RandomGenerator(seed: 1)
        let unet = try UNet2DConditionModel(using: &rng)
        XCTAssertEqual(unet.parameterCount, 3_152_644)
        let names = Set(unet.namedParameters().map(\.name))
        for expected in ["conv_in.weight", "time_embedding.linear_1.weight", "time_embedding.linear_2.bias",
                         "down_blocks.0.resnets.0.time_emb_proj.weight", "down_blocks.0.attentions.0.proj_in.weight",
                         "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
                         "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                         "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.bias",
                         "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
                         "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight",
                         "down_blocks.0.downsamplers.0.conv.weight", "down_blocks.1.resnets.0.conv_shortcut.weight",
                         "mid_block.resnets.1.norm2.weight", "mid_block.attentions.0.transformer_blocks.0.norm3.bias",
                         "up_blocks.0.resnets.1.conv1.weight", "up_blocks.0.upsamplers.0.conv.weight",
                         "up_blocks.1.attentions.1.proj_out.bias", "conv_norm_out.weight", "conv_out.bias"] {
            XCTAssertTrue(names.contains(expected), expected)
        }
        // Skip widths: up_blocks.0 resnets take 128+128 and 128+64 channels; up_blocks.1 take 128+64 and 64+64.
        let shapes = Dictionary(uniqueKeysWithValues: unet.namedParameters().map { ($0.name, $0.tensor.shape) })
        XCTAssertEqual(shapes["up_blocks.0.resnets.0.conv1.weight"], [128, 256, 3, 3])
        XCTAssertEqual(shapes["up_blocks.0.resnets.1.conv1.weight"], [128, 192, 3, 3])
        XCTAssertEqual(shapes["up_blocks.1.resnets.0.conv1.weight"], [64, 192, 3, 3])
        XCTAssertEqual(shapes["up_blocks.1.resnets.1.conv1.weight"], [64, 128, 3, 3])
        XCTAssertEqual(shapes["mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"], [1024, 128])

        let x = Tensor.randn([2, 4, 8, 8], using: &rng), context = Tensor.randn([2, 16, 64], using: &rng)
        let out = try withNoGrad { try unet(x, timesteps: [10, 900], context: context) }
        XCTAssertEqual(out.shape, [2, 4, 8, 8])
        XCTAssertTrue(out.isFinite)
        XCTAssertThrowsError(try unet(Tensor(zeros: [2, 4, 7, 7]), timesteps: [1, 1], context: context)) {
            XCTAssertTrue("\($0)".contains("[2, 4, 7, 7]"), "\($0)")
        }
        XCTAssertThrowsError(try unet(x, timesteps: [1], context: context))
    }

    func testTimestepFeaturesByHand() throws {
        let f = try timestepFeatures([0, 2], dimension: 4, dtype: .float64)
        // Frequencies exp(−ln(10⁴)·k/2) for k = 0, 1: 1 and 0.01; order [cos, cos, sin, sin].
        let expected = [1, 1, 0, 0, cos(2.0), cos(0.02), sin(2.0), sin(0.02)]
        for (a, b) in zip(f.values, expected) { XCTAssertEqual(a, b, accuracy: 1e-12) }
    }

    /// The UNet's gradients, and the gradient of a DDIM step's log-probability with respect to
    /// UNet parameters (what DDPO follows), pass finite-difference checks on a tiny UNet.
    func testTinyUNetGradientsPassFiniteDifferences() throws {
        var rng = RandomGenerator(seed: 2)
        let unet = try UNet2DConditionModel(.tiny, dtype: .float64, using: &rng)
        // Parameters start at default values (γ = 1, β = 0, …); move them so every term is exercised.
        for p in unet.namedParameters() { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, dtype: .float64, using: &rng)) }
        let x = Tensor.randn([2, 4, 4, 4], dtype: .float64, using: &rng)
        let context = Tensor.randn([2, 3, 8], dtype: .float64, using: &rng)
        let mask = AttentionMask(keyValid: [[true, true, false], [true, true, true]])
        let byName = Dictionary(uniqueKeysWithValues: unet.namedParameters().map { ($0.name, $0.tensor) })
        let chosen = ["conv_in.bias", "time_embedding.linear_2.bias", "down_blocks.0.resnets.0.norm1.weight",
                      "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                      "mid_block.attentions.0.transformer_blocks.0.ff.net.2.bias", "up_blocks.0.upsamplers.0.conv.bias",
                      "up_blocks.1.resnets.1.conv_shortcut.bias", "conv_out.weight"].map { byName[$0]! }
        let report = try gradientCheck([x, context] + chosen) { inputs in
            try unet(inputs[0], timesteps: [3, 700], context: inputs[1], contextMask: mask)
        }
        XCTAssertLessThanOrEqual(report.maxRelativeError, 1e-6, "\(report)")

        let ddim = try DDIMScheduler(schedule: NoiseSchedule(), stepCount: 10, eta: 1)
        let t = ddim.timesteps[4]
        let stored = try withNoGrad { try ddim.step(modelOutput: unet(x, timesteps: [Double(t), Double(t)], context: context), timestep: t,
                                                     sample: x, using: &rng) }
        let logProbReport = try gradientCheck(chosen) { _ in
            try ddim.step(modelOutput: unet(x, timesteps: [Double(t), Double(t)], context: context), timestep: t, sample: x,
                          previousSample: stored.previousSample, using: &rng).logProb
        }
        XCTAssertLessThanOrEqual(logProbReport.maxRelativeError, 1e-6, "\(logProbReport)")
    }
}
