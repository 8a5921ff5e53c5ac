import Foundation
import XCTest
import Diffusion
import Engine
import Rewards
@testable import RL

/// `loraTimestepRange`: the LoRA acts only at the noisy steps, so the policy equals the base model
/// (KL exactly 0) at every other step, and the fine-tuned model keeps its adapter apart.
final class TimestepGatedLoRATests: XCTestCase {
    /// 4 DDIM steps at t = 751, 501, 251, 1; the adapter acts at the first two.
    static func gatedConfig() -> FineTuningConfig {
        var config = FineTuningTrainerTests.tinyConfig()
        config.loraTimestepRange = [500, 1000]
        config.trainStepRange = [0, 2]
        config.rewards = RewardComposition(weights: ["compressibility": 1])
        config.learningRate = 3e-2
        config.kl.every = 1
        return config
    }

    func testPolicyEqualsTheBaseOutsideTheGateAndTheModelKeepsItsAdapter() throws {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("gated-run-\(UUID())")
        defer { try? FileManager.default.removeItem(at: output) }
        let trainer = try FineTuningTrainer(config: Self.gatedConfig(), output: output, commandLine: "test")
        var summaries: [EpochSummary] = []
        try trainer.run(epochDone: { summaries.append($0) })
        try trainer.close()
        let kl = try XCTUnwrap(summaries.last?.kl)
        XCTAssertGreaterThan(kl.byStep[0] + kl.byStep[1], 0, "training moved the gated steps")
        XCTAssertEqual(kl.byStep[2], 0, "no adapter at t = 251: the policy is the base model")
        XCTAssertEqual(kl.byStep[3], 0)

        let model = try LatentDiffusionModel.load(from: output.appendingPathComponent("model"))
        XCTAssertEqual(model.config.unetAdapter, UNetAdapter(rank: 4, alpha: 4, timestepRange: [500, 1000]))
        let trained = Dictionary(uniqueKeysWithValues: trainer.parameters.map { ($0.name, $0.tensor.values) })
        let saved = try Safetensors.read(output.appendingPathComponent("model/unet_lora.safetensors")).tensors
        XCTAssertEqual(Set(saved.keys), Set(trained.keys))
        for (name, tensor) in saved { XCTAssertEqual(tensor.values, trained[name], name) }

        // Fine-tuning that model again is refused: its adapter cannot be merged or stacked.
        var again = Self.gatedConfig()
        again.model = output.appendingPathComponent("model").path
        XCTAssertThrowsError(try FineTuningTrainer(config: again, output: output.appendingPathComponent("again"), commandLine: "test")) {
            XCTAssertTrue("\($0)".contains("has a timestep-gated UNet adapter"), "\($0)")
        }
    }

    /// A trained timestep the adapter does not act on would get no gradient: refused up front.
    func testTrainedTimestepsOutsideTheGateAreRefused() throws {
        func refusal(_ configure: (inout FineTuningConfig) -> Void) -> String {
            var config = Self.gatedConfig()
            configure(&config)
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("gated-refused-\(UUID())")
            do { _ = try FineTuningTrainer(config: config, output: output, commandLine: "test"); return "accepted" } catch { return "\(error)" }
        }
        XCTAssertTrue(refusal { $0.trainStepRange = [0, 3] }.contains("step 2 (t = 251)"))
        XCTAssertTrue(refusal { $0.trainStepRange = [] }.contains("step 2 (t = 251)"))
        XCTAssertTrue(refusal { $0.objective = "diffusionDPO" }.contains("diffusionDPO.timestepRange (all) must lie inside"))
        XCTAssertTrue(refusal { $0.objective = "advantageWeighted"; $0.advantageWeighted.timestepRange = [400, 900] }
            .contains("advantageWeighted.timestepRange [400, 900] must lie inside"))
        XCTAssertEqual(refusal { $0.objective = "diffusionDPO"; $0.diffusionDPO.timestepRange = [500, 1000] }, "accepted")
        XCTAssertTrue(refusal { $0.loraRank = 0 }.contains("loraRank must be > 0"))
        var described = Self.gatedConfig()
        XCTAssertEqual(described.trainedParametersDescription, "LoRA rank 4 at timesteps [500, 1000)")
        described.loraTimestepRange = []
        XCTAssertEqual(described.trainedParametersDescription, "LoRA rank 4")
        described.loraRank = 0
        XCTAssertEqual(described.trainedParametersDescription, "full fine-tuning")
        XCTAssertTrue(refusal { $0.loraTimestepRange = [900, 500] }.contains("loraTimestepRange must be empty or [first, end)"))
    }
}
