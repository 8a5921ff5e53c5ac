import Diffusion
import Distributed
import Engine
import Evaluation
import Foundation
import RL
import Rewards
import RunLog
import Statistics
import Studies
import World

/// `diffusion-rl study overoptimization|perspectives`: best-of-N studies, each one run folder
/// (`run.h5`, `study.json`, `study.html`), resumable by candidate.
enum StudyCommand {
    static let common: [Option] = [
        .text("model", "DIR", default: "Models/base", "the diffusion model"),
        .text("prompts", "validation|heldout|FILE", default: "validation", "a split's fixed prompts, or a prompt file"),
        .text("out", "DIR", required: true, "the study folder (run.h5, study.json, study.html)"),
        .flag("force", "replace an existing study in DIR"),
        .flag("resume", "continue a stopped study in DIR (same settings): finished candidates are not drawn again"),
    ]

    static let command = Command("study", summary: "best-of-N studies: reward overoptimization, the perspective ablation", subcommands: [
        Command("overoptimization", summary: "gold and proxy gains of best-of-N by reward models against √KL, with Gao et al.'s fit",
                description: """
            Draws N candidates per image slot (prompt × repeat) from the model, scores each with the
            gold judge and with every reward model's --perspective, and for N = 1 … --max-n keeps the
            candidate each reward model ranks first, and the one gold alignment ranks first (the
            ceiling; its ties broken at random). Gains over plain sampling (candidate 0) are paired and
            clustered by prompt, against d = √KL with KL ≤ log N − (N − 1)/N (Beirami et al. 2024: exact
            for a selecting score without ties, an upper bound with them — so for the gold ceiling).
            Gao et al.'s best-of-N form, gain = d(α − βd), is fitted to each selector's gold gains.
            Writes DIR/run.h5 (every candidate's scores, and the gains per N as metrics), DIR/study.json
            and DIR/study.html; --resume continues a stopped study.
            """, options: [
                .text("reward-model", "DIR[,DIR...]", default: "Models/reward", "reward models to select by (e.g. trained on 1×, 2×, 4× the data)"),
                .text("perspective", "NAME", default: "alignment", "the reward models' head to select by (alignment, or textnorm_alignment, …)"),
                .integer("n-prompts", default: 64, minimum: 1, "prompts (distinct captions)"),
                .integer("images-per-prompt", default: 2, minimum: 1, "image slots per prompt"),
                .integer("max-n", default: 64, minimum: 2, "candidates per image slot: the largest N"),
                .text("runs", "DIR[,DIR...]", "fine-tuning run folders placed beside best-of-N: each final model drawn on the study's plain "
                      + "seeds, its gains paired with the base's, at √ of its log's last kl_mean (a per-step path KL: an upper bound on "
                      + "the images' KL, so not on the best-of-N axis)"),
            ] + common + SamplingOptions.options + [.threads, .json], exclusive: [["force", "resume"]], run: overoptimization),
        Command("perspectives", summary: "best-of-N by each reward head alone, all together and each left out, scored by every gold perspective",
                description: """
            Draws --best-of candidates per image slot, scores each with the gold judge and every head
            of the reward model, and keeps the candidate ranked first by each head alone, by all heads
            together (each standardized by the plain samples' spread, equal weights) and by all but one.
            The table gives each selector's paired, prompt-clustered gain over plain sampling in gold
            alignment, partial alignment, fidelity, the hazard rate and overall: the cross-effects of
            selecting for one perspective. Writes DIR/run.h5, DIR/study.json and DIR/study.html;
            --resume continues a stopped study.

            With --finetune CONFIG the same selectors also steer fine-tuning: for each, the config's
            fine-tuning (e.g. Experiments/self-training/perspectives.json, self-training that keeps the
            samples the selector ranks first) runs against the reward model with the selector's heads as
            its rewards (standardized over each epoch's samples, equal weights) into DIR/finetune/NAME,
            and the fine-tuned model is drawn on the study's plain seeds: its paired gains over the base
            in every gold perspective are a second table. Each selector's run resumes where it stopped.
            """, options: [
                .text("reward-model", "DIR", default: "Models/reward", "the reward model whose heads select"),
                .integer("n-prompts", default: 128, minimum: 1, "prompts (distinct captions)"),
                .integer("images-per-prompt", default: 4, minimum: 1, "image slots per prompt"),
                .integer("best-of", default: 8, minimum: 2, "candidates per image slot"),
                .text("finetune", "CONFIG.json", "also fine-tune with each selector's heads as the reward (a fine-tuning config), and score the models"),
            ] + common + SamplingOptions.options + [.threads, .json], exclusive: [["force", "resume"]], run: perspectives),
    ])

