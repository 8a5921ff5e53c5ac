import Foundation
import RunLog

/// `diffusion-rl report RUN.h5 [RUN2.h5 ...] --out report.html`.
enum ReportCommand {
    static let help = """
    usage: diffusion-rl report RUN.h5 [RUN2.h5 ...] --out report.html [--force] [--image-epochs N]

    Writes one self-contained HTML page (no network, no scripts): a chart for every metric with
    all runs overlaid, reward against √KL when the runs log a KL, the KL by sampling step per run
    (a line for each of up to four measured epochs), gold against proxy for a learned reward,
    sample grids by epoch with their prompts (up to N epochs per run, default 8), and the events.
    Runs are named by their file.
    """

    static func run(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["out", "image-epochs"], flagNames: ["force", "help"])
        if args.flag("help") { print(help); return }
        guard !args.positional.isEmpty else { throw CommandError("report needs at least one run file (see --help)", usage: true) }
        guard let out = args.string("out") else { throw CommandError("report needs --out report.html", usage: true) }
        let url = URL(fileURLWithPath: out)
        if FileManager.default.fileExists(atPath: url.path) && !args.flag("force") {
            throw CommandError("\(url.path) exists; pass --force to overwrite")
        }
        let runs = try args.positional.map { path -> RunReport.Run in
            let reader = try RunLogReader(url: URL(fileURLWithPath: path))
            let file = URL(fileURLWithPath: path)
            let name = file.lastPathComponent == "run.h5" ? file.deletingLastPathComponent().lastPathComponent : file.deletingPathExtension().lastPathComponent
            return RunReport.Run(name: name, reader: reader)
        }
        let html = try RunReport.html(runs, maxImageEpochs: try args.int("image-epochs", default: 8))
        try html.write(to: url, atomically: true, encoding: .utf8)
        print("wrote \(url.path) (\(runs.count) run\(runs.count == 1 ? "" : "s"), \(html.utf8.count / 1024) KiB)")
    }
}
