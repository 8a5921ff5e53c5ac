import Engine
import Foundation
import RL
import RunLog

/// `diffusion-rl inspect RUN.h5`: what a run did, from its log.
enum InspectCommand {
    static let command = Command("inspect", summary: "summarize a run log (HDF5); --follow watches a live run", description: """
        Prints a run's identity (command line, git commit, seed, start time), the start of its
        config, every metric with its first, last and best value and the epoch of the best, and its
        events. Opens the file in SWMR-read mode, so a live run or one whose writer crashed can be
        read. Given a folder (e.g. Logs/), lists the runs under it. --replay-guard CONFIG.json
        instead prints what the overoptimization guard of that fine-tuning config would have
        decided on the run: its decisions depend only on the signals the run logged (the KL, and
        the watched perspectives where the run logged them as guard_proxy and guard_textnorm).
        """, options: [
            .text("replay-guard", "CONFIG.json", "a fine-tuning config whose guard to replay on the run's logged signals"),
            .json,
            .flag("series", "with --json: every metric's value at every epoch (null where not finite), for scripts"),
            .flag("follow", "keep watching a live run, printing each new epoch's metrics (Ctrl-C to stop)"),
            .number("interval", "SECONDS", default: 2, minimum: 0.05, "seconds between looks with --follow"),
        ], positionals: Positionals(name: "RUN.h5|FOLDER", minimum: 1, maximum: 1, help: "a run log, or a folder of runs"), run: run)

    /// Per-metric summary; the best value in the direction the run declared (none where it declared none).
    struct MetricSummary: Codable {
        var name: String
        var epochs: Int
        var first: Double?
        var last: Double?
        var best: Double?
        var bestEpoch: Int?
        /// Every epoch's value (`--series`).
        var values: [Double]?
    }

    struct Summary: Codable {
        var file: String
        var epochs: Int
        var attributes: [String: String]
        var metrics: [MetricSummary]
        var events: [RunEvent]
        var checkpoints: [RunCheckpoint]
        var prompts: Int
        var images: Int
    }