    /// One selector's results: its gains per N in every reported column, and for the gold columns the fit.
    struct SelectorResult: Encodable {
        var name: String
        var weights: [String: Double]
        var gains: [String: [Estimate]]
        var fit: OveroptimizationFit?
        var peakN: Int
    }

    /// What `study.json` and `--json` hold.
    struct Result: Encodable {
        var study: String
        var folder: String
        var settings: BestOfNStudySettings
        var n: [Int]
        var klBound: [Double]
        var selectors: [SelectorResult]
        var finding: String
        var seconds: Double
        /// Fine-tuning runs beside best-of-N (`--runs`, or one per selector with `--finetune`), and
        /// the RL form fitted to their gold gains.
        var runs: [RunPoint] = []
        var runsFit: OveroptimizationFit? = nil
    }

    /// A fine-tuning run's final model on the study's plain seeds: its path KL and paired gains.
    struct RunPoint: Encodable {
        var run: String
        var kl: Double
        var gains: [String: Estimate]
    }

    static func overoptimization(_ args: ParsedArguments) throws {
        let paths = args.string("reward-model")!.split(separator: ",").map(String.init)
        guard Set(paths).count == paths.count else { throw CommandError("--reward-model names a model twice", usage: true) }
        let perspective = "proxy_" + args.string("perspective")!
        // One column per reward model: its head's name, numbered when several models are compared.
        let columns = paths.count == 1 ? [perspective] : paths.indices.map { "rm\($0 + 1)_\(perspective)" }
        var scorers: [GoldEvaluation.Selection] = []
        for (path, column) in zip(paths, columns) {
            var scorer = try EvalCommand.selections([perspective], rewardModel: path)[0]
            scorer.name = column
            scorers.append(scorer)
        }
        var selectors = columns.map { StudySelector(name: $0, weights: [$0: 1]) }
        selectors.append(StudySelector(name: "gold_alignment", weights: ["gold_alignment": 1]))
        let reported = ["gold_alignment", "gold_alignment_partial", "gold_fidelity"] + columns
        let communicator = try currentCommunicator()
        var (result, table) = try runStudy("overoptimization", args, rewardModels: paths, candidates: args.int("max-n")!, scorers: scorers,
                                           selectors: selectors, reported: reported, communicator: communicator)
        let jobs = try plainJobs(result)
        for folder in (args.string("runs") ?? "").split(separator: ",").map(String.init) {
            let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: folder).appendingPathComponent("model"))
            result.runs.append(try drawnRun(folder, model: model, jobs: jobs, result: result, table: table, scorers: scorers, reported: reported,
                                            communicator: communicator))
        }
        let measured = result.runs.filter { $0.kl.isFinite && $0.kl > 0 }
        result.runsFit = OveroptimizationFit.fit(.reinforcementLearning, distances: measured.map { $0.kl.squareRoot() },
                                                 gains: measured.map { $0.gains["gold_alignment"]!.mean })
        try finish(result, args, sections: overoptimizationSections(result, columns: columns, paths: paths), communicator: communicator)
    }

    static func perspectives(_ args: ParsedArguments) throws {
        let path = args.string("reward-model")!
        let heads = try availableRewardFunctions(rewardModel: path)[0].perspectives
        let scorers = try EvalCommand.selections(heads, rewardModel: path)
        var selectors = heads.map { StudySelector(name: $0, weights: [$0: 1]) }
        selectors.append(StudySelector(name: "all", weights: Dictionary(uniqueKeysWithValues: heads.map { ($0, 1) })))
        for left in heads where heads.count > 2 {
            selectors.append(StudySelector(name: "all_but_" + left.dropFirst("proxy_".count),
                                           weights: Dictionary(uniqueKeysWithValues: heads.filter { $0 != left }.map { ($0, 1) })))
        }
        let reported = ["gold_alignment", "gold_alignment_partial", "gold_fidelity", "gold_safety", "gold_overall"] + heads
        let communicator = try currentCommunicator()
        var (result, table) = try runStudy("perspectives", args, rewardModels: [path], candidates: args.int("best-of")!, scorers: scorers,
                                           selectors: selectors, reported: reported, communicator: communicator)
        var sections = [perspectivesSection(result)]
        if let template = args.string("finetune") {
            var config = try ConfigLoader.load(FineTuningConfig.self, from: URL(fileURLWithPath: template), defaults: FineTuningConfig())
            config.rewardModel = path
            config.threads = args.int("threads")!
            let functions = try availableRewardFunctions(rewardModel: path, textNorm: config.textNorm)
            let jobs = try plainJobs(result)
            for selector in selectors {
                config.rewards = RewardComposition(weights: selector.weights, standardize: selector.weights.keys.sorted())
                let output = URL(fileURLWithPath: result.folder).appendingPathComponent("finetune/\(selector.name)")
                let model = try fineTuned(config, output: output, functions: functions, communicator: communicator)
                result.runs.append(try drawnRun(output.path, model: model, jobs: jobs, result: result, table: table, scorers: scorers,
                                                reported: reported, communicator: communicator))
            }
            sections.append(fineTunedSection(result))
        }
        try finish(result, args, sections: sections, communicator: communicator)
    }

    /// The model of a fine-tuning run in `output`: trained (or resumed) with progress from rank 0,
    /// or loaded when the run already finished.
    static func fineTuned(_ config: FineTuningConfig, output: URL, functions: [any RewardFunction], communicator: Communicator) throws -> LatentDiffusionModel {
        let model = output.appendingPathComponent("model")
        if !FileManager.default.fileExists(atPath: model.path) {
            let resume = FileManager.default.fileExists(atPath: output.appendingPathComponent("checkpoints").path)
            if communicator.rank == 0 { progress("  fine-tuning on \(config.rewards.active.joined(separator: " + ")) into \(output.path)") }
            let trainer = try FineTuningTrainer(config: config, output: output, commandLine: CommandLine.arguments.joined(separator: " "),
                                                overwrite: !resume, resume: resume, rewardFunctions: functions, communicator: communicator)
            try trainer.run(progress: { line in if communicator.rank == 0 { progress("    \(line)") } })
            try trainer.close()
            try communicator.barrier()
        }
        return try LatentDiffusionModel.load(from: model)
    }

    /// The study's image slots in order (each caption `imagesPerPrompt` times): what a model is
    /// drawn on to compare with the study's plain samples.
    static func plainJobs(_ result: Result) throws -> [Prompt] {
        try result.settings.captions.flatMap { caption in
            [Prompt](repeating: try Prompt(parsing: caption), count: result.settings.imagesPerPrompt)
        }
    }

    /// A fine-tuned model drawn on the study's plain seeds (`jobs`, from `plainJobs`): its gains over
    /// plain sampling of the base (candidate 0), paired and clustered by prompt, at √ of its log's last KL.
    static func drawnRun(_ folder: String, model: LatentDiffusionModel, jobs: [Prompt], result: Result, table: CandidateTable,
                         scorers: [GoldEvaluation.Selection], reported: [String], communicator: Communicator) throws -> RunPoint {
        if communicator.rank == 0 { progress("  run \(folder): drawing its final model on the study's plain seeds") }
        let columns = try BestOfNStudy.draw(model: model, jobs: jobs, candidate: 0, sampling: result.settings.sampling, scorers: scorers,
                                            communicator: communicator)
        var gains: [String: Estimate] = [:]
        for column in reported { gains[column] = Estimate.paired(columns[column]!, table.columns[column]![0], clusters: table.slotPrompts) }
        let kl = (try? RunLogReader(url: URL(fileURLWithPath: folder).appendingPathComponent("run.h5")).metric("kl_mean"))?
            .last(where: \.isFinite) ?? .nan
        return RunPoint(run: folder, kl: kl, gains: gains)
    }

    /// Loads the model and prompts, runs or resumes the study with progress (from rank 0 under
    /// mpirun), and gathers the results.
    static func runStudy(_ study: String, _ args: ParsedArguments, rewardModels: [String], candidates: Int,
                         scorers: [GoldEvaluation.Selection], selectors: [StudySelector], reported: [String],
                         communicator: Communicator) throws -> (Result, CandidateTable) {
        Threads.set(args.int("threads")!)
        let (prompts, label) = try EvalCommand.evaluationPrompts(args.string("prompts")!, count: args.int("n-prompts")!)
        let settings = BestOfNStudySettings(study: study, model: args.string("model")!, rewardModels: rewardModels, promptSource: label,
                                            captions: prompts.map(\.caption), imagesPerPrompt: args.int("images-per-prompt")!,
                                            candidates: candidates, sampling: SamplingOptions.settings(args), scorers: scorers.map(\.name),
                                            selectors: selectors, reported: reported)
        let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: settings.model))
        let folder = URL(fileURLWithPath: args.string("out")!)
        let start = RunStart(resume: args.flag("resume"), overwrite: args.flag("force"))
        StopSignal.install()
        let started = Date()
        let slots = prompts.count * settings.imagesPerPrompt
        if communicator.rank == 0 { progress("study \(study): \(prompts.count) \(label) prompts × \(settings.imagesPerPrompt) images, \(candidates) candidates each "
                 + "(\(slots * candidates) images); \(folder.path)/run.h5") }
        let table = try BestOfNStudy.run(model: model, prompts: prompts, settings: settings, scorers: scorers, folder: folder, start: start,
                                         communicator: communicator) { done, total, seconds in
            progress(String(format: "candidate %d/%d  %.1f s (%.1f images/s)", done, total, seconds, Double(slots) / seconds))
        }
        let ns = Array(1...candidates)
        let results = try selectors.map { selector -> SelectorResult in
            var gains: [String: [Estimate]] = [:]
            for n in ns { for (column, gain) in try table.gains(selector, n: n, in: reported) { gains[column, default: []].append(gain) } }
            let alignment = gains["gold_alignment"]!.map(\.mean)
            let fit = OveroptimizationFit.fit(.bestOfN, distances: ns.map { bestOfNKLBound($0).squareRoot() }, gains: alignment)
            return SelectorResult(name: selector.name, weights: selector.weights, gains: gains, fit: fit,
                                  peakN: ns[alignment.indices.max { alignment[$0] < alignment[$1] }!])
        }
        return (Result(study: study, folder: folder.path, settings: settings, n: ns, klBound: ns.map(bestOfNKLBound), selectors: results,
                       finding: finding(study, results), seconds: Date().timeIntervalSince(started)), table)
    }

    /// One sentence on what the study shows (overoptimization: Gao et al.'s shape or not).
    static func finding(_ study: String, _ results: [SelectorResult]) -> String {
        guard study == "overoptimization" else { return "" }
        var sentences: [String] = []
        for result in results {
            let gains = result.gains["gold_alignment"]!, last = gains.last!, peak = gains[result.peakN - 1]
            let falls = result.peakN < gains.count && peak.mean - last.mean > last.standardError
            sentences.append(String(format: "%@: gold alignment gain peaks at N = %d (%+.3f) and is %+.3f ± %.3f at N = %d — %@",
                                    result.name, result.peakN, peak.mean, last.mean, last.standardError, gains.count,
                                    falls ? "it falls past the peak by more than a standard error (overoptimization)"
                                          : "no fall past the peak larger than a standard error"))
        }
        return sentences.joined(separator: "; ")
    }

    static func format(_ e: Estimate) -> String { String(format: "%+.3f ± %.3f", e.mean, e.standardError) }

    /// "α, β (R²)" of a fitted overoptimization curve.
    static func fitText(_ f: OveroptimizationFit) -> String {
        String(format: "%.3f, %.3f (%@)", f.alpha, f.beta, f.rSquared.map { String(format: "%.2f", $0) } ?? "—")
    }

    /// The overoptimization page's table (every selector at N = 1, 2, 4, … and the fit) and charts.
    static func overoptimizationSections(_ result: Result, columns: [String], paths: [String]) -> [RunReport.Section] {
        let shown = result.n.filter { $0 & ($0 - 1) == 0 || $0 == result.n.last! }
        var table = [["selected by", "column"] + shown.map { "N = \($0)" } + ["fit α, β (R²)"]]
        for selector in result.selectors {
            for column in ["gold_alignment"] + columns {
                let fit = column == "gold_alignment" ? selector.fit.map(fitText) ?? "—" : ""
                table.append([selector.name, column] + shown.map { format(selector.gains[column]![$0 - 1]) } + [fit])
            }
        }
        let d = result.klBound.map { $0.squareRoot() }
        var goldLines = result.selectors.map { s in (label: s.name, points: Array(zip(d, s.gains["gold_alignment"]!.map(\.mean)))) }
        if !result.runs.isEmpty {
            goldLines.append((label: "fine-tuning runs (x: √ path KL, an upper bound)",
                              points: result.runs.map { ($0.kl.squareRoot(), $0.gains["gold_alignment"]!.mean) }.sorted { $0.0 < $1.0 }))
            for run in result.runs {
                table.append(["run \(run.run) (KL \(String(format: "%.0f", run.kl)))", "gold_alignment"]
                             + shown.map { _ in "" } + [format(run.gains["gold_alignment"]!)])
            }
            if let f = result.runsFit {
                table.append(["runs, RL form d(α − β log d)", "gold_alignment"] + shown.map { _ in "" }
                             + [fitText(f)])
            }
        }
        let gold = RunReport.Chart(title: "gold alignment gain vs √KL bound", xLabel: "d = √(log N − (N − 1)/N)", lines: goldLines)
        let proxy = RunReport.Chart(title: "proxy gain vs √KL bound (the selecting head's own gain)", xLabel: "d",
                                    lines: result.selectors.compactMap { s in s.gains[s.name].map { (s.name, Array(zip(d, $0.map(\.mean)))) } })
        let legend = zip(columns, paths).map { "\($0) = \($1)" }.joined(separator: "; ")
        return [RunReport.Section(title: "Best-of-N: gains over plain sampling, paired and clustered by prompt", note: "\(legend). \(result.finding).",
                                  table: table, charts: [gold, proxy])]
    }

    /// The perspectives page's table: every selector's gain in each gold perspective at the largest N.
    static func perspectivesSection(_ result: Result) -> RunReport.Section {
        let n = result.n.last!
        var table = [["selected by (best of \(n))", "alignment", "partial", "fidelity", "hazard rate", "overall"]]
        for selector in result.selectors { table.append([selector.name] + goldCells { selector.gains[$0]![n - 1] }) }
        return RunReport.Section(title: "Gold gains of best-of-\(n) by each selector over plain sampling (paired, clustered by prompt)", table: table)
    }

    /// A perspectives table's gold cells from `gain(column)`: alignment, partial, fidelity, the
    /// hazard rate (minus the safety gain) and overall.
    static func goldCells(_ gain: (String) -> Estimate) -> [String] {
        let safety = gain("gold_safety")
        return ["gold_alignment", "gold_alignment_partial", "gold_fidelity"].map { format(gain($0)) }
            + [String(format: "%+.3f ± %.3f", -safety.mean, safety.standardError), format(gain("gold_overall"))]
    }

    /// The perspectives page's second table (`--finetune`): each selector's fine-tuned model against
    /// the base on the study's plain seeds.
    static func fineTunedSection(_ result: Result) -> RunReport.Section {
        var table = [["fine-tuned by", "alignment", "partial", "fidelity", "hazard rate", "overall", "KL"]]
        for (selector, run) in zip(result.selectors, result.runs) {
            table.append([selector.name] + goldCells { run.gains[$0]! } + [String(format: "%.0f", run.kl)])
        }
        return RunReport.Section(title: "Gold gains of the model fine-tuned with each selector's heads as the reward, over the base (paired, clustered by prompt)",
                                 table: table)
    }

    /// Writes study.json and study.html beside the log, then prints the result (or its JSON).
    static func finish(_ result: Result, _ args: ParsedArguments, sections: [RunReport.Section], communicator: Communicator) throws {
        guard communicator.rank == 0 else { return }
        let folder = URL(fileURLWithPath: result.folder)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try encoder.encode(result).write(to: folder.appendingPathComponent("study.json"), options: .atomic)
        let reader = try RunLogReader(url: folder.appendingPathComponent("run.h5"))
        let html = try RunReport.html([RunReport.Run(name: "study \(result.study)", reader: reader)], sections: sections)
        try html.write(to: folder.appendingPathComponent("study.html"), atomically: true, encoding: .utf8)
        if args.flag("json") {
            try printJSON(result)
            return
        }
        for section in sections {
            print(section.title + (section.note.isEmpty ? "" : "\n" + section.note))
            for row in section.table { print(row.joined(separator: "  |  ")) }
        }
        print("wrote \(folder.path)/run.h5, study.json, study.html (\(Int(result.seconds)) s)")
    }
}
