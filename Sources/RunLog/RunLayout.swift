/// What a run will write, declared before it starts: under SWMR the file's layout is fixed once
/// writing begins, so every metric, per-sample column and the image size are named up front.
public struct RunLayout: Codable, Equatable, Sendable {
    /// Per-epoch metrics (float64, one row per epoch; NaN where an epoch does not report one).
    public var metrics: [String]
    /// Per-sample float64 columns besides epoch, prompt index and seed (rewards, gold, KL...).
    public var sampleColumns: [String]
    /// The run's prompts; samples and images refer to them by index.
    public var prompts: [String]
    /// Height and width of logged images, or nil when the run logs none.
    public var imageSize: [Int]?

    public init(metrics: [String], sampleColumns: [String] = [], prompts: [String] = [], imageSize: [Int]? = nil) {
        self.metrics = metrics
        self.sampleColumns = sampleColumns
        self.prompts = prompts
        self.imageSize = imageSize
    }

    /// Fixed widths of the string columns, in bytes (longer text is cut at a character boundary).
    public static let promptWidth = 256, eventKindWidth = 32, eventMessageWidth = 512, pathWidth = 512, digestWidth = 64
}

/// The run's identity, written as root attributes.
public struct RunInfo: Sendable {
    public var config: String
    public var commandLine: String
    public var gitCommit: String
    public var seed: Int64
    public var versions: String
    public var host: String
    public var startTime: String

    public init(config: String, commandLine: String, gitCommit: String, seed: Int64, versions: String, host: String, startTime: String) {
        self.config = config
        self.commandLine = commandLine
        self.gitCommit = gitCommit
        self.seed = seed
        self.versions = versions
        self.host = host
        self.startTime = startTime
    }
}

import CHDF5
import Foundation

extension RunInfo {
    /// The identity of a run started now by this process: the command line, the git commit of
    /// the working directory (or "unknown"), host, versions and start time.
    public static func current(config: String, seed: Int64) -> RunInfo {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "rev-parse", "HEAD"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        var commit = "unknown"
        if (try? process.run()) != nil {
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            if process.terminationStatus == 0 {
                commit = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        _ = H5get_libversion(&major, &minor, &release)
        let formatter = ISO8601DateFormatter()
        return RunInfo(config: config, commandLine: CommandLine.arguments.joined(separator: " "), gitCommit: commit, seed: seed,
                       versions: "diffusion-rl 0.1; HDF5 \(major).\(minor).\(release)",
                       host: ProcessInfo.processInfo.hostName, startTime: formatter.string(from: Date()))
    }
}
