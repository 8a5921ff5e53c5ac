import CHDF5
import Foundation
import Images

/// Writes one run to one HDF5 file, safely:
///
/// - the whole layout (groups, datasets, attributes, the prompt table) is created first, then the
///   file switches to SWMR writing (latest file format), so readers can follow it live;
/// - `endEpoch()` flushes the whole file (`H5Fflush`, global scope): a crash loses at most the
///   epoch in flight, and the file opens in SWMR-read mode afterwards;
/// - strings are fixed-length UTF-8 (SWMR cannot hold variable-length types).
///
///     /                 attributes: config, command_line, git_commit, seed, versions, host, start_time
///     /prompts          [P] fixed strings
///     /metrics/NAME     float64 [epochs]
///     /samples/epoch, /samples/prompt, /samples/seed   int64 [N];  /samples/COLUMN  float64 [N]
///     /images/pixels    uint8 [N, H, W, 3];  /images/epoch, /images/prompt  int64 [N]
///     /events/epoch int64, /events/kind, /events/message  fixed strings
///     /checkpoints/epoch int64, /checkpoints/path, /checkpoints/sha256  fixed strings
public final class RunLogWriter {
    public let url: URL
    public let layout: RunLayout
    private var file: Handle?
    /// Every dataset, by path ("metrics/loss", "samples/epoch", ...).
    private var sets: [String: ExtendableDataset] = [:]
    private var pendingMetrics: [String: Double] = [:]
    public private(set) var epochs = 0
    /// A writer that writes nothing (`init(discarding:)`).
    private var discards = false

