import Foundation

/// One line of a preference data set (JSONL), in either of two forms:
///
///     {"prompt": "a red circle", "images": ["images/000001.png", "images/000002.png"],
///      "preferred": {"alignment": 0, "fidelity": 1, "overall": 0}}          — a pair
///     {"prompt": "a red circle", "images": ["images/000003.png"], "labels": {"safety": false}}
///                                                                          — an unpaired label
///
/// `preferred` names, per perspective, the index of the preferred image of the pair; `labels`
/// says, per perspective, whether the image is good (true) or bad. Image paths are relative to the
/// JSONL file's folder. Data made from the world also carries the gold judge's verdicts
/// (`goldPreferred`, `goldLabels`) for evaluation; a user's own data may leave them out.
public struct PreferenceRecord: Codable, Equatable, Sendable {
    public var prompt: String
    public var images: [String]
    public var preferred: [String: Int]?
    public var labels: [String: Bool]?
    public var goldPreferred: [String: Int]?
    public var goldLabels: [String: Bool]?

    public init(prompt: String, images: [String], preferred: [String: Int]? = nil, labels: [String: Bool]? = nil,
                goldPreferred: [String: Int]? = nil, goldLabels: [String: Bool]? = nil) {
        self.prompt = prompt
        self.images = images
        self.preferred = preferred
        self.labels = labels
        self.goldPreferred = goldPreferred
        self.goldLabels = goldLabels
    }

    public var isPair: Bool { images.count == 2 }

    static let keys: Set<String> = ["prompt", "images", "preferred", "labels", "goldPreferred", "goldLabels"]
}

/// What is wrong with a preference data file, in one line naming the file and line.
public struct PreferenceDataError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Reading and writing preference JSONL.
public enum PreferenceData {
    /// The records of a JSONL file, checked strictly: unknown keys, a pair without `preferred`,
    /// a single image without `labels`, an index other than 0 or 1, or a missing image are errors.
    public static func read(_ url: URL) throws -> [PreferenceRecord] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw PreferenceDataError(description: "cannot read preference data \(url.path)")
        }
        return try parse(text, folder: url.deletingLastPathComponent(), name: url.lastPathComponent, path: url.path)
    }

    /// The records of JSONL `text` whose images lie in `folder`; `name` and `path` name the file in errors.
    public static func parse(_ text: String, folder: URL, name: String, path: String) throws -> [PreferenceRecord] {
        var records: [PreferenceRecord] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { continue }
            func fail(_ why: String) -> PreferenceDataError {
                PreferenceDataError(description: "\(name) line \(index + 1): \(why)")
            }
            let data = Data(trimmed.utf8)
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw fail("not a JSON object") }
            if let unknown = object.keys.sorted().first(where: { !PreferenceRecord.keys.contains($0) }) {
                throw fail("unknown key '\(unknown)' (known: \(PreferenceRecord.keys.sorted().joined(separator: ", ")))")
            }
            let record: PreferenceRecord
            do { record = try JSONDecoder().decode(PreferenceRecord.self, from: data) } catch { throw fail("\(error)") }
            switch record.images.count {
            case 2:
                guard let preferred = record.preferred, !preferred.isEmpty else { throw fail("a pair needs 'preferred'") }
                guard preferred.values.allSatisfy({ $0 == 0 || $0 == 1 }) else { throw fail("'preferred' indices are 0 or 1") }
            case 1:
                guard let labels = record.labels, !labels.isEmpty else { throw fail("a single image needs 'labels'") }
            default:
                throw fail("'images' holds one image (labels) or two (a pair), not \(record.images.count)")
            }
            // Images live in the data's folder: an absolute path or a ".." would read files elsewhere.
            for path in record.images where path.hasPrefix("/") || path.split(separator: "/").contains("..") {
                throw fail("image path \(path) is outside the data folder (paths are relative to it, without '..')")
            }
            for path in record.images where !FileManager.default.fileExists(atPath: folder.appendingPathComponent(path).path) {
                throw fail("image \(path) not found next to the file")
            }
            records.append(record)
        }
        guard !records.isEmpty else { throw PreferenceDataError(description: "\(path) holds no records") }
        return records
    }

    /// Writes records as JSONL (keys sorted, one record per line).
    public static func write(_ records: [PreferenceRecord], to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var text = ""
        for record in records { text += String(decoding: try encoder.encode(record), as: UTF8.self) + "\n" }
        try text.write(to: url, atomically: true, encoding: .utf8)
    }
}
