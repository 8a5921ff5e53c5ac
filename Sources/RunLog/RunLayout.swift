/// How to read one per-epoch metric, declared by the trainer that writes it: which direction is
/// better, and what it is — so that `inspect`, `report` and other readers never guess from names.
public struct MetricSpec: Codable, Equatable, Sendable, ExpressibleByStringLiteral {
    /// Which way the metric improves (`neither` for settings, counts and diagnostics).
    public enum Better: String, Codable, Sendable { case higher, lower, neither }
    /// What the metric measures, where a reader treats it specially.
    public enum Kind: String, Codable, Sendable {
        /// The training reward, or one of its perspectives.
        case reward
        /// A learned reward's perspective; `gold` names the gold judge's score of the same samples.
        case proxy
        /// The gold judge's score of the training samples.
        case gold
        /// The KL to the reference model (total per sample), and one sampling step's share of it.
        case kl, klStep
        /// A score of a fixed evaluation.
        case evaluation
        /// The wall-clock seconds each row (epoch or logged interval) took in all: their sum is the
        /// run's time.
        case duration
        case loss, other
    }

    public var name: String
    public var better: Better
    public var kind: Kind
    /// For `proxy`: the gold metric of the same samples.
    public var gold: String?
    /// For `klStep`: the sampling step.
    public var step: Int?

    public init(_ name: String, better: Better = .neither, kind: Kind = .other, gold: String? = nil, step: Int? = nil) {
        self.name = name
        self.better = better
        self.kind = kind
        self.gold = gold
        self.step = step
    }

    /// A metric with nothing declared about it.
    public init(stringLiteral name: String) { self.init(name) }

    enum CodingKeys: String, CodingKey { case name, better, kind, gold, step }

    /// Logs written before metrics were declared list bare names: read them as undeclared.
    public init(from decoder: Decoder) throws {
        if let name = try? decoder.singleValueContainer().decode(String.self) {
            self.init(name)
            return
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(try c.decode(String.self, forKey: .name), better: try c.decode(Better.self, forKey: .better),
                  kind: try c.decode(Kind.self, forKey: .kind), gold: try c.decodeIfPresent(String.self, forKey: .gold),
                  step: try c.decodeIfPresent(Int.self, forKey: .step))
    }
}

/// What a run will write, declared before it starts: under SWMR the file's layout is fixed once
/// writing begins, so every metric, per-sample column and the image size are named up front.
public struct RunLayout: Codable, Equatable, Sendable {
    /// Per-epoch metrics (float64, one row per epoch; NaN where an epoch does not report one).
    public var metrics: [MetricSpec]
    /// The metrics' names, in declaration order.
    public var metricNames: [String] { metrics.map(\.name) }
    /// Per-sample float64 columns besides epoch, prompt index and seed (rewards, gold, KL...).
    public var sampleColumns: [String]
    /// The run's prompts; samples and images refer to them by index.
    public var prompts: [String]
    /// Height and width of logged images, or nil when the run logs none.
    public var imageSize: [Int]?

    public init(metrics: [MetricSpec], sampleColumns: [String] = [], prompts: [String] = [], imageSize: [Int]? = nil) {
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
        let commit = checkedOutCommit(in: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)) ?? "unknown"
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        _ = H5get_libversion(&major, &minor, &release)
        let formatter = ISO8601DateFormatter()
        return RunInfo(config: config, commandLine: CommandLine.arguments.joined(separator: " "), gitCommit: commit, seed: seed,
                       versions: "diffusion-rl 0.1; HDF5 \(major).\(minor).\(release)",
                       host: ProcessInfo.processInfo.hostName, startTime: formatter.string(from: Date()))
    }
}

/// The commit checked out in the git work tree at or above `directory`, read from `.git` itself
/// (HEAD, the ref it names, or packed-refs) — no `git` process; nil outside a repository.
public func checkedOutCommit(in directory: URL) -> String? {
    var folder = directory.standardizedFileURL
    while true {
        var gitDirectory = folder.appendingPathComponent(".git")
        // A worktree or submodule has a `.git` file: "gitdir: PATH".
        if let text = try? String(contentsOf: gitDirectory, encoding: .utf8), text.hasPrefix("gitdir:") {
            let path = text.dropFirst("gitdir:".count).trimmingCharacters(in: .whitespacesAndNewlines)
            gitDirectory = path.hasPrefix("/") ? URL(fileURLWithPath: path) : folder.appendingPathComponent(path)
        }
        if let head = try? String(contentsOf: gitDirectory.appendingPathComponent("HEAD"), encoding: .utf8) {
            let line = head.trimmingCharacters(in: .whitespacesAndNewlines)
            guard line.hasPrefix("ref:") else { return isCommitHash(line) ? line : nil }
            let ref = line.dropFirst("ref:".count).trimmingCharacters(in: .whitespaces)
            // A linked worktree keeps its refs in the common directory.
            var common = gitDirectory
            if let path = try? String(contentsOf: gitDirectory.appendingPathComponent("commondir"), encoding: .utf8) {
                let trimmed = path.trimmingCharacters(in: .whitespacesAndNewlines)
                common = trimmed.hasPrefix("/") ? URL(fileURLWithPath: trimmed) : gitDirectory.appendingPathComponent(trimmed)
            }
            for base in [gitDirectory, common] {
                if let value = try? String(contentsOf: base.appendingPathComponent(ref), encoding: .utf8) {
                    let hash = value.trimmingCharacters(in: .whitespacesAndNewlines)
                    if isCommitHash(hash) { return hash }
                }
                if let packed = try? String(contentsOf: base.appendingPathComponent("packed-refs"), encoding: .utf8) {
                    for entry in packed.split(separator: "\n") where entry.hasSuffix(" " + ref) {
                        let hash = String(entry.prefix { $0 != " " })
                        if isCommitHash(hash) { return hash }
                    }
                }
            }
            return nil
        }
        let parent = folder.deletingLastPathComponent()
        if parent.path == folder.path { return nil }
        folder = parent
    }
}

private func isCommitHash(_ text: String) -> Bool {
    (text.count == 40 || text.count == 64) && text.allSatisfy(\.isHexDigit)
}