    /// Creates the run file. An existing file is an error unless `overwrite`.
    public init(url: URL, layout: RunLayout, info: RunInfo, overwrite: Bool = false) throws {
        _ = H5.silenced
        self.url = url
        self.layout = layout
        for (kind, names) in [("metric", layout.metricNames), ("sample column", layout.sampleColumns)] {
            guard Set(names).count == names.count else { throw HDF5Error(description: "duplicate \(kind) name in \(names)") }
            if let bad = names.first(where: { $0.isEmpty || $0.contains("/") || $0 == "." }) {
                throw HDF5Error(description: "invalid \(kind) name '\(bad)'")
            }
        }
        if let bad = layout.sampleColumns.first(where: { ["epoch", "prompt", "seed"].contains($0) }) {
            throw HDF5Error(description: "sample column name '\(bad)' is reserved")
        }
        if FileManager.default.fileExists(atPath: url.path) && !overwrite {
            throw HDF5Error(description: "\(url.path) exists; refusing to overwrite a run (pass --force to replace it)")
        }
        let access = try H5.latestFormatAccess()
        let file = try Handle(H5Fcreate(url.path, overwrite ? chdf5_f_acc_trunc() : chdf5_f_acc_excl(), chdf5_p_default(), access.id),
                              "cannot create \(url.path)", closer: H5Fclose)
        self.file = file
        let root = file.id
        for (name, value) in [("config", info.config), ("command_line", info.commandLine), ("git_commit", info.gitCommit),
                              ("versions", info.versions), ("host", info.host), ("start_time", info.startTime),
                              ("layout", String(decoding: try JSONEncoder().encode(layout), as: UTF8.self))] {
            try H5.writeStringAttribute(root, name, value)
        }
        try H5.writeIntegerAttribute(root, "seed", info.seed)

        func strings(_ group: Handle, _ name: String, width: Int, chunkRows: Int) throws {
            let type = try H5.stringType(width: width)
            sets["\(try H5.name(group))/\(name)"] = try ExtendableDataset(in: group.id, name: name, trailing: [], memoryType: type.id,
                                                                         fileType: type, chunkRows: chunkRows)
        }
        func numbers(_ group: Handle, _ name: String, type: hid_t, trailing: [Int] = [], chunkRows: Int) throws {
            sets["\(try H5.name(group))/\(name)"] = try ExtendableDataset(in: group.id, name: name, trailing: trailing, memoryType: type,
                                                                         chunkRows: chunkRows)
        }
        // The prompt table is written before SWMR starts.
        let promptType = try H5.stringType(width: RunLayout.promptWidth)
        let prompts = try ExtendableDataset(in: root, name: "prompts", trailing: [], memoryType: promptType.id, fileType: promptType,
                                            chunkRows: max(layout.prompts.count, 1))
        try prompts.append(layout.prompts.flatMap { H5.fixedBytes($0, width: RunLayout.promptWidth) }, rows: layout.prompts.count)

        let metrics = try H5.group(root, "metrics", create: true)
        for name in layout.metricNames { try numbers(metrics, name, type: chdf5_native_double(), chunkRows: 64) }
        let samples = try H5.group(root, "samples", create: true)
        for name in ["epoch", "prompt", "seed"] { try numbers(samples, name, type: chdf5_native_int64(), chunkRows: 256) }
        for name in layout.sampleColumns { try numbers(samples, name, type: chdf5_native_double(), chunkRows: 256) }
        if let size = layout.imageSize {
            guard size.count == 2, size.allSatisfy({ $0 > 0 }) else { throw HDF5Error(description: "image size \(size) must be [height, width]") }
            let images = try H5.group(root, "images", create: true)
            try numbers(images, "pixels", type: chdf5_native_uint8(), trailing: [size[0], size[1], 3], chunkRows: 16)
            try numbers(images, "epoch", type: chdf5_native_int64(), chunkRows: 64)
            try numbers(images, "prompt", type: chdf5_native_int64(), chunkRows: 64)
        }
        let events = try H5.group(root, "events", create: true)
        try numbers(events, "epoch", type: chdf5_native_int64(), chunkRows: 64)
        try strings(events, "kind", width: RunLayout.eventKindWidth, chunkRows: 64)
        try strings(events, "message", width: RunLayout.eventMessageWidth, chunkRows: 64)
        let checkpoints = try H5.group(root, "checkpoints", create: true)
        try numbers(checkpoints, "epoch", type: chdf5_native_int64(), chunkRows: 16)
        try strings(checkpoints, "path", width: RunLayout.pathWidth, chunkRows: 16)
        try strings(checkpoints, "sha256", width: RunLayout.digestWidth, chunkRows: 16)

        try H5.check(H5Fflush(root, H5F_SCOPE_GLOBAL), "cannot flush \(url.path)")
        try H5.check(H5Fstart_swmr_write(root), "cannot start SWMR writing on \(url.path)")
    }

    deinit { try? close() }

    /// Clears the superblock's status flags that a writer killed while the file was open leaves
    /// set (what `h5clear -s` does): libhdf5 registers a file-access property,
    /// "clear_status_flags", that does it when the file is opened for writing; it is not in the
    /// public headers, so it is set by name. Fails when the file cannot be opened even so (another
    /// process holds it, or it is not an HDF5 file).
    static func clearStatusFlags(_ url: URL) throws {
        let access = try H5.latestFormatAccess()
        // hbool_t is one byte (C99 bool) or an int, by build; eight bytes holding 1 read as true either way.
        var clear: UInt64 = 1
        try H5.check(H5Pset(access.id, "clear_status_flags", &clear), "this libhdf5 cannot clear the status flag of \(url.path)")
        let id = H5Fopen(url.path, chdf5_f_acc_rdwr(), access.id)
        guard id >= 0 else {
            throw HDF5Error(description: "\(url.path) cannot be reopened for writing, even with its status flag cleared (is another process writing it?)")
        }
        try H5.check(H5Fclose(id), "cannot close \(url.path)")
    }

