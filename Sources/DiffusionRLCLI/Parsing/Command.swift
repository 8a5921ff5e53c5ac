import Foundation

/// What an option takes: nothing (a flag), free text, a whole number or a number (each with an
/// optional least value), or one of a few words. The parser checks the value against it, so a
/// command never sees a value its kind rejects.
enum OptionKind {
    case flag
    case text
    case integer(minimum: Int?)
    case number(minimum: Double?)
    case choice([String])
}

/// One `--name` of a command, declared once: the parser, the validation and the help all come from
/// this declaration.
struct Option {
    let name: String
    let kind: OptionKind
    /// The value's name in help (`DIR`, `N`), unused for flags.
    let placeholder: String
    /// The value taken when the option is absent (shown in help); nil: absent means absent.
    let defaultValue: String?
    let isRequired: Bool
    let help: String

    /// An option taking free text (a path, a prompt).
    static func text(_ name: String, _ placeholder: String, default value: String? = nil, required: Bool = false, _ help: String) -> Option {
        Option(name: name, kind: .text, placeholder: placeholder, defaultValue: value, isRequired: required, help: help)
    }

    /// An option taking a whole number of at least `minimum`.
    static func integer(_ name: String, _ placeholder: String = "N", default value: Int? = nil, minimum: Int? = nil, _ help: String) -> Option {
        Option(name: name, kind: .integer(minimum: minimum), placeholder: placeholder, defaultValue: value.map(String.init),
               isRequired: false, help: help)
    }

    /// An option taking a finite number of at least `minimum`.
    static func number(_ name: String, _ placeholder: String = "X", default value: Double? = nil, minimum: Double? = nil, _ help: String) -> Option {
        Option(name: name, kind: .number(minimum: minimum), placeholder: placeholder, defaultValue: value.map { $0.formatted() },
               isRequired: false, help: help)
    }

    /// An option taking one of `choices`.
    static func choice(_ name: String, _ choices: [String], default value: String? = nil, _ help: String) -> Option {
        Option(name: name, kind: .choice(choices), placeholder: choices.joined(separator: "|"), defaultValue: value, isRequired: false, help: help)
    }

    /// A flag: present or not, never with a value.
    static func flag(_ name: String, _ help: String) -> Option {
        Option(name: name, kind: .flag, placeholder: "", defaultValue: nil, isRequired: false, help: help)
    }

    /// `--threads N`, which most commands take.
    static let threads = integer("threads", default: 2, minimum: 1, "threads for OpenBLAS and the engine")
    /// A trainer's run folder: `--out DIR` (required), `--force`, `--resume` (exclusive).
    static let runFolder: [Option] = [
        text("out", "DIR", required: true, "the run folder"),
        flag("force", "replace an existing run in DIR"),
        flag("resume", "continue a stopped run in DIR from its newest checkpoint (same config)"),
    ]
    /// `--threads N` over a config's `threads`.
    static let threadsOverride = integer("threads", minimum: 1, "override the config's threads")
    /// `--json`: one JSON object on stdout instead of the text.
    static let json = flag("json", "print one JSON object instead of text")

    var isFlag: Bool { if case .flag = kind { return true } else { return false } }

    /// `--name VALUE` or `--name`, as usage and help show it.
    var synopsis: String { isFlag ? "--\(name)" : "--\(name) \(placeholder)" }
}

/// Positional arguments a command takes (most take none).
struct Positionals {
    /// Their name in help (`RUN.h5`).
    let name: String
    let minimum: Int
    let maximum: Int?
    let help: String
}

/// A command or a group of subcommands, declared once: its options, positionals, help text and
/// what it runs. Parsing, validation and `--help` all come from this declaration.
struct Command {
    let name: String
    /// One line, for the parent's list.
    let summary: String
    /// Paragraphs shown by `--help` after the usage line and before the options.
    let description: String
    let options: [Option]
    let positionals: Positionals?
    /// Groups of options of which at most one may be given.
    let exclusive: [[String]]
    /// Extra usage lines, for commands whose options combine in more than one way.
    let usages: [String]
    let subcommands: [Command]
    let action: ((ParsedArguments) throws -> Void)?

