import Foundation
import Inputs
import XCTest
import Engine
import Layers
@testable import Diffusion

/// The timestep-gated LoRA adapter: base output outside its timesteps, its own inside, and a model
/// folder that keeps it apart from the base UNet.
final class UNetAdapterTests: XCTestCase {
    func tinyModel(seed: UInt64) throws -> LatentDiffusionModel {
        var rng = RandomGenerator(seed: seed)
        let model = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: ["a red circle", "two blue squares"]), using: &rng)
        for p in model.unet.namedParameters() { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &rng)) }
        return model
    }

    func epsilon(_ model: LatentDiffusionModel, timesteps: [Double]) throws -> [[Double]] {
        var rng = RandomGenerator(seed: 3)
        let x = Tensor.randn([timesteps.count, 2, 4, 4], using: &rng)
        let (context, mask) = try model.encodeText(timesteps.indices.map { $0 % 2 == 0 ? "a red circle" : "two blue squares" })
        let output = try withNoGrad { try model.unet(x, timesteps: timesteps, context: context, contextMask: mask) }
        let row = output.count / timesteps.count
        return timesteps.indices.map { Array(output.values[$0 * row ..< ($0 + 1) * row]) }
    }

    func testAdapterActsOnlyAtItsTimestepsAndSurvivesSaveAndLoad() throws {
        let base = try tinyModel(seed: 1)
        let adapted = try tinyModel(seed: 1)
        var rng = RandomGenerator(seed: 2)
        let parameters = try adapted.attachUNetAdapter(UNetAdapter(rank: 2, alpha: 2, timestepRange: [500, 1000]), using: &rng)
        XCTAssertFalse(parameters.isEmpty)
        XCTAssertTrue(parameters.allSatisfy { $0.name.contains(".lora_") }, "only the adapter trains")
        for p in parameters where p.name.hasSuffix("lora_up.weight") { p.tensor.assign(Tensor.randn(p.tensor.shape, std: 0.5, using: &rng)) }

        // Rows at t = 100 and 499 (closed) give the base UNet's output bit for bit; rows at 500 and 900 differ.
        let timesteps: [Double] = [900, 100, 500, 499]
        let before = try epsilon(base, timesteps: timesteps), after = try epsilon(adapted, timesteps: timesteps)
        XCTAssertEqual(after[1], before[1])
        XCTAssertEqual(after[3], before[3])
        XCTAssertNotEqual(after[0], before[0])
        XCTAssertNotEqual(after[2], before[2])

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gated-model-\(UUID())")
        defer { try? FileManager.default.removeItem(at: folder) }
        try adapted.save(to: folder)
        let baseTensors = try Safetensors.read(folder.appendingPathComponent("unet.safetensors")).tensors
        let adapterTensors = try Safetensors.read(folder.appendingPathComponent("unet_lora.safetensors")).tensors
        XCTAssertEqual(Set(baseTensors.keys), Set(base.unet.stateDict().keys), "unet.safetensors is the plain base UNet")
        XCTAssertEqual(Set(adapterTensors.keys), Set(parameters.map(\.name)))
        let loaded = try LatentDiffusionModel.load(from: folder)
        XCTAssertEqual(loaded.config.unetAdapter, UNetAdapter(rank: 2, alpha: 2, timestepRange: [500, 1000]))
        XCTAssertEqual(loaded.config.unetAdapter?.summary, "LoRA rank 2, α 2, acting only at timesteps [500, 1000)", "what eval prints")
        XCTAssertEqual(try epsilon(loaded, timesteps: timesteps), after)

        XCTAssertThrowsError(try loaded.attachUNetAdapter(UNetAdapter(rank: 2, alpha: 2, timestepRange: [0, 10]), using: &rng)) {
            XCTAssertTrue("\($0)".contains("already"), "\($0)")
        }
        XCTAssertThrowsError(try base.attachUNetAdapter(UNetAdapter(rank: 2, alpha: 2, timestepRange: [700, 700]), using: &rng)) {
            XCTAssertTrue("\($0)".contains("[700.0, 700.0]"), "\($0)")
        }
        // An ungated, unmerged LoRA is not saved silently without its weights.
        let plain = try tinyModel(seed: 1)
        try applyLoRA(to: plain.unet, rank: 2, using: &rng)
        XCTAssertThrowsError(try plain.save(to: folder.appendingPathComponent("plain"))) {
            XCTAssertTrue("\($0)".contains("unmerged LoRA"), "\($0)")
        }
        // A folder whose config names an adapter but lacks its weights is an error naming the file.
        try FileManager.default.removeItem(at: folder.appendingPathComponent("unet_lora.safetensors"))
        XCTAssertThrowsError(try LatentDiffusionModel.load(from: folder)) {
            XCTAssertTrue("\($0)".contains("unet_lora.safetensors"), "\($0)")
        }
    }

    /// Sampling with the gate: the adapter changes the images only through the steps it acts on.
    /// With the adapter on the cleanest timesteps alone, the first steps of a trajectory match the
    /// base model's exactly.
    func testGatedSamplingFollowsTheBaseModelOutsideTheGate() throws {
        let base = try tinyModel(seed: 4)
        let adapted = try tinyModel(seed: 4)
        var rng = RandomGenerator(seed: 5)
        let parameters = try adapted.attachUNetAdapter(UNetAdapter(rank: 2, alpha: 2, timestepRange: [0, 300]), using: &rng)
        for p in parameters where p.name.hasSuffix("lora_up.weight") { p.tensor.assign(Tensor.randn(p.tensor.shape, std: 0.5, using: &rng)) }
        var settings = SamplingSettings()
        settings.steps = 4
        settings.guidance = 3
        var first = RandomGenerator(seed: 6), second = RandomGenerator(seed: 6)
        let prompts = ["a red circle", "two blue squares"]
        let a = try base.sampleTrajectories(prompts, settings: settings, using: &first)
        let b = try adapted.sampleTrajectories(prompts, settings: settings, using: &second)
        // Timesteps 751, 501, 251, 1: steps 0 and 1 are outside [0, 300), steps 2 and 3 inside.
        XCTAssertEqual(a.latents[1].values, b.latents[1].values)
        XCTAssertEqual(a.latents[2].values, b.latents[2].values)
        XCTAssertNotEqual(a.latents[3].values, b.latents[3].values)
    }
}
