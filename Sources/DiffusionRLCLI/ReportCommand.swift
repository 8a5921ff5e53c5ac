import Foundation
import RunLog

/// `diffusion-rl report RUN.h5 [RUN2.h5 ...] --out report.html`.
enum ReportCommand {
    static let command = Command("report", summary: "one self-contained HTML page of charts, samples and events for runs", description: """
        Writes one self-contained HTML page (no network, no scripts): a chart for every metric with
        all runs overlaid, reward against √KL when the runs log a KL, the KL by sampling step per run
        (a line for each of up to four measured epochs), gold against proxy for a learned reward,
        sample grids by epoch with their prompts, and the events. Runs are named by their file.
        """, options: [
            .text("out", "report.html", required: true, "the page to write"),
            .flag("force", "overwrite an existing page"),
            .integer("image-epochs", default: 8, minimum: 0, "sample grids of up to N epochs per run"),
        ], positionals: Positionals(name: "RUN.h5", minimum: 1, maximum: nil, help: "run logs (a run folder's run.h5)"), run: run)

    static func run(_ args: ParsedArguments) throws {
        let url = URL(fileURLWithPath: args.string("out")!)
        if FileManager.default.fileExists(atPath: url.path) && !args.flag("force") {
            throw CommandError("\(url.path) exists; pass --force to overwrite")
        }
        let runs = try args.positional.map { path -> RunReport.Run in
            let reader = try RunLogReader(url: URL(fileURLWithPath: path))
            let file = URL(fileURLWithPath: path)
            let name = file.lastPathComponent == "run.h5" ? file.deletingLastPathComponent().lastPathComponent : file.deletingPathExtension().lastPathComponent
            return RunReport.Run(name: name, reader: reader)
        }
        let html = try RunReport.html(runs, maxImageEpochs: args.int("image-epochs")!)
        try html.write(to: url, atomically: true, encoding: .utf8)
        print("wrote \(url.path) (\(runs.count) run\(runs.count == 1 ? "" : "s"), \(html.utf8.count / 1024) KiB)")
    }
}
