import Foundation

/// How a trainer opens its run folder.
public enum RunStart: Sendable, Equatable {
    /// A new run; refused where the folder already holds one.
    case new
    /// A new run replacing the one in the folder (`--force`): its log and checkpoints go.
    case overwrite
    /// The continuation of the run in the folder from its newest checkpoint (`--resume`).
    case resume
    /// The folder as another process of the same distributed job opened it (rank 0 writes the
    /// run; the other ranks only read a checkpoint to resume from): no checks, nothing created.
    case follow

    /// What a trainer's flags ask for (`--resume`, `--force`, or a new run); a process that does
    /// not write the run (a rank other than 0) follows the one that does.
    public init(resume: Bool, overwrite: Bool, writes: Bool = true) {
        self = !writes ? .follow : resume ? .resume : overwrite ? .overwrite : .new
    }
}

/// The folder every trainer writes a run to: the log `run.h5`, resumable checkpoints under
/// `checkpoints/NAME` (written atomically and rotated), and the run's results beside them. One type
/// so that pretraining, fine-tuning and reward training start, refuse, overwrite and resume alike.
public struct RunFolder: Sendable {
    public let url: URL
    public let start: RunStart

    public var logURL: URL { url.appendingPathComponent("run.h5") }
    public var checkpointsURL: URL { url.appendingPathComponent("checkpoints") }

    /// Opens `url` for `start`: `.new` refuses a folder that already holds a run, `.resume` one
    /// without a checkpoint (or, when `resumesFromLog` — a job whose whole state is its log, like a
    /// study — one without a log), and `.overwrite` removes the old run's checkpoints (the log
    /// writer replaces `run.h5`). Creates the folder for a new run.
    public init(_ url: URL, start: RunStart, resumesFromLog: Bool = false) throws {
        self.url = url
        self.start = start
        let manager = FileManager.default
        switch start {
        case .new:
            if manager.fileExists(atPath: logURL.path) {
                throw RunFolderError("\(url.path) already holds a run; pass --resume to continue it or --force to start over")
            }
        case .overwrite:
            try? manager.removeItem(at: checkpointsURL)
        case .resume:
            guard manager.fileExists(atPath: logURL.path), resumesFromLog || latestCheckpoint != nil else {
                throw RunFolderError("\(url.path) has no \(resumesFromLog ? "log" : "checkpoint") to resume from")
            }
        case .follow:
            return
        }
        try manager.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// The newest complete checkpoint (names sort in order: `epoch-0007`, `step-000500`), if any.
    public var latestCheckpoint: URL? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: checkpointsURL.path) else { return nil }
        return names.filter { !$0.hasPrefix(".") && !$0.hasSuffix(".partial") }.sorted().last.map { checkpointsURL.appendingPathComponent($0) }
    }

    /// Writes checkpoint `name` atomically (`body` fills a temporary folder, renamed when complete),
    /// then removes all but the newest `keep` checkpoints. Returns the checkpoint's folder.
    @discardableResult
    public func writeCheckpoint(_ name: String, keep: Int = 1, _ body: (URL) throws -> Void) throws -> URL {
        let folder = checkpointsURL.appendingPathComponent(name)
        try writeFolderAtomically(folder, body)
        let names = try FileManager.default.contentsOfDirectory(atPath: checkpointsURL.path)
            .filter { !$0.hasPrefix(".") && !$0.hasSuffix(".partial") }.sorted()
        for old in names.dropLast(max(keep, 1)) where old != name {
            try? FileManager.default.removeItem(at: checkpointsURL.appendingPathComponent(old))
        }
        return folder
    }
}

