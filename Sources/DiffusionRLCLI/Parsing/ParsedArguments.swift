import Foundation

/// What a command line asks for: a help text to print, or a command to run with its arguments.
enum Invocation {
    case help(String)
    case run(Command, ParsedArguments)
}

/// A command's arguments after parsing: every value already checked against its option's kind,
/// defaults filled in, required options present, positionals counted.
struct ParsedArguments {
    let command: Command
    /// `diffusion-rl reward train`, for messages.
    let path: String
    let positional: [String]
    private let values: [String: String]
    private let flags: Set<String>

    /// Parses `arguments` against the command tree under `root`: subcommand names first, then the
    /// leaf's options. `-h`/`--help` anywhere returns the help of the deepest command named so far,
    /// before anything else is checked, so asking for help never starts work.
    static func parse(_ arguments: [String], root: Command, path rootPath: String) throws -> Invocation {
        var command = root, path = rootPath, rest = arguments[...]
        while !command.subcommands.isEmpty {
            let names = command.subcommands.map(\.name).joined(separator: ", ")
            guard let first = rest.first else { throw CommandError("\(path.dropFirst(rootPath.count + 1)) needs a subcommand: \(names) (see \(path) --help)", usage: true) }
            if first == "-h" || first == "--help" { return .help(command.help(path: path)) }
            guard let sub = command.subcommand(first) else {
                throw CommandError("unknown \(path == rootPath ? "command" : "\(path.dropFirst(rootPath.count + 1)) subcommand") '\(first)' (one of \(names); see \(path) --help)", usage: true)
            }
            command = sub
            path += " " + first
            rest = rest.dropFirst()
        }
        if rest.contains("-h") || rest.contains("--help") { return .help(command.help(path: path)) }
        return .run(command, try ParsedArguments(Array(rest), command: command, path: path, name: String(path.dropFirst(rootPath.count + 1))))
    }

    private init(_ arguments: [String], command: Command, path: String, name: String) throws {
        func usage(_ message: String) -> CommandError { CommandError("\(message) (see \(path) --help)", usage: true) }
        var values: [String: String] = [:], flags: Set<String> = [], positional: [String] = []
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            i += 1
            guard argument.hasPrefix("-"), argument != "-", Double(argument) == nil else {
                positional.append(argument)
                continue
            }
            guard argument.hasPrefix("--") else { throw usage("unknown option \(argument)") }
            var name = String(argument.dropFirst(2)), inline: String?
            if let equals = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let option = command.option(name) else { throw usage("unknown option --\(name)") }
            guard values[name] == nil, !flags.contains(name) else { throw usage("--\(name) is given twice") }
            if option.isFlag {
                guard inline == nil else { throw usage("--\(name) is a flag and takes no value") }
                flags.insert(name)
                continue
            }
            var value = inline
            if value == nil, i < arguments.count, !arguments[i].hasPrefix("--") {
                value = arguments[i]
                i += 1
            }
            guard let value else { throw usage("--\(name) needs a value (\(option.placeholder))") }
            if let problem = ParsedArguments.problem(with: value, for: option) { throw usage("--\(name) \(problem), got '\(value)'") }
            values[name] = value
        }
        for option in command.options where option.isRequired && values[option.name] == nil {
            throw CommandError("\(name) needs --\(option.name) \(option.placeholder) (see \(path) --help)", usage: true)
        }
        for group in command.exclusive where group.filter({ values[$0] != nil || flags.contains($0) }).count > 1 {
            throw usage(group.map { "--\($0)" }.joined(separator: " and ") + " exclude each other")
        }
        if let positionals = command.positionals {
            if positional.count < positionals.minimum { throw CommandError("\(name) needs \(positionals.name) (see \(path) --help)", usage: true) }
            if let maximum = positionals.maximum, positional.count > maximum {
                throw usage("takes at most \(maximum) \(positionals.name), got \(positional.count): \(positional.joined(separator: " "))")
            }
        } else if let stray = positional.first {
            throw usage("unexpected argument '\(stray)' (this command takes options only)")
        }
        self.command = command
        self.path = path
        self.values = values
        self.flags = flags
        self.positional = positional
    }

    /// Why `value` is not a value of `option`'s kind, or nil when it is. Every number on the
    /// command line is parsed here.
    static func problem(with value: String, for option: Option) -> String? {
        switch option.kind {
        case .flag, .text:
            return nil
        case .integer(let minimum):
            guard let n = Int(value) else { return "expects a whole number" }
            if let minimum, n < minimum { return "expects a whole number ≥ \(minimum)" }
            return nil
        case .number(let minimum):
            guard let x = Double(value), x.isFinite else { return "expects a number" }
            if let minimum, x < minimum { return "expects a number ≥ \(minimum.formatted())" }
            return nil
        case .choice(let choices):
            return choices.contains(value) ? nil : "must be one of \(choices.joined(separator: ", "))"
        }
    }

    private func declared(_ name: String) -> Option {
        guard let option = command.option(name) else { preconditionFailure("\(path) reads --\(name), which it does not declare") }
        return option
    }

    /// Whether the option was given on the command line (not just defaulted).
    func given(_ name: String) -> Bool { declared(name).isFlag ? flags.contains(name) : values[name] != nil }

    /// Whether a flag is present.
    func flag(_ name: String) -> Bool {
        precondition(declared(name).isFlag, "--\(name) is not a flag")
        return flags.contains(name)
    }

    /// The option's value, or its default; nil when it has neither.
    func string(_ name: String) -> String? { values[name] ?? declared(name).defaultValue }

    /// A whole-number option's value or default (checked when parsed).
    func int(_ name: String) -> Int? {
        guard case .integer = declared(name).kind else { preconditionFailure("--\(name) is not a whole-number option") }
        return string(name).map { Int($0)! }
    }

    /// A number option's value or default (checked when parsed).
    func double(_ name: String) -> Double? {
        guard case .number = declared(name).kind else { preconditionFailure("--\(name) is not a number option") }
        return string(name).map { Double($0)! }
    }
}

extension Double {
    /// The shortest text that reads back as this number (1e-05 stays short; 2.0 prints as 2).
    func formatted() -> String { self == rounded() && abs(self) < 1e15 ? String(Int(self)) : "\(self)" }
}
