@testable import DiffusionRLCLI
import Foundation
import XCTest

/// The declared command line: every rule of the parser, in process (no command runs), and every
/// `diffusion-rl` line quoted in the documentation parsed against the declarations.
final class CommandLineParsingTests: XCTestCase {
    private let root = DiffusionRLCommand.root

    private func parse(_ line: String) throws -> Invocation {
        try ParsedArguments.parse(line.split(separator: " ").map(String.init), root: root, path: "diffusion-rl")
    }

    private func arguments(_ line: String) throws -> ParsedArguments {
        guard case .run(_, let parsed) = try parse(line) else { throw CommandError("'\(line)' asked for help") }
        return parsed
    }

    /// The error message parsing `line` throws, or a failure if it parses.
    private func error(_ line: String, file: StaticString = #filePath, lineNumber: UInt = #line) -> String {
        do {
            _ = try parse(line)
            XCTFail("'\(line)' parsed", file: file, line: lineNumber)
            return ""
        } catch let error as CommandError {
            XCTAssertTrue(error.isUsage, "\(line): \(error)", file: file, line: lineNumber)
            return error.description
        } catch {
            XCTFail("\(line): \(error)", file: file, line: lineNumber)
            return ""
        }
    }

    func testValuesDefaultsAndKinds() throws {
        let args = try arguments("eval --model M --n-prompts 128 --guidance=1.5 --json")
        XCTAssertEqual(args.string("model"), "M")
        XCTAssertEqual(args.int("n-prompts"), 128)
        XCTAssertEqual(args.double("guidance"), 1.5)
        XCTAssertEqual(args.double("eta"), 1, "the declared default")
        XCTAssertEqual(args.int("images-per-prompt"), 4)
        XCTAssertTrue(args.flag("json"))
        XCTAssertTrue(args.given("guidance"))
        XCTAssertFalse(args.given("eta"))
        XCTAssertNil(args.string("compare"))
        // A negative number is a value, not an option.
        XCTAssertEqual(try arguments("world judge-eval --noise 0").double("noise"), 0)
        XCTAssertTrue(error("world judge-eval --noise -1").contains("--noise expects a number ≥ 0, got '-1'"))
    }

    func testEveryRuleOfTheParser() {
        // Unknown options and stray positionals are errors, never ignored.
        XCTAssertTrue(error("eval --model M --fast").contains("unknown option --fast"))
        XCTAssertTrue(error("eval --model M -x").contains("unknown option -x"))
        XCTAssertTrue(error("finetune Experiments/ddpo-alignment.json --out X").contains("unexpected argument 'Experiments/ddpo-alignment.json'"))
        // A missing value is an error; the next option is not taken as the value.
        XCTAssertTrue(error("finetune --out --force").contains("--out needs a value"))
        XCTAssertTrue(error("demo --epochs").contains("--epochs needs a value"))
        // Flags take no value.
        XCTAssertTrue(error("eval --model M --json=false").contains("--json is a flag and takes no value"))
        // Numbers are parsed in one place, the option named in the error.
        XCTAssertTrue(error("eval --model M --n-prompts 1.5").contains("--n-prompts expects a whole number, got '1.5'"))
        XCTAssertTrue(error("eval --model M --guidance high").contains("--guidance expects a number, got 'high'"))
        XCTAssertTrue(error("inspect --interval 0 run.h5").contains("--interval expects a number ≥ 0.05"))
        XCTAssertTrue(error("demo --threads 0").contains("--threads expects a whole number ≥ 1"))
        XCTAssertTrue(error("convert --model a --out b --dtype f8").contains("--dtype must be one of f16, f32"))
        // Required options, positionals, repetition and exclusion.
        XCTAssertTrue(error("eval").contains("eval needs --model DIR"))
        XCTAssertTrue(error("inspect").contains("inspect needs RUN.h5"))
        XCTAssertTrue(error("inspect a.h5 b.h5").contains("takes at most 1"))
        XCTAssertTrue(error("eval --model a --model b").contains("--model is given twice"))
        XCTAssertTrue(error("finetune --out X --force --resume").contains("--force and --resume exclude each other"))
        // Commands and subcommands.
        XCTAssertTrue(error("frobnicate").contains("unknown command 'frobnicate'"))
        XCTAssertTrue(error("reward").contains("reward needs a subcommand"))
        XCTAssertTrue(error("bench gpu").contains("unknown bench subcommand 'gpu'"))
    }

