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
}
