import Engine
import World
import RunLog
import Foundation

/// The `diffusion-rl` command tree, and the one place that turns every error into one line on
/// stderr and an exit status: 2 for usage, 130 for a run stopped by SIGINT or SIGTERM, 1 otherwise.
enum DiffusionRLCommand {
    /// The tool's version, printed by `--version`.
    static let version = "0.9.0"

    static let root = Command("diffusion-rl", summary: "reward fine-tuning of a compact latent text-to-image diffusion model, on the CPU",
                              description: "Every command takes --help; --version prints the version.",
                              subcommands: [
        DemoCommand.command, PretrainCommand.command, SampleCommand.command, FinetuneCommand.command, EvalCommand.command,
        EvalCommand.vaeCommand, ConvertCommand.command, InspectCommand.command, ReportCommand.command, RewardCommand.command,
        WorldCommand.command, StudyCommand.command, BenchCommand.command, DebugCommand.command,
    ])

    static func main(_ arguments: [String]) {
        if arguments == ["--version"] {
            print("diffusion-rl \(version)")
            exit(0)
        }
        if arguments.isEmpty {
            FileHandle.standardError.write(Data((root.help(path: "diffusion-rl") + "\n").utf8))
            exit(2)
        }
        do {
            switch try ParsedArguments.parse(arguments, root: root, path: "diffusion-rl") {
            case .help(let text): print(text)
            case .run(let command, let parsed): try command.action!(parsed)
            }
            exit(0)
        } catch let error as CommandError {
            fail(error.description, status: error.isUsage ? 2 : 1)
        } catch let error as RunInterrupted {
            fail(error.description, status: 130)
        } catch {
            fail(fileErrorText(error) ?? String(describing: error), status: 1)
        }
    }

    /// A Foundation file error (a folder that cannot be created, a file that cannot be written)
    /// as "PATH: the system's reason", instead of Foundation's dump of its error; nil for others.
    static func fileErrorText(_ error: Error) -> String? {
        let top = error as NSError
        guard top.domain == NSCocoaErrorDomain else { return nil }
        let path = top.userInfo[NSFilePathErrorKey] as? String ?? (top.userInfo[NSURLErrorKey] as? URL)?.path
        var reason = top.localizedDescription, current: NSError? = top
        while let e = current {
            if e.domain == NSPOSIXErrorDomain { reason = String(cString: strerror(Int32(e.code))); break }
            current = (e.userInfo[NSUnderlyingErrorKey] as? NSError) ?? (e.userInfo[NSUnderlyingErrorKey] as? Error).map { $0 as NSError }
        }
        return path.map { "\($0): \(reason)" } ?? reason
    }

    /// Prints the error and ends the process without running exit handlers: after a failed write
    /// (a full disk), libhdf5's own exit handler crashes closing the file it could not flush, and
    /// every log and checkpoint was already flushed or written atomically before the error.
    private static func fail(_ message: String, status: Int32) -> Never {
        fflush(stdout)
        FileHandle.standardError.write(Data("diffusion-rl: \(message)\n".utf8))
        _exit(status)
    }
}