    /// Reopens an existing run to append more epochs. A file left by a crashed writer still says
    /// "open for writing": its status flag is cleared first (`clearStatusFlags`), and
    /// `resumeNotes` says so. Rows of an epoch that never finished (samples,
    /// images, events, checkpoints with an epoch at or past the last complete one, and metric
    /// rows beyond it) are cut, so the log holds every finished epoch once. With `keepingEpochs`,
    /// epochs from that one on are cut as well (a trainer resuming from an earlier checkpoint).
    public init(resuming url: URL, keepingEpochs keep: Int? = nil) throws {
        _ = H5.silenced
        self.url = url
        // The reader must be gone before the file is opened for writing in this process.
        layout = try { try RunLogReader(url: url).layout }()
        var notes: [String] = []
        let access = try H5.latestFormatAccess()
        var id = H5Fopen(url.path, chdf5_f_acc_rdwr(), access.id)
        if id < 0 {
            try RunLogWriter.clearStatusFlags(url)
            notes.append("cleared the status flag a crashed writer left in \(url.lastPathComponent)")
            id = H5Fopen(url.path, chdf5_f_acc_rdwr(), access.id)
        }
        let file = try Handle(id, "cannot reopen \(url.path) for writing", closer: H5Fclose)
        self.file = file
        func open(_ path: String, type: hid_t, string width: Int? = nil, trailing: [Int] = []) throws {
            let fileType = try width.map { try H5.stringType(width: $0) }
            sets[path] = try ExtendableDataset(opening: file.id, name: path, trailing: trailing, memoryType: fileType?.id ?? type,
                                               fileType: fileType)
        }
        for name in layout.metricNames { try open("/metrics/\(name)", type: chdf5_native_double()) }
        for name in ["epoch", "prompt", "seed"] { try open("/samples/\(name)", type: chdf5_native_int64()) }
        for name in layout.sampleColumns { try open("/samples/\(name)", type: chdf5_native_double()) }
        if let size = layout.imageSize {
            try open("/images/pixels", type: chdf5_native_uint8(), trailing: [size[0], size[1], 3])
            try open("/images/epoch", type: chdf5_native_int64())
            try open("/images/prompt", type: chdf5_native_int64())
        }
        try open("/events/epoch", type: chdf5_native_int64())
        try open("/events/kind", type: 0, string: RunLayout.eventKindWidth)
        try open("/events/message", type: 0, string: RunLayout.eventMessageWidth)
        try open("/checkpoints/epoch", type: chdf5_native_int64())
        try open("/checkpoints/path", type: 0, string: RunLayout.pathWidth)
        try open("/checkpoints/sha256", type: 0, string: RunLayout.digestWidth)

        let complete = Swift.min(try layout.metricNames.map { try sets["/metrics/\($0)"]!.rows() }.min() ?? 0, keep ?? .max)
        var cut = 0
        for name in layout.metricNames {
            let set = sets["/metrics/\(name)"]!
            if try set.rows() > complete { cut += try set.rows() - complete; try set.truncate(to: complete) }
        }
        // Row-per-item tables: keep the leading rows whose epoch is finished.
        let tables: [(String, [String])] = [("/samples", ["epoch", "prompt", "seed"] + layout.sampleColumns),
                                            ("/images", layout.imageSize == nil ? [] : ["epoch", "prompt", "pixels"]),
                                            ("/events", ["epoch", "kind", "message"]), ("/checkpoints", ["epoch", "path", "sha256"])]
        for (group, columns) in tables where !columns.isEmpty {
            let epochs = try sets["\(group)/epoch"]!.readIntegers()
            let keep = min(epochs.firstIndex { $0 >= Int64(complete) } ?? epochs.count,
                           try columns.map { try sets["\(group)/\($0)"]!.rows() }.min() ?? 0)
            for column in columns {
                let set = sets["\(group)/\(column)"]!
                if try set.rows() > keep { cut += try set.rows() - keep; try set.truncate(to: keep) }
            }
        }
        if cut > 0 { notes.append("dropped \(cut) rows of epochs from \(complete) on") }
        epochs = complete
        resumeNotes = notes
        try H5.check(H5Fflush(file.id, H5F_SCOPE_GLOBAL), "cannot flush \(url.path)")
        try H5.check(H5Fstart_swmr_write(file.id), "cannot start SWMR writing on \(url.path)")
    }

