import XCTest
import Engine
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
}
