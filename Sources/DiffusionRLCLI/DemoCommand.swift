import Diffusion
import Engine
import Evaluation
import Foundation
import Images
import RL
import RunLog
import World

/// `diffusion-rl demo`: the main job on the embedded world — fine-tuning the shipped base model
/// on the reward model's safety head (`FineTuningConfig.demo`), then the base and the fine-tuned
/// model compared at guidance 1 on captions neither trained on, paired and clustered by prompt.
enum DemoCommand {
    static let command = Command("demo", summary: "the main job: fine-tuning the shipped base model on the reward model's safety head, then every gold perspective before and after on unseen captions",
                                 description: """
        Fine-tunes the shipped base model so that it stops drawing the hazard mark, with the reward
        model's safety head as the only signal: each epoch samples 32 training captions × 8 images
        at guidance 1 (where the base model draws the mark in about 5 % of its images), keeps those
        the head calls safe, and fits the whole UNet with its pretraining loss to them (5 % of each
        batch) and to pretraining scenes the head also passes (95 %); about 10 minutes on 2 cores.
        Then draws the same seeds from the base and the fine-tuned model on 128 report captions × 8
        images at guidance 1 (validation captions the run did not train on) and prints every gold
        perspective before and after (safety = 1 − the hazard rate), with the paired difference and
        its standard error clustered by prompt. Writes OUT/run.h5, OUT/model, OUT/report.html,
        OUT/prompts.txt (the trained captions), OUT/report-prompts.txt and OUT/before.png /
        OUT/after.png (the first image of the first 32 report captions, same seeds). An earlier OUT
        is kept under OUT-<time>, never overwritten. Progress goes to stderr, the results to stdout.
        With --workers N the fine-tuning splits every batch over N worker threads (give each
        --threads 1), and the comparison uses all N × threads.
        """, options: [
            .text("model", "DIR", default: FineTuningConfig.demo.model, "the base model"),
            .text("out", "DIR", default: "Logs/demo", "the run folder"),
            .integer("epochs", default: FineTuningConfig.demo.epochs, minimum: 1, "fine-tuning epochs"),
            .integer("threads", default: FineTuningConfig.demo.threads, minimum: 1, "threads for OpenBLAS and the engine (per worker)"),
            .workers,
        ], run: run)

    static let perspectives = ["alignment", "alignment_partial", "fidelity", "safety", "overall"]

    static func run(_ args: ParsedArguments) throws {
        var config = FineTuningConfig.demo
        config.model = args.string("model")!
        config.threads = args.int("threads")!
        config.epochs = args.int("epochs")!
        let output = URL(fileURLWithPath: args.string("out")!)
        if FileManager.default.fileExists(atPath: output.path) {
            let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
            let kept = output.deletingLastPathComponent().appendingPathComponent(output.lastPathComponent + "-" + stamp)
            try FileManager.default.moveItem(at: output, to: kept)
            progress("demo: kept the earlier run as \(kept.path)")
        }
        let start = Date()
        let workers = args.int("workers")!
        try FinetuneCommand.run(config: config, output: output, force: false, resume: false, workers: workers)
        // The comparison runs in this thread: every worker's cores.
        Threads.set(config.threads * workers)

        // The report set: validation captions the run did not train on, past the 128 kept for tuning.
        let trained = Set(try FineTuningTrainer.trainingPrompts(config))
        let prompts = GoldEvaluation.unseenPrompts(split: .validation, excluding: trained, skip: 128, count: 128)
        try (prompts.map(\.caption).joined(separator: "\n") + "\n")
            .write(to: output.appendingPathComponent("report-prompts.txt"), atomically: true, encoding: .utf8)
        // Guidance 1, as the run samples: where the base model draws the hazard mark.
        var settings = SamplingSettings()
        settings.seed = 0
        settings.guidance = config.sampling.guidance
        let imagesPerPrompt = 8
        var reports: [GoldEvaluation.Report] = [], grids: [(caption: String, image: RGBImage)] = []
        for (name, path) in [("before", config.model), ("after", output.appendingPathComponent("model").path)] {
            let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: path))
            var firsts: [RGBImage] = [], seen = 0
            reports.append(try GoldEvaluation.run(model: model, prompts: prompts, label: "report", imagesPerPrompt: imagesPerPrompt, settings: settings,
                                                  progress: { done, total in
                progress("  \(name): \(done)/\(total) report images judged")
            }, collect: { _, images in
                for image in images { if seen % imagesPerPrompt == 0 && firsts.count < 32 { firsts.append(image) }; seen += 1 }
            }))
            let grid = imageGrid(firsts, columns: 8)
            try PNG.write(grid, to: output.appendingPathComponent("\(name).png"))
            grids.append((caption: "\(name): the first image of the first 32 report captions (row by row), the same seeds before and after", image: grid))
        }
        let difference = try reports[0].difference(reports[1])
        var table = [["gold perspective", "before", "after", "change (paired)", "SEs"]]
        print("demo: gold judge on \(prompts.count) report captions × \(imagesPerPrompt) images at guidance \(settings.guidance.formatted()) "
              + "(validation captions not trained on), the same seeds before and after; errors clustered by prompt")
        for name in perspectives {
            guard let a = reports[0].scores[name], let b = reports[1].scores[name], let d = difference[name] else { continue }
            print(String(format: "demo: %@ before %.3f ± %.3f, after %.3f ± %.3f, change %+.3f ± %.3f (%+.1f SE)",
                         name.padding(toLength: 17, withPad: " ", startingAt: 0), a.mean, a.standardError, b.mean, b.standardError,
                         d.mean, d.standardError, d.standardError > 0 ? d.mean / d.standardError : 0))
            table.append([name, String(format: "%.3f ± %.3f", a.mean, a.standardError), String(format: "%.3f ± %.3f", b.mean, b.standardError),
                          String(format: "%+.3f ± %.3f", d.mean, d.standardError), String(format: "%+.1f", d.standardError > 0 ? d.mean / d.standardError : 0)])
        }
        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        let report = output.appendingPathComponent("report.html")
        let sections = [RunReport.Section(title: "Gold judge on \(prompts.count) report captions × \(imagesPerPrompt) images at guidance \(settings.guidance.formatted()), before and after (errors clustered by prompt)",
                                          table: table),
                        RunReport.Section(title: "Before and after, the same seeds", images: grids)]
        try RunReport.html([RunReport.Run(name: output.lastPathComponent, reader: reader)], sections: sections)
            .write(to: report, atomically: true, encoding: .utf8)
        print(String(format: "demo: wrote %@, %@ and before.png / after.png in %.1f minutes", reader.url.path, report.path,
                     Date().timeIntervalSince(start) / 60))
    }
}