/// Writes a folder so that it is never seen half-written: `body` fills a temporary sibling
/// `NAME.partial`, which then replaces `folder` by rename. A crash leaves the previous folder or
/// a `.partial` one (which readers skip), not a partial `folder`.
public func writeFolderAtomically(_ folder: URL, _ body: (URL) throws -> Void) throws {
    let manager = FileManager.default
    let temporary = folder.deletingLastPathComponent().appendingPathComponent(folder.lastPathComponent + ".partial")
    try? manager.removeItem(at: temporary)
    try manager.createDirectory(at: temporary, withIntermediateDirectories: true)
    try body(temporary)
    // On disk before the rename makes them the folder: a power cut after it never finds the new
    // name over data the page cache had not written yet (a kill alone cannot lose written data).
    for name in try manager.contentsOfDirectory(atPath: temporary.path) { synchronize(temporary.appendingPathComponent(name)) }
    synchronize(temporary)
    try? manager.removeItem(at: folder)
    try manager.moveItem(at: temporary, to: folder)
    synchronize(folder.deletingLastPathComponent())
}

/// fsync of a file or folder (best effort: a file system without it keeps the ordering it has).
func synchronize(_ url: URL) {
    let descriptor = open(url.path, O_RDONLY)
    guard descriptor >= 0 else { return }
    _ = fsync(descriptor)
    close(descriptor)
}

/// A run folder that cannot be opened as asked, in one line.
public struct RunFolderError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What a trainer's checkpoint records in `state.json` besides its tensors. It always holds the
/// config the run was started with, so that a resume with another config is refused.
public protocol CheckpointState: Codable {
    associatedtype Config: Codable & Equatable
    var config: Config { get }
}

extension RunFolder {
    /// How `state.json` spells the doubles JSON has no number for: an unmeasured epoch's NaN (the
    /// guard's history between KL measurements) must survive a checkpoint.
    static let nonFinite = (positive: "Infinity", negative: "-Infinity", nan: "NaN")

    /// Writes `state` as `state.json` into a checkpoint folder being written.
    public func writeState<State: CheckpointState>(_ state: State, into checkpoint: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: RunFolder.nonFinite.positive, negativeInfinity: RunFolder.nonFinite.negative, nan: RunFolder.nonFinite.nan)
        try encoder.encode(state).write(to: checkpoint.appendingPathComponent("state.json"))
    }

    /// The `state.json` of `checkpoint`; refuses one written by a run with a config other than `config`.
    /// A key the config gained after the checkpoint was written takes the value `config` gives it,
    /// so a run stopped by an older version still resumes.
    public func readState<State: CheckpointState>(_ type: State.Type, from checkpoint: URL, expecting config: State.Config) throws -> State {
        let file = checkpoint.appendingPathComponent("state.json")
        guard var object = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] else {
            throw RunFolderError("\(file.path) is not a JSON object")
        }
        if let stored = object["config"] as? [String: Any],
           let current = try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)) as? [String: Any] {
            object["config"] = RunFolder.overlay(stored, on: current)
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: RunFolder.nonFinite.positive, negativeInfinity: RunFolder.nonFinite.negative, nan: RunFolder.nonFinite.nan)
        let state: State
        do {
            state = try decoder.decode(State.self, from: JSONSerialization.data(withJSONObject: object))
        } catch let DecodingError.keyNotFound(key, context) {
            // A checkpoint from before a field existed: say which, not Foundation's "data is missing".
            let path = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            throw RunFolderError("\(file.path) lacks '\(path)': it was written by an earlier version of diffusion-rl; resume it with that version, or start a new run")
        }
        guard state.config == config else {
            throw RunFolderError("the config differs from the one \(url.path) was started with; resume with the same config")
        }
        return state
    }

    /// `top` laid over `base`, object by object: what `top` lacks comes from `base`.
    static func overlay(_ top: [String: Any], on base: [String: Any]) -> [String: Any] {
        var result = base
        for (key, value) in top {
            if let inner = value as? [String: Any], let under = base[key] as? [String: Any] {
                result[key] = overlay(inner, on: under)
            } else {
                result[key] = value
            }
        }
        return result
    }
}