    static func run(_ args: ParsedArguments) throws {
        let path = args.positional[0], interval = args.double("interval")!
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            let runs = try RunLogReader.runs(in: URL(fileURLWithPath: path)).map { url -> [String: String] in
                let reader = try RunLogReader(url: url)
                return ["file": url.path, "epochs": String(try reader.epochs()), "start_time": reader.attributes["start_time"] ?? "",
                        "command_line": reader.attributes["command_line"] ?? ""]
            }
            if args.flag("json") {
                try printJSON(["runs": runs])
            } else {
                print("\(runs.count) run\(runs.count == 1 ? "" : "s") under \(path)")
                for run in runs { print("  \(run["file"]!)  \(run["epochs"]!) epochs  started \(run["start_time"]!)") }
            }
            return
        }
        let reader = try RunLogReader(url: URL(fileURLWithPath: path))
        if let config = args.string("replay-guard") {
            try replayGuard(reader, config: config, json: args.flag("json"))
            return
        }
        let summary = try summarize(reader, series: args.flag("series"))
        if args.flag("json") {
            try printJSON(summary)
        } else {
            printText(summary)
        }
        guard args.flag("follow") else { return }
        var seen = summary.epochs
        while true {
            Thread.sleep(forTimeInterval: interval)
            reader.refresh()
            let epochs = try reader.epochs()
            guard epochs > seen else { continue }
            let columns = try reader.metricNames.map { ($0, try reader.metric($0)) }
            for epoch in seen..<epochs {
                print("epoch \(epoch): " + columns.map { "\($0.0) \(format($0.1[safe: epoch]))" }.joined(separator: "  "))
            }
            seen = epochs
        }
    }

    /// The guard of the fine-tuning config at `path` replayed on the run's logged signals.
    static func replayGuard(_ reader: RunLogReader, config path: String, json: Bool) throws {
        let config = try ConfigLoader.load(FineTuningConfig.self, from: URL(fileURLWithPath: path), defaults: FineTuningConfig())
        guard config.guard.isActive else { throw CommandError("\(path) has no guard (guard.actions is empty)") }
        if let problem = OveroptimizationGuard.problem(with: config.guard, objectiveUsesBeta: true) { throw CommandError(problem) }
        let epochs = try reader.epochs(), names = Set(reader.metricNames)
        func series(_ name: String) throws -> [Double] {
            names.contains(name) ? try reader.metric(name) : [Double](repeating: .nan, count: epochs)
        }
        guard names.contains("kl_mean") || !config.guard.limitsKL else { throw CommandError("\(reader.url.path) logged no KL (kl_mean)") }
        let kl = try series("kl_mean"), proxy = try series("guard_proxy"), textNorm = try series("guard_textnorm")
        let replay = GuardReplay(settings: config.guard, beta: config.kl.beta, signals: (0..<epochs).map {
            GuardSignals(epoch: $0, kl: kl[$0], proxy: proxy[$0], textNorm: textNorm[$0])
        })
        if json {
            try printJSON(replay)
            return
        }
        print("the guard of \(path) on \(reader.url.path) (\(epochs) epochs logged):")
        for d in replay.decisions { print("  epoch \(d.epoch): \(d.message)") }
        print(replay.stoppedAt.map { "  stopped before epoch \($0)'s update" } ?? "  never stopped (the weights the run ended with were not logged as measured)")
        if let epoch = replay.restoreEpoch {
            print(String(format: "  restoreBest: the weights of the start of epoch %d (%@ %.4g)", epoch,
                         config.guard.restoreBy == "lastWithinBudget" ? "KL" : "TextNorm signal", replay.restoreValue ?? Double.nan))
        }
    }

    static func summarize(_ reader: RunLogReader, series: Bool = false) throws -> Summary {
        let metrics = try reader.metricSpecs.map { spec -> MetricSummary in
            let values = try reader.metric(spec.name)
            let finite = values.enumerated().filter { $0.element.isFinite }
            // "Best" only where the run declared which way is better.
            let best = spec.better == .neither ? nil : finite.min { spec.better == .lower ? $0.element < $1.element : $0.element > $1.element }
            return MetricSummary(name: spec.name, epochs: values.count, first: finite.first?.element, last: finite.last?.element,
                                 best: best?.element, bestEpoch: best?.offset, values: series ? values : nil)
        }
        return Summary(file: reader.url.path, epochs: try reader.epochs(), attributes: reader.attributes, metrics: metrics,
                       events: try reader.events(), checkpoints: try reader.checkpoints(), prompts: try reader.prompts().count,
                       images: try reader.images().count)
    }

    static func printText(_ s: Summary) {
        print("run \(s.file): \(s.epochs) epochs, \(s.prompts) prompts, \(s.images) images, \(s.checkpoints.count) checkpoints")
        for key in ["command_line", "git_commit", "seed", "start_time", "host", "versions"] {
            if let value = s.attributes[key] { print("  \(key): \(value)") }
        }
        if let config = s.attributes["config"] {
            print("  config: \(config.count > 300 ? String(config.prefix(300)) + "…" : config)")
        }
        print("metric                         epochs       first        last        best  (epoch)")
        for m in s.metrics {
            print(m.name.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: " %6d", m.epochs)
                  + " \(format(m.first).leftPadded(11)) \(format(m.last).leftPadded(11)) \(format(m.best).leftPadded(11))"
                  + (m.bestEpoch.map { "  (\($0))" } ?? ""))
        }
        if !s.events.isEmpty {
            print("events:")
            for e in s.events { print("  epoch \(e.epoch) [\(e.kind)] \(e.message)") }
        }
    }

    static func format(_ value: Double?) -> String {
        guard let value else { return "–" }
        return value.isNaN ? "nan" : String(format: "%.5g", value)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
