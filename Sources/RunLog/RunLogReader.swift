import CHDF5
import Foundation
import Images

/// One event of a run.
public struct RunEvent: Equatable, Sendable, Codable {
    public var epoch: Int
    public var kind: String
    public var message: String
}

/// One checkpoint of a run.
public struct RunCheckpoint: Equatable, Sendable, Codable {
    public var epoch: Int
    public var path: String
    public var sha256: String
}

/// Reads a run log, including one being written or left by a crashed writer: files open in
/// SWMR-read mode, and `refresh()` picks up rows appended since.
public final class RunLogReader {
    public let url: URL
    private let file: Handle
    private var openSets: [String: Handle] = [:]
    /// The root attributes (config, command_line, git_commit, seed, versions, host, start_time).
    public let attributes: [String: String]
    /// The layout the run declared.
    public let layout: RunLayout

    public init(url: URL) throws {
        _ = H5.silenced
        self.url = url
        guard FileManager.default.fileExists(atPath: url.path) else { throw HDF5Error(description: "\(url.path): no such file") }
        guard H5Fis_hdf5(url.path) > 0 else { throw HDF5Error(description: "\(url.path) is not an HDF5 file") }
        let access = try H5.readAccess()
        file = try Handle(H5Fopen(url.path, chdf5_f_acc_rdonly() | chdf5_f_acc_swmr_read(), access.id),
                          "\(url.path): cannot open the HDF5 file (truncated or damaged?)", closer: H5Fclose)
        var attributes: [String: String] = [:]
        for name in ["config", "command_line", "git_commit", "seed", "versions", "host", "start_time", "layout"] {
            attributes[name] = H5.readAttribute(file.id, name)
        }
        guard let layoutText = attributes["layout"], H5Lexists(file.id, "metrics", chdf5_p_default()) > 0,
              let layout = try? JSONDecoder().decode(RunLayout.self, from: Data(layoutText.utf8)) else {
            throw HDF5Error(description: "\(url.path) holds no DiffusionRL run (no run layout or /metrics)")
        }
        self.attributes = attributes
        self.layout = layout
    }

    /// The metric names, in the order the run declared them.
    public var metricNames: [String] { layout.metricNames }

    /// What the run declared about each metric (name, which way is better, kind), in order.
    public var metricSpecs: [MetricSpec] { layout.metrics }

    /// Picks up rows that a live writer has flushed since the last read.
    public func refresh() {
        for set in openSets.values { _ = H5Drefresh(set.id) }
    }

    /// Number of finished epochs (rows in the metric datasets).
    public func epochs() throws -> Int {
        guard let first = layout.metricNames.first else { return 0 }
        return try rows("/metrics/\(first)")
    }

    /// Values of one metric, one per epoch.
    public func metric(_ name: String) throws -> [Double] {
        guard layout.metricNames.contains(name) else { throw HDF5Error(description: "\(url.lastPathComponent) has no metric '\(name)'") }
        return try read("/metrics/\(name)", Double.self, type: chdf5_native_double())
    }

    /// The prompt table.
    public func prompts() throws -> [String] {
        try readStrings("/prompts", width: RunLayout.promptWidth)
    }

    /// A per-sample column: "epoch", "prompt", "seed" or a declared float column.
    public func sampleColumn(_ name: String) throws -> [Double] {
        if ["epoch", "prompt", "seed"].contains(name) {
            return try read("/samples/\(name)", Int64.self, type: chdf5_native_int64()).map(Double.init)
        }
        guard layout.sampleColumns.contains(name) else { throw HDF5Error(description: "\(url.lastPathComponent) has no sample column '\(name)'") }
        return try read("/samples/\(name)", Double.self, type: chdf5_native_double())
    }

