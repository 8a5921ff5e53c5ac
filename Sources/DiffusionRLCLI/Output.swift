import Foundation

/// A command-line error: printed as one line, exit status 2 for usage and 1 otherwise.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    let isUsage: Bool
    init(_ description: String, usage: Bool = false) { self.description = description; isUsage = usage }
}

/// Writes a progress line to stderr at once: results (tables, `--json`) go to stdout, so that
/// they can be piped while progress stays on the terminal.
func progress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Prints a value as one line of key-sorted JSON: what every `--json` option prints. A number
/// that is not finite (an estimate over nothing, a metric not computed) is written as null, since
/// JSON has no NaN or infinity.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let marker = "@@not-finite@@"
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: marker, negativeInfinity: marker, nan: marker)
    print(String(decoding: try encoder.encode(value), as: UTF8.self).replacingOccurrences(of: "\"\(marker)\"", with: "null"))
}
