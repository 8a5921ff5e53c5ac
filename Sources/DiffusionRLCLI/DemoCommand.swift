import Engine
import Foundation
import RL
import RunLog

/// `diffusion-rl demo`: the main job on the embedded world — DDPO on the gold alignment reward
/// from the shipped base model, with a log, a report, and the held-out alignment before and after.
enum DemoCommand {
    static let help = """
    usage: diffusion-rl demo [--model Models/base] [--out Logs/demo] [--epochs N] [--threads N]

    Fine-tunes the shipped base model with DDPO (PPO clip, LoRA on attention) on the world's gold
    alignment reward for the demo's epochs (about ten minutes on 2 cores), writes OUT/run.h5,
    OUT/report.html and OUT/model, and prints the gold alignment on held-out compositions before
    and after, with standard errors. An earlier OUT is kept under OUT-<time>, never overwritten.
    """

    static func run(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["model", "out", "epochs", "threads"], flagNames: ["help"])
        if args.flag("help") { print(help); return }
        var config = FineTuningConfig.demo
        config.model = args.string("model") ?? config.model
        config.threads = try args.int("threads", default: config.threads)
        config.epochs = try args.int("epochs", default: config.epochs)
        let output = URL(fileURLWithPath: args.string("out") ?? "Logs/demo")
        if FileManager.default.fileExists(atPath: output.path) {
            let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
            let kept = output.deletingLastPathComponent().appendingPathComponent(output.lastPathComponent + "-" + stamp)
            try FileManager.default.moveItem(at: output, to: kept)
            print("demo: kept the earlier run as \(kept.path)")
        }
        let start = Date()
        try FinetuneCommand.run(config: config, output: output, force: false, resume: false)
        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        let report = output.appendingPathComponent("report.html")
        try RunReport.html([RunReport.Run(name: output.lastPathComponent, reader: reader)]).write(to: report, atomically: true, encoding: .utf8)
        let before = try reader.metric("base_eval_alignment")[0], beforeError = try reader.metric("base_eval_alignment_se")[0]
        let after = try reader.metric("eval_alignment").last ?? .nan, afterError = try reader.metric("eval_alignment_se").last ?? .nan
        let split = config.evaluation.split, n = config.evaluation.prompts, k = config.evaluation.imagesPerPrompt
        print(String(format: "demo: gold alignment on %d %@ prompts × %d images: before %.3f ± %.3f, after %.3f ± %.3f (change %+.3f ± %.3f)",
                     n, split, k, before, beforeError, after, afterError, after - before,
                     (beforeError * beforeError + afterError * afterError).squareRoot()))
        print(String(format: "demo: wrote %@ and %@ in %.1f minutes", reader.url.path, report.path, Date().timeIntervalSince(start) / 60))
    }
}