    /// What reopening a run had to repair (empty for a cleanly closed run).
    public private(set) var resumeNotes: [String] = []

    /// The writer of a process that must not write the run (a rank other than 0 of a distributed
    /// job): it takes every call and writes nothing, so the trainer's code is the same on every
    /// rank; `epochs` counts as if it wrote. `url` is the log the writing process keeps.
    public init(discarding layout: RunLayout, url: URL, epochs: Int = 0) {
        self.url = url
        self.layout = layout
        self.epochs = epochs
        discards = true
    }

    /// Records a metric for the epoch in progress. Only names declared in the layout are allowed.
    public func record(_ name: String, _ value: Double) throws {
        guard !discards else { return }
        guard sets["/metrics/\(name)"] != nil else {
            throw HDF5Error(description: "metric '\(name)' was not declared when the run started (declared: \(layout.metricNames.joined(separator: ", ")))")
        }
        pendingMetrics[name] = value
    }

    /// Appends per-sample rows: one entry per sample in every column (NaN in columns not given).
    public func appendSamples(epoch: Int, prompts: [Int], seeds: [Int64], columns: [String: [Double]]) throws {
        guard !discards else { return }
        let n = prompts.count
        guard seeds.count == n, columns.values.allSatisfy({ $0.count == n }) else {
            throw HDF5Error(description: "per-sample columns differ in length (\(n) prompts, \(seeds.count) seeds)")
        }
        if let unknown = columns.keys.sorted().first(where: { !layout.sampleColumns.contains($0) }) {
            throw HDF5Error(description: "sample column '\(unknown)' was not declared when the run started")
        }
        try append("/samples/epoch", [Int64](repeating: Int64(epoch), count: n), rows: n)
        try append("/samples/prompt", prompts.map(Int64.init), rows: n)
        try append("/samples/seed", seeds, rows: n)
        for name in layout.sampleColumns { try append("/samples/\(name)", columns[name] ?? [Double](repeating: .nan, count: n), rows: n) }
    }

    /// Appends images (RGB, of the declared size) with the prompt index of each.
    public func appendImages(epoch: Int, prompts: [Int], images: [RGBImage]) throws {
        guard !discards else { return }
        guard let size = layout.imageSize else { throw HDF5Error(description: "this run declared no image size") }
        guard prompts.count == images.count else { throw HDF5Error(description: "\(images.count) images for \(prompts.count) prompts") }
        var bytes: [UInt8] = []
        for image in images {
            let rgb = image.rgb()
            guard rgb.height == size[0], rgb.width == size[1] else {
                throw HDF5Error(description: "image of \(rgb.height)×\(rgb.width) in a run of \(size[0])×\(size[1]) images")
            }
            bytes += rgb.pixels
        }
        try append("/images/pixels", bytes, rows: images.count)
        try append("/images/epoch", [Int64](repeating: Int64(epoch), count: images.count), rows: images.count)
        try append("/images/prompt", prompts.map(Int64.init), rows: images.count)
    }

    /// Appends an event (a warning, a decision of the guard, a skipped batch...).
    public func event(epoch: Int, kind: String, _ message: String) throws {
        guard !discards else { return }
        try append("/events/epoch", [Int64(epoch)], rows: 1)
        try append("/events/kind", H5.fixedBytes(kind, width: RunLayout.eventKindWidth), rows: 1)
        try append("/events/message", H5.fixedBytes(message, width: RunLayout.eventMessageWidth), rows: 1)
    }

    /// Records a checkpoint file written at `epoch`, with its SHA-256.
    public func checkpoint(epoch: Int, path: String, sha256: String) throws {
        guard !discards else { return }
        try append("/checkpoints/epoch", [Int64(epoch)], rows: 1)
        try append("/checkpoints/path", H5.fixedBytes(path, width: RunLayout.pathWidth), rows: 1)
        try append("/checkpoints/sha256", H5.fixedBytes(sha256, width: RunLayout.digestWidth), rows: 1)
    }

