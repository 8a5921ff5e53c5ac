import Foundation
import XCTest

/// Runs the built `diffusion-rl` binary as a user would and checks exit codes and messages.
final class CLITests: XCTestCase {
    private var binary: URL {
        // The test bundle is built in the same folder as the executable (.build/<configuration>/);
        // on Linux the bundle URL is that folder, on macOS the .xctest bundle inside it.
        let bundle = Bundle(for: CLITests.self).bundleURL
        let candidates = [bundle, bundle.deletingLastPathComponent()].map { $0.appendingPathComponent("diffusion-rl") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    private func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    func testHelpOnEveryCommand() throws {
        for arguments in [["--help"], ["bench", "--help"], ["demo", "--help"], ["world", "--help"], ["world", "sample", "--help"]] {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 0, "\(arguments)")
            XCTAssertTrue(result.stdout.contains("usage: diffusion-rl"), "\(arguments): \(result.stdout)")
        }
    }

    func testBadInputIsOneLineAndANonZeroExit() throws {
        for (arguments, expected) in [(["frobnicate"], "unknown command"), (["bench", "engine", "--fast"], "unknown option --fast"),
                                      (["demo", "--steps", "many"], "expects a whole number"), (["bench"], "needs a target"),
                                      (["demo", "--steps"], "needs a value")] {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 2, "\(arguments)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(arguments): \(result.stderr)")
        }
    }

    func testWorldCommands() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("world-\(UUID())")
        let grid = directory.appendingPathComponent("grid.png").path
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        XCTAssertEqual(try run(["world", "sample", "--n", "9", "--seed", "1", "--out", grid]).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory.appendingPathComponent("grid.json").path))
        let export = directory.appendingPathComponent("export").path
        XCTAssertEqual(try run(["world", "export", "--n", "3", "--out", export]).status, 0)
        let refused = try run(["world", "export", "--n", "3", "--out", export])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("--force"), refused.stderr)
        let manifest = try String(contentsOfFile: export + "/captions.jsonl", encoding: .utf8)
        let first = try JSONSerialization.jsonObject(with: Data(manifest.split(separator: "\n")[0].utf8)) as! [String: String]
        let judged = try run(["world", "judge", export + "/" + first["image"]!, "--prompt", first["caption"]!, "--json"])
        XCTAssertEqual(judged.status, 0, judged.stderr)
        let scores = try JSONSerialization.jsonObject(with: Data(judged.stdout.utf8)) as! [String: Double]
        XCTAssertEqual(scores["alignment"], 1)
        let bad = try run(["world", "judge", export + "/" + first["image"]!, "--prompt", "a red hexagon"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("'hexagon'"), bad.stderr)
        let missing = try run(["world", "judge", directory.appendingPathComponent("none.png").path, "--prompt", "a red circle"])
        XCTAssertEqual(missing.status, 1)
        let eval = try run(["world", "judge-eval", "--n", "200", "--json"])
        let figures = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(figures["recovered"] as? Double, 1)
    }

    func testDemoRunsAndLearns() throws {
        let result = try run(["demo", "--steps", "40", "--threads", "1"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("held-out accuracy"), result.stdout)
    }
}
