import Foundation
import XCTest
import Diffusion
import Engine
import Evaluation
import RunLog
@testable import Pretraining

final class PretrainingTests: XCTestCase {
    /// A tiny end-to-end pretraining run: both phases, the log, the model folder, and sampling
    /// from the reloaded model.
    func testTinyPretrainingRunEndToEnd() throws {
        var config = PretrainConfig()
        config.model = .tiny
        config.vaeSteps = 40
        config.vaeBatch = 8
        config.vaeLearningRate = 3e-3
        config.diffusionSteps = 30
        config.diffusionBatch = 8
        config.warmupSteps = 5
        config.logEvery = 10
        config.threads = 1
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("pretrain-\(UUID())")
        var lines: [String] = []
        try Pretrainer(config: config, output: output, commandLine: "test", overwrite: false).run { lines.append($0) }
        XCTAssertTrue(lines.contains { $0.hasPrefix("vae step 40/40") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("diffusion step 30/30") }, "\(lines)")

        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        XCTAssertEqual(try reader.epochs(), 7)
        let vaeLoss = try reader.metric("vae_loss").filter(\.isFinite)
        XCTAssertEqual(vaeLoss.count, 4)
        XCTAssertLessThan(vaeLoss.last!, vaeLoss.first!, "the VAE learns")
        XCTAssertEqual(try reader.metric("diffusion_loss").filter(\.isFinite).count, 3)
        XCTAssertEqual(try reader.checkpoints().count, 3)
        XCTAssertTrue(reader.attributes["config"]!.contains("\"diffusionSteps\" : 30"))

        let model = try LatentDiffusionModel.load(from: output.appendingPathComponent("model"))
        XCTAssertNotEqual(model.vae.scaleFactor.item, 1)
        var settings = SamplingSettings()
        settings.steps = 4
        let images = try model.generate(["a red circle", "two blue squares"], settings: settings)
        XCTAssertEqual(images.count, 2)
        XCTAssertEqual(images[0].width, 16)
        // The same seed gives the same images.
        XCTAssertEqual(try model.generate(["a red circle", "two blue squares"], settings: settings), images)
        // Gold evaluation runs on it (an untrained model scores whatever it scores; the counts are checked).
        let report = try GoldEvaluation.run(model: model, split: .validation, promptCount: 3, imagesPerPrompt: 2, settings: settings)
        XCTAssertEqual(report.scores["alignment"]?.count, 6)
        XCTAssertTrue(report.scores.values.allSatisfy { $0.mean >= 0 && $0.mean <= 1 })
        XCTAssertEqual(report.hazardRate.count, 6)
        let reconstructions = try ReconstructionEvaluation.run(vae: model.vae, imageSize: 16, scenes: 10)
        XCTAssertEqual(reconstructions.scenes, 10)
        XCTAssertTrue(reconstructions.meanSquaredError.isFinite)
        // A second run into the same folder is refused.
        XCTAssertThrowsError(try Pretrainer(config: config, output: output, commandLine: "test", overwrite: false))

        // Continued pretraining from that model: the VAE, its scale and the tokenizer stay as they
        // were, the UNet moves; a config that would also train the VAE is refused.
        var more = config
        more.initialModel = output.appendingPathComponent("model").path
        more.seed = 1
        more.diffusionSteps = 10
        XCTAssertThrowsError(try Pretrainer(config: more, output: output.appendingPathComponent("more"), commandLine: "test", overwrite: false)) {
            XCTAssertTrue("\($0)".contains("vaeSteps"), "\($0)")
        }
        more.vaeSteps = 0
        var moreLines: [String] = []
        try Pretrainer(config: more, output: output.appendingPathComponent("more"), commandLine: "test", overwrite: false).run { moreLines.append($0) }
        XCTAssertFalse(moreLines.contains { $0.hasPrefix("vae step") }, "\(moreLines)")
        let continued = try LatentDiffusionModel.load(from: output.appendingPathComponent("more/model"))
        XCTAssertEqual(continued.vae.namedParameters().map(\.tensor.values), model.vae.namedParameters().map(\.tensor.values))
        XCTAssertEqual(continued.vae.scaleFactor.item, model.vae.scaleFactor.item)
        XCTAssertEqual(continued.tokenizer.count, model.tokenizer.count)
        XCTAssertNotEqual(continued.unet.namedParameters().map(\.tensor.values), model.unet.namedParameters().map(\.tensor.values))
        XCTAssertNotEqual(continued.textEncoder.namedParameters().map(\.tensor.values), model.textEncoder.namedParameters().map(\.tensor.values))

        // With the text encoder frozen, only the UNet moves.
        more.trainTextEncoder = false
        try Pretrainer(config: more, output: output.appendingPathComponent("frozen-text"), commandLine: "test", overwrite: false).run { _ in }
        let frozen = try LatentDiffusionModel.load(from: output.appendingPathComponent("frozen-text/model"))
        XCTAssertEqual(frozen.textEncoder.namedParameters().map(\.tensor.values), model.textEncoder.namedParameters().map(\.tensor.values))
        XCTAssertNotEqual(frozen.unet.namedParameters().map(\.tensor.values), model.unet.namedParameters().map(\.tensor.values))
    }

