import Foundation

/// A command-line error: printed as one line, exit status 2 for usage and 1 otherwise.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    let isUsage: Bool
    init(_ description: String, usage: Bool = false) { self.description = description; isUsage = usage }
}

/// Parsed `--name value` options, `--flag`s and positional arguments of one subcommand. Every
/// option must be read by the command; anything left over is an "unknown option" error.
struct Arguments {
    private var options: [String: String] = [:]
    private var flags: Set<String> = []
    private(set) var positional: [String] = []
    private var consumed: Set<String> = []

    /// `flagNames` are the options that take no value.
    init(_ arguments: [String], flagNames: Set<String>) throws {
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

    mutating func flag(_ name: String) -> Bool { consumed.insert(name); return flags.contains(name) }

    mutating func string(_ name: String) -> String? { consumed.insert(name); return options[name] }

    mutating func int(_ name: String, default value: Int) throws -> Int {
        guard let text = string(name) else { return value }
        guard let parsed = Int(text) else { throw CommandError("--\(name) expects a whole number, got '\(text)'", usage: true) }
        return parsed
    }

    /// Throws for any option the command did not read.
    func finish() throws {
        if let unknown = (Set(options.keys).union(flags)).subtracting(consumed).sorted().first {
            throw CommandError("unknown option --\(unknown) (see --help)", usage: true)
        }
    }
}