    /// Ends the epoch: one row in every metric (NaN where none was recorded), then a global flush.
    public func endEpoch() throws {
        guard !discards else { epochs += 1; return }
        for name in layout.metricNames { try append("/metrics/\(name)", [pendingMetrics[name] ?? .nan], rows: 1) }
        pendingMetrics = [:]
        epochs += 1
        try flush()
        let size = fileSize
        if let last = lastSize { largestGrowth = max(largestGrowth, size - last) }
        lastSize = size
    }

    /// The log's size after the last epoch, and the most it grew in one.
    private var lastSize: Int64?
    private var largestGrowth: Int64 = 0

    /// Flushes everything written so far to disk.
    public func flush() throws {
        guard !discards else { return }
        guard let file else { throw HDF5Error(description: "\(url.path) is closed") }
        try H5.check(H5Fflush(file.id, H5F_SCOPE_GLOBAL), "cannot flush \(url.path)")
    }

    /// Flushes and closes the file (also done on release); later writes fail.
    public func close() throws {
        guard !discards else { return }
        guard file != nil else { return }
        defer { sets = [:]; file = nil }
        try flush()
    }

    /// Between steps of a training loop: when SIGINT or SIGTERM asked to stop (`StopSignal`),
    /// records a "stopped" event (at `epoch`, default the epochs written), closes the log and
    /// throws `RunInterrupted` naming `position` ("at step 40", "before epoch 3") and `hint`.
    /// Also stops, with a `DiskFull` error, when the log's file system (or the process's file-size
    /// limit) leaves less room than `requiredHeadroom`: stopped here, the log still closes whole;
    /// a write that fails mid-flush would leave a file libhdf5 cannot open.
    public func stopIfRequested(_ position: String, epoch: Int? = nil, hint: String? = nil) throws {
        if StopSignal.requested {
            try event(epoch: epoch ?? epochs, kind: "stopped", "interrupted \(position)" + (hint.map { "; \($0)" } ?? ""))
            try close()
            throw RunInterrupted(description: "interrupted \(position); the log is closed" + (hint.map { ", \($0)" } ?? ""))
        }
        guard !discards else { return }
        let room = headroom(), needed = requiredHeadroom
        guard room < needed else { return }
        let message = "stopped \(position): \(room / 1024) KiB left for \(url.lastPathComponent), at least \(needed / 1024) KiB needed"
        try event(epoch: epoch ?? epochs, kind: "stopped", message)
        try close()
        throw DiskFull(description: "\(message); the log is closed — free space, then resume with --resume")
    }

    /// Bytes the log can still grow by: the free space of its file system for an unprivileged
    /// writer, and under a file-size limit (RLIMIT_FSIZE) what is left below it.
    public func headroom() -> Int64 {
        var room = Int64.max
        var stats = statvfs()
        if statvfs(url.deletingLastPathComponent().path, &stats) == 0 { room = Int64(stats.f_bavail) * Int64(stats.f_frsize) }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit) == 0 && limit.rlim_cur < rlim_t(Int64.max) {
            room = min(room, Int64(clamping: limit.rlim_cur) - fileSize)
        }
        return room
    }

    /// What a clean stop asks to be left: 256 KiB, or four times the most the log grew in one epoch.
    public var requiredHeadroom: Int64 { max(256 * 1024, 4 * largestGrowth) }

    private var fileSize: Int64 {
        (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.int64Value ?? 0
    }

    private func append<T>(_ path: String, _ values: [T], rows: Int) throws {
        guard file != nil, let set = sets[path] else { throw HDF5Error(description: "\(url.path) is closed") }
        try set.append(values, rows: rows)
    }
}

/// A run stopped because its disk was nearly full, with its log closed cleanly, in one line.
public struct DiskFull: Error, CustomStringConvertible {
    public let description: String
}

/// A run stopped on request (SIGINT or SIGTERM) with its log closed cleanly, in one line.
public struct RunInterrupted: Error, CustomStringConvertible {
    public let description: String
}