    /// A command that runs.
    init(_ name: String, summary: String, description: String = "", options: [Option] = [], positionals: Positionals? = nil,
         exclusive: [[String]] = [], usages: [String] = [], run: @escaping (ParsedArguments) throws -> Void) {
        self.name = name
        self.summary = summary
        self.description = description
        self.options = options
        self.positionals = positionals
        self.exclusive = exclusive
        self.usages = usages
        self.subcommands = []
        self.action = run
        for group in exclusive { for option in group { precondition(self.option(option) != nil, "\(name): exclusive --\(option) is not declared") } }
        precondition(Set(options.map(\.name)).count == options.count, "\(name): an option is declared twice")
    }

    /// A group whose first argument names one of `subcommands`.
    init(_ name: String, summary: String, description: String = "", subcommands: [Command]) {
        self.name = name
        self.summary = summary
        self.description = description
        self.options = []
        self.positionals = nil
        self.exclusive = []
        self.usages = []
        self.subcommands = subcommands
        self.action = nil
    }

    /// `text` broken at spaces into lines of at most `width` characters.
    private func wrapped(_ text: String, width: Int) -> [String] {
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > width { lines.append(line); line = "" }
            line += (line.isEmpty ? "" : " ") + word
        }
        return lines + [line]
    }

    func option(_ name: String) -> Option? { options.first { $0.name == name } }

    func subcommand(_ name: String) -> Command? { subcommands.first { $0.name == name } }

    /// The help text: usage, description, then the options or subcommands, each with its help.
    func help(path: String) -> String {
        var lines: [String] = []
        if !subcommands.isEmpty {
            lines.append("usage: \(path) <\(subcommands.map(\.name).joined(separator: "|"))> [options]")
        } else {
            var usage = "usage: \(path)"
            if let positionals {
                usage += positionals.minimum == 0 ? " [\(positionals.name)]" : " \(positionals.name)"
                if positionals.maximum != 1 { usage += " ..." }
            }
            for option in options where option.isRequired { usage += " \(option.synopsis)" }
            if options.contains(where: { !$0.isRequired }) { usage += " [options]" }
            lines.append(usage)
            lines += usages.map { "       \(path) \($0)" }
        }
        lines.append("")
        lines += wrapped(summary.prefix(1).uppercased() + summary.dropFirst() + ".", width: 96)
        if !description.isEmpty { lines += ["", description] }
        if !subcommands.isEmpty {
            lines += ["", "subcommands:"]
            let width = subcommands.map(\.name.count).max()! + 2
            for sub in subcommands { lines.append("  " + sub.name.padding(toLength: width, withPad: " ", startingAt: 0) + sub.summary) }
            lines += ["", "Each subcommand takes --help."]
        } else {
            var rows: [(String, String)] = []
            if let positionals { rows.append((positionals.name, positionals.help)) }
            for option in options {
                var text = option.help
                if option.isRequired { text += " (required)" }
                if let value = option.defaultValue { text += " (default \(value))" }
                rows.append((option.synopsis, text))
            }
            rows.append(("-h, --help", "print this help and exit"))
            lines += ["", "options:"]
            let width = min(rows.map(\.0.count).max()! + 2, 30)
            let indent = String(repeating: " ", count: width + 2)
            for (left, right) in rows {
                var text = wrapped(right, width: max(40, 100 - width - 2))
                if left.count + 2 > width {
                    lines.append("  " + left)
                } else {
                    lines.append("  " + left.padding(toLength: width, withPad: " ", startingAt: 0) + text.removeFirst())
                }
                lines += text.map { indent + $0 }
            }
        }
        return lines.joined(separator: "\n")
    }
}