    /// `-h` or `--help` anywhere — even after a bad option or a missing value — is help, never work.
    func testHelpAnywhereIsHelp() throws {
        for line in ["demo -h", "demo --epochs --help", "finetune --out X --frobnicate --help", "reward --help", "reward train -h",
                     "eval --json=false --help", "bench -h", "--help"] {
            guard case .help(let text) = try parse(line) else { XCTFail("\(line) did not ask for help"); continue }
            XCTAssertTrue(text.hasPrefix("usage: diffusion-rl"), "\(line): \(text)")
        }
        guard case .help(let text) = try parse("reward train --help") else { return XCTFail() }
        XCTAssertTrue(text.hasPrefix("usage: diffusion-rl reward train --out DIR [options]"), text)
        XCTAssertTrue(text.contains("--no-skip-ca"), text)
    }

    /// Every command's help lists each of its options with its text, so help cannot drift from the options.
    func testHelpListsEveryDeclaredOption() throws {
        func visit(_ command: Command, path: String) {
            let help = command.help(path: path)
            // Help wraps long lines: compare with whitespace runs made single spaces.
            func flat(_ text: String) -> String { text.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ") }
            for option in command.options {
                XCTAssertTrue(help.contains(option.synopsis), "\(path) help lacks \(option.synopsis)")
                XCTAssertTrue(flat(help).contains(flat(option.help)), "\(path) help lacks the text of --\(option.name)")
            }
            for sub in command.subcommands {
                XCTAssertTrue(help.contains(sub.name), "\(path) help lacks \(sub.name)")
                visit(sub, path: path + " " + sub.name)
            }
        }
        visit(root, path: "diffusion-rl")
    }

    /// Every `diffusion-rl` command line in a fenced code block of README.md, docs/ and
    /// Experiments/README.md parses against the declared commands, so the docs cannot drift from
    /// the CLI. `[--json]` is read as the option; `# comments`, pipes and redirections are cut.
    func testEveryDocumentedCommandLineParses() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var files = [repository.appendingPathComponent("README.md"), repository.appendingPathComponent("Experiments/README.md")]
        files += try FileManager.default.contentsOfDirectory(at: repository.appendingPathComponent("docs"), includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "md" }
        var checked = 0
        for file in files {
            var inBlock = false, pending = ""
            for rawLine in try String(contentsOf: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false) {
                let line = rawLine.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("```") { inBlock.toggle(); continue }
                guard inBlock else { continue }
                if !pending.isEmpty || line.hasPrefix("diffusion-rl ") {
                    pending += " " + line
                    if pending.hasSuffix("\\") { pending.removeLast(); continue }
                    let tokens = CommandLineParsingTests.words(of: pending)
                    pending = ""
                    guard tokens.count > 1, !tokens[1].hasSuffix(":") else { continue }  // sample output, not a command
                    do {
                        _ = try ParsedArguments.parse(Array(tokens.dropFirst()), root: root, path: "diffusion-rl")
                    } catch {
                        XCTFail("\(file.lastPathComponent): '\(tokens.joined(separator: " "))': \(error)")
                    }
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 30, "the documentation's command lines were not found")
    }

    /// A documented command line's words: quotes respected, brackets of optional parts dropped,
    /// cut at a comment, pipe or redirection.
    static func words(of line: String) -> [String] {
        var words: [String] = [], word = "", quote: Character?, started = false
        for character in line {
            if let q = quote {
                if character == q { quote = nil } else { word.append(character) }
                continue
            }
            if character == "\"" || character == "'" { quote = character; started = true; continue }
            if character == " " {
                if started { words.append(word) }
                word = ""
                started = false
                continue
            }
            if !started && ["#", "|", ">", "&", ";"].contains(character) { break }
            if character == "[" || character == "]" { continue }
            word.append(character)
            started = true
        }
        if started && quote == nil { words.append(word) }
        return words.filter { $0 != "..." && $0 != "…" }
    }
}