    public func events() throws -> [RunEvent] {
        let epochs = try read("/events/epoch", Int64.self, type: chdf5_native_int64())
        let kinds = try readStrings("/events/kind", width: RunLayout.eventKindWidth)
        let messages = try readStrings("/events/message", width: RunLayout.eventMessageWidth)
        let n = min(epochs.count, kinds.count, messages.count)
        return (0..<n).map { RunEvent(epoch: Int(epochs[$0]), kind: kinds[$0], message: messages[$0]) }
    }

    public func checkpoints() throws -> [RunCheckpoint] {
        let epochs = try read("/checkpoints/epoch", Int64.self, type: chdf5_native_int64())
        let paths = try readStrings("/checkpoints/path", width: RunLayout.pathWidth)
        let digests = try readStrings("/checkpoints/sha256", width: RunLayout.digestWidth)
        let n = min(epochs.count, paths.count, digests.count)
        return (0..<n).map { RunCheckpoint(epoch: Int(epochs[$0]), path: paths[$0], sha256: digests[$0]) }
    }

    /// The logged images with their epoch and prompt index.
    public func images() throws -> [(epoch: Int, prompt: Int, image: RGBImage)] {
        guard let size = layout.imageSize else { return [] }
        let epochs = try read("/images/epoch", Int64.self, type: chdf5_native_int64())
        let prompts = try read("/images/prompt", Int64.self, type: chdf5_native_int64())
        let pixels = try read("/images/pixels", UInt8.self, type: chdf5_native_uint8(), trailing: size[0] * size[1] * 3)
        let n = min(epochs.count, prompts.count, pixels.count / (size[0] * size[1] * 3))
        return (0..<n).map { i in
            let stride = size[0] * size[1] * 3
            return (Int(epochs[i]), Int(prompts[i]),
                    RGBImage(width: size[1], height: size[0], channels: 3, pixels: Array(pixels[i * stride ..< (i + 1) * stride])))
        }
    }

    private func dataset(_ path: String) throws -> Handle {
        if let open = openSets[path] { return open }
        let set = try Handle(H5Dopen2(file.id, path, chdf5_p_default()), "\(url.lastPathComponent): no dataset \(path)", closer: H5Dclose)
        openSets[path] = set
        return set
    }

    private func rows(_ path: String) throws -> Int {
        let set = try dataset(path)
        let space = try Handle(H5Dget_space(set.id), "cannot read the space of \(path)", closer: H5Sclose)
        let rank = H5Sget_simple_extent_ndims(space.id)
        guard rank >= 1 else { throw HDF5Error(description: "\(path) is not an array") }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        _ = H5Sget_simple_extent_dims(space.id, &dims, nil)
        return Int(dims[0])
    }

    private func read<T>(_ path: String, _: T.Type, type: hid_t, trailing: Int = 1) throws -> [T] where T: Numeric {
        let set = try dataset(path)
        let count = try rows(path) * trailing
        var values = [T](repeating: 0, count: count)
        guard count > 0 else { return [] }
        let status = values.withUnsafeMutableBytes { H5Dread(set.id, type, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress) }
        try H5.check(status, "cannot read \(path)")
        return values
    }

    private func readStrings(_ path: String, width: Int) throws -> [String] {
        let set = try dataset(path)
        let count = try rows(path)
        guard count > 0 else { return [] }
        let type = try Handle(H5Dget_type(set.id), "cannot read the type of \(path)", closer: H5Tclose)
        let size = H5Tget_size(type.id)
        var bytes = [UInt8](repeating: 0, count: count * size)
        try H5.check(H5Dread(set.id, type.id, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), &bytes), "cannot read \(path)")
        return H5.strings(bytes, width: size)
    }
}

extension RunLogReader {
    /// The run logs under a folder (any depth): every `.h5` file that opens as a run, sorted by path.
    public static func runs(in directory: URL) -> [URL] {
        guard let walker = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else { return [] }
        var found: [URL] = []
        for case let url as URL in walker where url.pathExtension == "h5" {
            if (try? RunLogReader(url: url)) != nil { found.append(url) }
        }
        return found.sorted { $0.path < $1.path }
    }
}
