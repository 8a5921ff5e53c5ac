import Diffusion
import Engine
import Foundation
import Images
import Inputs
import RunLog
import World
import XCTest

/// The bad-input catalogue: every case runs the built `diffusion-rl` on a bad config, prompt
/// file, preference file, model folder or output path, and must end with one line on stderr that
/// names the file, key or line, a non-zero exit, and every file in its folder as it was. The
/// cases and the messages they produce are `docs/bad-inputs.md`: the test compares the page with
/// what it saw, and `DIFFUSIONRL_WRITE_CATALOGUE=1` rewrites it.
final class BadInputCatalogueTests: XCTestCase {
    struct Case {
        var input: String
        /// Arguments, with `DIR` standing for the case's folder.
        var arguments: [String]
        /// Files to write in the folder first (relative path → contents).
        var files: [String: Data] = [:]
        var status: Int32 = 1
        /// What the message must contain.
        var expected: String
    }

    private var binary: URL {
        let bundle = Bundle(for: BadInputCatalogueTests.self).bundleURL
        let candidates = [bundle, bundle.deletingLastPathComponent()].map { $0.appendingPathComponent("diffusion-rl") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    /// The repository's root (this file is Tests/CLITests/BadInputCatalogueTests.swift).
    private var repository: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }

    static func text(_ string: String) -> Data { Data(string.utf8) }

    /// A tiny model folder's files, and variants of it with one thing broken.
    static let model: [String: Data] = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("catalogue-model-\(UUID())")
        var rng = RandomGenerator(seed: 3)
        let model = try! LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: ["a red circle", "two blue squares"]), using: &rng)
        try! model.save(to: folder)
        var files: [String: Data] = [:]
        for name in try! FileManager.default.contentsOfDirectory(atPath: folder.path) {
            files["model/" + name] = try! Data(contentsOf: folder.appendingPathComponent(name))
        }
        return files
    }()

    static func brokenModel(_ change: (inout [String: Data]) -> Void) -> [String: Data] {
        var files = model
        change(&files)
        return files
    }

    /// A safetensors file of the given header JSON and data bytes.
    static func safetensors(header: String, data: Data = Data()) -> Data {
        var bytes = Data()
        var length = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        return bytes + Data(header.utf8) + data
    }

    static var cases: [Case] {
        let config = "DIR/config.json", out = "DIR/out"
        func finetune(_ json: String, _ input: String, _ expected: String) -> Case {
            Case(input: "finetune config: \(input)", arguments: ["finetune", "--config", config, "--out", out], files: ["config.json": text(json)],
                 expected: expected)
        }
        func pretrain(_ json: String, _ input: String, _ expected: String) -> Case {
            Case(input: "pretrain config: \(input)", arguments: ["pretrain", "--config", config, "--out", out], files: ["config.json": text(json)],
                 expected: expected)
        }
        func rewardTrain(_ json: String, _ input: String, _ expected: String) -> Case {
            Case(input: "reward train config: \(input)", arguments: ["reward", "train", "--config", config, "--out", out],
                 files: ["config.json": text(json)], expected: expected)
        }
        func evalPrompts(_ lines: String, _ input: String, _ expected: String) -> Case {
            Case(input: "eval prompt file: \(input)", arguments: ["eval", "--model", "DIR/model", "--prompts", "DIR/prompts.txt", "--n-prompts", "2"],
                 files: model.merging(["prompts.txt": text(lines)]) { $1 }, expected: expected)
        }
        func evalModel(_ files: [String: Data], _ input: String, _ expected: String) -> Case {
            Case(input: "model folder: \(input)", arguments: ["eval", "--model", "DIR/model", "--n-prompts", "1", "--images-per-prompt", "1", "--steps", "1"],
                 files: files, expected: expected)
        }
        func preference(_ jsonl: String, _ input: String, _ expected: String) -> Case {
            Case(input: "preference data: \(input)", arguments: ["reward", "make-data", "--relabel", "DIR/data/data.jsonl", "--out", "relabeled.jsonl"],
                 files: ["data/data.jsonl": text(jsonl), "data/images/a.png": pngBytes], expected: expected)
        }
        let unet = "model/unet.safetensors"
        return [
            finetune("{\"epochs\": 3", "malformed JSON", "config.json: malformed JSON"),
            finetune("", "an empty file", "config.json: malformed JSON"),
            finetune("[1, 2]", "a list instead of an object", "config.json: the top level must be a JSON object"),
            finetune("{\"epochs\": \"three\"}", "a string for a number", "config.json: wrong value at 'epochs'"),
            finetune("{\"epochs\": 2.5}", "a fraction for a whole number", "config.json: a value has the wrong type"),
            finetune("{\"epochs\": 1e400}", "a number out of range", "config.json: malformed JSON (Number 1e400 is not representable"),
            finetune("{\"epoch\": 3}", "an unknown key", "config.json: unknown key 'epoch'"),
            finetune("{\"sampling\": {\"stpes\": 20}}", "an unknown nested key", "config.json: unknown key 'sampling.stpes'"),
            finetune("{\"sampling\": 5}", "a number where an object belongs", "config.json: wrong value at 'sampling'"),
            finetune("{\"epochs\": -1}", "a negative count", "config.json: epochs, promptsPerEpoch and imagesPerPrompt must be at least 1"),
            finetune("{\"imagesPerPrompt\": 0}", "zero images per prompt", "config.json: epochs, promptsPerEpoch and imagesPerPrompt must be at least 1"),
            finetune("{\"sampling\": {\"steps\": 0}}", "zero sampling steps", "config.json: sampling.steps must be at least 1"),
            finetune("{\"sampling\": {\"guidance\": -1}}", "negative guidance", "config.json: sampling.guidance must be a finite number ≥ 0"),
            finetune("{\"sampling\": {\"eta\": 0}}", "η = 0", "config.json: sampling.eta = 0.0"),
            finetune("{\"learningRate\": 0}", "a zero learning rate", "config.json: learningRate must be positive"),
            finetune("{\"objective\": \"magic\"}", "an unknown objective", "config.json: objective 'magic' is not one of"),
            finetune("{\"objective\": \"selfTraining\", \"selfTraining\": {\"timestepRange\": [500, 100]}}", "a reversed range",
                     "config.json: selfTraining.timestepRange must be empty or [first, end)"),
            finetune("{\"trainStepRange\": [0, 50]}", "a range past the sampling steps", "config.json: trainStepRange must be empty or [first, end)"),
            finetune("{\"rewards\": {\"weights\": {\"beauty\": 1}}}", "a reward perspective nobody offers", "no reward offers perspective 'beauty'"),
            finetune("{\"prompts\": \"DIR/none.txt\"}", "a prompt file that does not exist", "prompts: 'DIR/none.txt' is neither"),
            finetune("{\"model\": \"/nonexistent/model\"}", "a model folder that does not exist", "/nonexistent/model has no config.json"),
            pretrain("{\"diffusionSteps\": -5}", "negative steps", "config.json: vaeSteps and diffusionSteps must be ≥ 0"),
            pretrain("{\"vaeBatch\": 0}", "an empty batch", "config.json: vaeBatch and diffusionBatch must be at least 1"),
            pretrain("{\"model\": {\"imageSize\": 30}}", "an image size the VAE cannot halve", "config.json: model.imageSize 30 must be a positive multiple"),
            pretrain("{\"checkpointEvery\": 70, \"logEvery\": 50}", "checkpoints between log steps", "config.json: checkpointEvery (70) must be a positive multiple of logEvery (50)"),
            pretrain("{\"vaeStep\": 3}", "an unknown key", "config.json: unknown key 'vaeStep'"),
            rewardTrain("{\"epochs\": 0}", "zero epochs", "config.json: epochs, promptsPerBatch, logEvery and threads must be at least 1"),
            rewardTrain("{\"perspectives\": [\"beauty\"]}", "an unknown perspective", "config.json: perspective 'beauty' is not one of"),
            Case(input: "reward make-data config: zero prompts", arguments: ["reward", "make-data", "--model", "DIR/model", "--config", config, "--out", out],
                 files: model.merging(["config.json": text("{\"prompts\": 0}")]) { $1 }, expected: "config.json: prompts must be at least 1"),
            evalPrompts("a red circle\na purple elephant\n", "a caption outside the world's grammar", "prompts.txt:2:"),
            evalPrompts("\n\n", "only empty lines", "prompts.txt holds no prompts"),
            evalModel([:], "missing", "no config.json"),
            evalModel(brokenModel { $0[unet] = nil }, "the UNet's weights missing", "unet.safetensors"),
            evalModel(brokenModel { $0[unet] = $0[unet]!.prefix($0[unet]!.count / 2) }, "truncated weights", "unet.safetensors"),
            evalModel(brokenModel { $0[unet] = Data("not safetensors".utf8) }, "weights that are not safetensors", "unet.safetensors"),
            evalModel(brokenModel { $0[unet] = safetensors(header: "{\"conv_in.weight\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 16]}}") },
                      "a shape whose size overflows", "unet.safetensors"),
            evalModel(brokenModel { $0[unet] = safetensors(header: "{\"conv_in.weight\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", data: Data(count: 4)) },
                      "an unsupported dtype", "unet.safetensors"),
            evalModel(brokenModel { $0[unet] = safetensors(header: "{\"conv_in.weight\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", data: Data(count: 8)) },
                      "a tensor of the wrong shape, the others missing", "unet.safetensors: "),
            evalModel(brokenModel { $0["model/config.json"] = text("{\"imageSize\": ") }, "a malformed config.json", "model/config.json: not a valid config.json"),
            evalModel(brokenModel { $0["model/tokenizer.json"] = nil }, "the tokenizer missing", "tokenizer.json"),
            preference("{\"prompt\": \"a red circle\", \"images\": [\"images/missing.png\"], \"labels\": {\"safety\": true}}\n",
                       "an image that does not exist", "data.jsonl line 1: image images/missing.png not found"),
            preference("{\"prompt\": \"a red circle\", \"images\": [\"../../outside.png\"], \"labels\": {\"safety\": true}}\n",
                       "an image path leaving the data folder", "outside the data folder"),
            preference("{\"prompt\": 3, \"images\": [\"images/a.png\"]}\n", "a number for the prompt", "data.jsonl line 1: "),
            preference("{\"prompt\": \"a red circle\"\n", "a line that is not JSON", "data.jsonl line 1: not a JSON object"),
            preference("", "no records", "data.jsonl"),
            Case(input: "an existing run folder, without --force", arguments: ["finetune", "--out", "DIR/run"],
                 files: ["run/run.h5": text("an earlier run")], expected: "--force"),
            Case(input: "an output folder under a file", arguments: ["pretrain", "--out", "DIR/file/run"], files: ["file": text("x")],
                 expected: "DIR/file/run: Not a directory"),
            Case(input: "a report of a file that is not a run log", arguments: ["report", "DIR/run.h5", "--out", "DIR/report.html"],
                 files: ["run.h5": text("not HDF5")], expected: "DIR/run.h5 is not an HDF5 file"),
            Case(input: "a report into a folder that does not exist", arguments: ["report", "DIR/run.h5", "--out", "DIR/none/report.html"],
                 files: ["run.h5": runLog], expected: "DIR/none/report.html: No such file or directory"),
            Case(input: "--resume where no run was started", arguments: ["finetune", "--out", "DIR/run", "--resume"], expected: "DIR/run"),
            Case(input: "an image that is not a PNG", arguments: ["reward", "score", "DIR/x.png", "--prompt", "a red circle", "--model", "DIR/model"],
                 files: ["x.png": text("GIF89a")], expected: "x.png"),
            Case(input: "sample with zero images", arguments: ["sample", "--model", "DIR/model", "--prompt", "a red circle", "--out", "DIR/g.png", "--n", "0"],
                 status: 2, expected: "--n"),
            Case(input: "eval on the training split", arguments: ["eval", "--model", "DIR/model", "--prompts", "train"], status: 2, expected: "'train'"),
        ]
    }

    /// A small finished run log.
    static let runLog: Data = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("catalogue-run-\(UUID()).h5")
        let writer = try! RunLogWriter(url: url, layout: RunLayout(metrics: [MetricSpec("loss", better: .lower, kind: .loss)]),
                                       info: RunInfo.current(config: "{}", seed: 0))
        for epoch in 0..<3 { try! writer.record("loss", 1 / Double(epoch + 1)); try! writer.endEpoch() }
        try! writer.close()
        return try! Data(contentsOf: url)
    }()

    /// A 4×4 PNG.
    static let pngBytes = PNG.encode(RGBImage(width: 4, height: 4, fill: [200, 0, 0]))

    func testEveryBadInputIsOneLineANonZeroExitAndChangesNothing() throws {
        var rows: [String] = []
        for (number, item) in Self.cases.enumerated() {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("catalogue-\(UUID())")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for (path, contents) in item.files {
                let url = folder.appendingPathComponent(path)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try contents.write(to: url)
            }
            let before = try snapshot(folder)
            let process = Process()
            process.executableURL = binary
            process.arguments = item.arguments.map { $0.replacingOccurrences(of: "DIR", with: folder.path) }
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let message = stderr.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: folder.path, with: "DIR")
            let label = "case \(number + 1), \(item.input)"
            XCTAssertEqual(process.terminationStatus, item.status, "\(label): \(message)")
            XCTAssertEqual(stderr.split(separator: "\n").count, 1, "\(label): \(stderr)")
            XCTAssertTrue(message.contains(item.expected), "\(label): expected '\(item.expected)' in: \(message)")
            XCTAssertEqual(try snapshot(folder), before, "\(label): files changed")
            let command = "diffusion-rl " + item.arguments.map { $0.contains(" ") ? "\"\($0)\"" : $0 }.joined(separator: " ")
            rows.append("| \(number + 1) | \(item.input) | `\(command)` | \(process.terminationStatus) | \(message.replacingOccurrences(of: "|", with: "\\|")) |")
        }
        let page = """
        # Bad inputs: what each one says

        Each row is a case of the test `BadInputCatalogueTests` (`Tests/CLITests/`), which runs the
        built `diffusion-rl` on it in a fresh folder (`DIR`) and checks that it ends with this one line
        on stderr, this exit status (1: a bad input, 2: a usage error) and every file in the folder as
        it was. The test compares this page with what it saw; after changing a message, rerun it with
        `DIFFUSIONRL_WRITE_CATALOGUE=1` to rewrite the page.

        | # | input | command | exit | message |
        |---:|---|---|---:|---|
        \(rows.joined(separator: "\n"))

        """
        let url = repository.appendingPathComponent("docs/bad-inputs.md")
        if ProcessInfo.processInfo.environment["DIFFUSIONRL_WRITE_CATALOGUE"] == "1" {
            try page.write(to: url, atomically: true, encoding: .utf8)
        } else {
            XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), page,
                           "docs/bad-inputs.md is not what the cases print; rerun with DIFFUSIONRL_WRITE_CATALOGUE=1")
        }
        XCTAssertGreaterThanOrEqual(rows.count, 40)
    }

    /// Every file under `folder`: relative path → contents.
    private func snapshot(_ folder: URL) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey])!
        for case let url as URL in enumerator where (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
            files[String(url.path.dropFirst(folder.path.count))] = try Data(contentsOf: url)
        }
        return files
    }
}
