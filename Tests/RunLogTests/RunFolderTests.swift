import Foundation
import XCTest
@testable import RunLog

/// The run folder every trainer shares: refusing, overwriting, resuming, atomic rotated checkpoints.
final class RunFolderTests: XCTestCase {
    func testStartsRefusesOverwritesAndResumes() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("run-folder-\(UUID())")
        XCTAssertThrowsError(try RunFolder(url, start: .resume)) { XCTAssertTrue("\($0)".contains("no checkpoint to resume from"), "\($0)") }
        let folder = try RunFolder(url, start: .new)
        try Data("log".utf8).write(to: folder.logURL)
        XCTAssertThrowsError(try RunFolder(url, start: .new)) {
            XCTAssertEqual("\($0)", "\(url.path) already holds a run; pass --resume to continue it or --force to start over")
        }
        XCTAssertThrowsError(try RunFolder(url, start: .resume), "a log without a checkpoint cannot be resumed")
        for step in [5, 10, 15] {
            try folder.writeCheckpoint(String(format: "step-%04d", step), keep: 2) { try Data("\(step)".utf8).write(to: $0.appendingPathComponent("state")) }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.checkpointsURL.path).sorted(), ["step-0010", "step-0015"])
        // A checkpoint cut off mid-write is never the one resumed from.
        try FileManager.default.createDirectory(at: folder.checkpointsURL.appendingPathComponent("step-0020.partial"), withIntermediateDirectories: true)
        let resumed = try RunFolder(url, start: .resume)
        XCTAssertEqual(resumed.latestCheckpoint?.lastPathComponent, "step-0015")
        XCTAssertEqual(try String(contentsOf: resumed.latestCheckpoint!.appendingPathComponent("state"), encoding: .utf8), "15")
        _ = try RunFolder(url, start: .overwrite)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.checkpointsURL.path), "--force starts without the old checkpoints")
    }

    struct Settings: Codable, Equatable { var steps = 10; var rate = 0.5; var inner = Inner(); var added = "new" }
    struct Inner: Codable, Equatable { var a = 1; var b = 2 }
    struct State: CheckpointState { var epoch: Int; var config: Settings }

    /// A checkpoint written before the config gained a key (here `added`, and `inner.b`) resumes,
    /// the key taking the current value; a differing old key is still refused.
    func testStateFromBeforeAConfigKeyExistedResumes() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("state-\(UUID())")
        let folder = try RunFolder(url, start: .new)
        let checkpoint = url.appendingPathComponent("checkpoints/old")
        try FileManager.default.createDirectory(at: checkpoint, withIntermediateDirectories: true)
        try #"{"epoch": 3, "config": {"steps": 10, "rate": 0.5, "inner": {"a": 1}}}"#
            .write(to: checkpoint.appendingPathComponent("state.json"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try folder.readState(State.self, from: checkpoint, expecting: Settings()).epoch, 3)
        XCTAssertThrowsError(try folder.readState(State.self, from: checkpoint, expecting: Settings(steps: 11)))
        // State outside the config that an earlier version did not write: an error naming the field.
        try #"{"config": {"steps": 10}}"#.write(to: checkpoint.appendingPathComponent("state.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try folder.readState(State.self, from: checkpoint, expecting: Settings())) {
            XCTAssertTrue("\($0)".contains("lacks 'epoch': it was written by an earlier version"), "\($0)")
        }
    }

    struct Measured: CheckpointState { var history: [Double]; var config: Settings }

    /// A state holding NaN and infinities (an epoch whose KL was not measured) is written and read
    /// back as it was.
    func testStateWithNonFiniteNumbersRoundTrips() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("state-nan-\(UUID())")
        let folder = try RunFolder(url, start: .new)
        let checkpoint = url.appendingPathComponent("checkpoints/one")
        try FileManager.default.createDirectory(at: checkpoint, withIntermediateDirectories: true)
        try folder.writeState(Measured(history: [1.5, .nan, .infinity, -.infinity], config: Settings()), into: checkpoint)
        let history = try folder.readState(Measured.self, from: checkpoint, expecting: Settings()).history
        XCTAssertEqual(history[0], 1.5)
        XCTAssertTrue(history[1].isNaN)
        XCTAssertEqual(Array(history[2...]), [.infinity, -.infinity])
    }
}