    /// A run stopped mid-phase (VAE or diffusion) and resumed from its checkpoint ends with the
    /// same weights, byte for byte, as an uninterrupted run; its log holds each interval once.
    func testResumedPretrainingEqualsUninterrupted() throws {
        var config = PretrainConfig()
        config.model = .tiny
        config.vaeSteps = 20
        config.vaeBatch = 4
        config.diffusionSteps = 20
        config.diffusionBatch = 4
        config.warmupSteps = 2
        config.logEvery = 5
        config.checkpointEvery = 10
        config.threads = 1
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pretrain-resume-\(UUID())")
        let whole = root.appendingPathComponent("whole")
        try Pretrainer(config: config, output: whole, commandLine: "test", overwrite: false).run { _ in }
        let expected = try Data(contentsOf: whole.appendingPathComponent("model/unet.safetensors"))
        let expectedVAE = try Data(contentsOf: whole.appendingPathComponent("model/vae.safetensors"))
        let expectedLoss = try RunLogReader(url: whole.appendingPathComponent("run.h5")).metric("diffusion_loss")
        for stop in [("vae", 13), ("diffusion", 17)] {
            let pieces = root.appendingPathComponent("\(stop.0)")
            do {
                let first = try Pretrainer(config: config, output: pieces, commandLine: "test", overwrite: false)
                first.stopBefore = stop
                XCTAssertThrowsError(try first.run { _ in })
            }
            var lines: [String] = []
            try Pretrainer(config: config, output: pieces, commandLine: "test", overwrite: false, resume: true).run { lines.append($0) }
            XCTAssertTrue(lines.first?.contains("resuming at \(stop.0) step 10") ?? false, "\(lines)")
            XCTAssertEqual(try Data(contentsOf: pieces.appendingPathComponent("model/unet.safetensors")), expected, "stopped in \(stop.0)")
            XCTAssertEqual(try Data(contentsOf: pieces.appendingPathComponent("model/vae.safetensors")), expectedVAE, "stopped in \(stop.0)")
            XCTAssertEqual(try RunLogReader(url: pieces.appendingPathComponent("run.h5")).metric("diffusion_loss").map { $0.isNaN ? -1 : $0 },
                           expectedLoss.map { $0.isNaN ? -1 : $0 })
        }
        var other = config
        other.vaeSteps = 30
        XCTAssertThrowsError(try Pretrainer(config: other, output: root.appendingPathComponent("vae"), commandLine: "test", overwrite: false, resume: true))
    }

    func testFolderDataReadsExportedWorldAndRejectsBadInput() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("folder-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        XCTAssertThrowsError(try FolderTrainingData(folder: folder, imageSize: 32))
        try #"{"image": "missing.png"}"#.write(to: folder.appendingPathComponent("captions.jsonl"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try FolderTrainingData(folder: folder, imageSize: 32)) {
            XCTAssertTrue("\($0)".contains("captions.jsonl:1"), "\($0)")
        }
    }

    /// The shipped pretraining configs decode strictly (an unknown key is an error) and can start:
    /// a continued run names no VAE steps.
    func testShippedPretrainingConfigsDecode() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = root.appendingPathComponent("Experiments/continued-pretraining")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
        XCTAssertGreaterThanOrEqual(names.count, 6)
        for url in names.map({ folder.appendingPathComponent($0) }) + [root.appendingPathComponent("Experiments/base.json")] {
            let config = try ConfigLoader.load(PretrainConfig.self, from: url, defaults: PretrainConfig())
            XCTAssertTrue(config.initialModel.isEmpty || config.vaeSteps == 0, url.lastPathComponent)
        }
    }
}
