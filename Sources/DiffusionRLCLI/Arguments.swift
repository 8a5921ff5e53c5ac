import Foundation

/// A command-line error: printed as one line, exit status 2 for usage and 1 otherwise.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    let isUsage: Bool
    init(_ description: String, usage: Bool = false) { self.description = description; isUsage = usage }
}

/// Parsed `--name value` options, `--flag`s and positional arguments of one subcommand. A name
/// the command does not declare is an "unknown option" error.
struct Arguments {
    private var options: [String: String] = [:]
    private var flags: Set<String> = []
    private(set) var positional: [String] = []

    /// `optionNames` take a value; `flagNames` take none.
    init(_ arguments: [String], optionNames: Set<String>, flagNames: Set<String>) throws {
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            if argument.hasPrefix("--") {
                var name = String(argument.dropFirst(2))
                var value: String?
                if let equals = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: equals)...])
                    name = String(name[..<equals])
                }
                if flagNames.contains(name) {
                    flags.insert(name)
                } else if !optionNames.contains(name) {
                    throw CommandError("unknown option --\(name) (see --help)", usage: true)
                } else {
                    if value == nil {
                        guard i + 1 < arguments.count else { throw CommandError("option --\(name) needs a value", usage: true) }
                        i += 1
                        value = arguments[i]
                    }
                    options[name] = value
                }
            } else {
                positional.append(argument)
            }
            i += 1
        }
    }

    func flag(_ name: String) -> Bool { flags.contains(name) }

    func string(_ name: String) -> String? { options[name] }

    func int(_ name: String, default value: Int) throws -> Int {
        guard let text = string(name) else { return value }
        guard let parsed = Int(text) else { throw CommandError("--\(name) expects a whole number, got '\(text)'", usage: true) }
        return parsed
    }
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
