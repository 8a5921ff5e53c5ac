import XCTest
import Engine
import RunLog
@testable import RewardModel

/// `reward pretrain` end to end on a tiny decoder: it writes a decoder folder, and a second run
/// with `initialDecoder` starts from exactly those weights and that tokenizer.
final class CaptionPretrainerTests: XCTestCase {
    func pretrain(_ config: CaptionPretrainConfig, into folder: URL) throws -> CaptionPretrainer {
        let trainer = try CaptionPretrainer(config: config, output: folder, commandLine: "test", overwrite: false)
        try trainer.run { _ in }
        return trainer
    }

    func testContinuingFromADecoderStartsFromItsWeights() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pretrain-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        var config = CaptionPretrainConfig()
        config.model = .tiny
        config.model.maxTextLength = 12
        config.steps = 3
        config.batch = 2
        config.warmupSteps = 1
        config.logEvery = 1
        config.threads = 1
        _ = try pretrain(config, into: root.appendingPathComponent("first"))
        let firstFolder = root.appendingPathComponent("first/decoder")
        let (first, firstTokenizer) = try PretrainedDecoder.load(from: firstFolder)

        // With a zero learning rate the continuation must save the loaded weights unchanged; its
        // own `model` (left at the default, much larger) is replaced by the folder's.
        var continued = CaptionPretrainConfig()
        continued.initialDecoder = firstFolder.path
        continued.seed = 1
        continued.steps = 1
        continued.batch = 2
        continued.learningRate = 0
        continued.threads = 1
        let trainer = try pretrain(continued, into: root.appendingPathComponent("second"))
        XCTAssertEqual(trainer.config.model, config.model)
        XCTAssertEqual(trainer.tokenizer.count, firstTokenizer.count)
        let (second, _) = try PretrainedDecoder.load(from: root.appendingPathComponent("second/decoder"))
        let before = first.stateDict(), after = second.stateDict()
        XCTAssertEqual(Set(before.keys), Set(after.keys))
        for (name, tensor) in before { XCTAssertEqual(tensor.floats, after[name]!.floats, name) }

        // A learning rate moves them; a missing folder is an error naming it.
        continued.learningRate = 1e-2
        let moved = try pretrain(continued, into: root.appendingPathComponent("third")).decoder.stateDict()
        XCTAssertTrue(before.contains { name, tensor in tensor.floats != moved[name]!.floats })
        continued.initialDecoder = root.appendingPathComponent("nowhere").path
        XCTAssertThrowsError(try CaptionPretrainer(config: continued, output: root.appendingPathComponent("fourth"),
                                                   commandLine: "test", overwrite: false)) { error in
            XCTAssertTrue("\(error)".contains("nowhere"), "\(error)")
        }
        // The key is read from JSON like every other.
        let decoded = try ConfigLoader.decode(CaptionPretrainConfig.self, from: Data(#"{"initialDecoder": "D", "steps": 7}"#.utf8),
                                              defaults: CaptionPretrainConfig())
        XCTAssertEqual(decoded.initialDecoder, "D")
        XCTAssertEqual(decoded.steps, 7)
    }

    /// Stopped before step 4 (as if killed after the checkpoint at step 4 was written) and resumed,
    /// the decoder is byte for byte the uninterrupted run's; the log holds each interval once.
    func testResumedRunEqualsUninterruptedRun() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("pretrain-resume-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        var config = CaptionPretrainConfig()
        config.model = .tiny
        config.model.maxTextLength = 12
        config.steps = 6
        config.batch = 2
        config.warmupSteps = 1
        config.logEvery = 2
        config.checkpointEvery = 2
        config.threads = 1
        _ = try pretrain(config, into: root.appendingPathComponent("whole"))
        let pieces = root.appendingPathComponent("pieces")
        do {
            let first = try CaptionPretrainer(config: config, output: pieces, commandLine: "test", overwrite: false)
            first.stopBefore = 5
            XCTAssertThrowsError(try first.run { _ in })
        }
        XCTAssertThrowsError(try CaptionPretrainer(config: config, output: pieces, commandLine: "test", overwrite: false)) {
            XCTAssertTrue("\($0)".contains("--resume"), "\($0)")
        }
        var other = config
        other.learningRate = 1
        XCTAssertThrowsError(try CaptionPretrainer(config: other, output: pieces, commandLine: "test", overwrite: false, resume: true))
        let resumed = try CaptionPretrainer(config: config, output: pieces, commandLine: "test", overwrite: false, resume: true)
        XCTAssertEqual(resumed.resumeStep, 4)
        try resumed.run { _ in }
        XCTAssertEqual(try Data(contentsOf: root.appendingPathComponent("whole/decoder/decoder.safetensors")),
                       try Data(contentsOf: pieces.appendingPathComponent("decoder/decoder.safetensors")))
        let whole = try RunLogReader(url: root.appendingPathComponent("whole/run.h5")).metric("caption_loss")
        XCTAssertEqual(try RunLogReader(url: pieces.appendingPathComponent("run.h5")).metric("caption_loss"), whole)
    }
}
