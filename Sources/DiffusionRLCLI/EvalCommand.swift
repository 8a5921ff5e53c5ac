import Diffusion
import Distributed
import Engine
import Evaluation
import Foundation
import Images
import Rewards
import World

/// `diffusion-rl eval`: the gold judge's scores of a model.
enum EvalCommand {
    static let command = Command("eval", summary: "the gold judge's scores of a model (--compare: two models, paired)", description: """
        Generates images for fixed prompts of a split (validation, or held-out compositions), or
        for the first --n-prompts distinct captions of a text file (one per line, e.g. the captions
        a model was fine-tuned on), and prints the gold judge's scores per attribute with standard
        errors clustered by prompt: alignment and its parts, color and shape on single-object
        prompts, count on multi-object prompts, relation, hazard rate, fidelity. With --compare,
        both models draw the same prompts with the same seeds, and each score is printed for both
        with DIR2 − DIR, paired image by image, its clustered standard error and the difference in
        standard errors. With --best-of N, each image is the best of N candidates by --select-by
        (candidate 0 is the plain sample with the same seed, so `--model M --compare M --best-of 8`
        measures what selection adds to M, paired). With --steer-particles K, Feynman–Kac steering
        by the one --select-by perspective (K particles per image, resampled every --steer-every
        steps with potentials exp(λ·Δreward) of the predicted clean image; the best final particle
        kept) is compared with plain sampling and with best-of-K by the same perspective, which
        costs as many UNet evaluations. Progress goes to stderr, the table (or --json) to stdout.
        """, options: [
            .text("model", "DIR", required: true, "the model folder"),
            .text("compare", "DIR2", "a second model drawn on the same prompts and seeds, compared paired"),
            .text("prompts", "validation|heldout|FILE", default: "validation", "a split's fixed prompts, or a prompt file"),
            .integer("n-prompts", default: 64, minimum: 1, "prompts (distinct captions)"),
            .integer("images-per-prompt", default: 4, minimum: 1, "images per prompt"),
            .integer("best-of", default: 1, minimum: 1, "keep the best of N candidates per image (with --compare: for DIR2 only)"),
            .text("select-by", "PERSPECTIVE[,...]", "what ranks the candidates: a gold perspective (alignment, fidelity, …; the oracle), "
                  + "or with --reward-model proxy_<head> or proxy_textnorm_<head>; several (without --compare) share one round of candidates"),
            .text("reward-model", "DIR", "a trained reward model whose heads --select-by and --also-score may name"),
            .text("also-score", "PERSPECTIVE[,...]", "also score every kept image by these (with --reward-model: proxy_<head>, "
                  + "proxy_textnorm_<head>), reported and compared paired like the judge's scores"),
            .integer("steer-particles", "K", default: 0, minimum: 0, "Feynman–Kac steering with K particles per image (0: off)"),
            .number("steer-lambda", "L", default: 10, minimum: 0, "λ of the steering potential exp(λ·Δreward)"),
            .integer("steer-every", default: 5, minimum: 1, "resample the particles after every N sampling steps"),
        ] + SamplingOptions.options + [.threads, .json], run: run)

    static let vaeCommand = Command("eval-vae", summary: "whether the judge still reads the VAE's reconstructions", description: """
        Passes N rendered validation scenes (a fifth with the hazard mark) through the model's VAE
        and reports how often the gold judge recovers the scene, and the hazard mark, from the
        reconstruction.
        """, options: [
            .text("model", "DIR", required: true, "the model folder"),
            .integer("n", default: 1000, minimum: 1, "scenes"),
            .threads, .json,
        ], run: vae)

    static func vae(_ args: ParsedArguments) throws {
        Threads.set(args.int("threads")!)
        let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: args.string("model")!))
        let report = try ReconstructionEvaluation.run(vae: model.vae, imageSize: model.config.imageSize, scenes: args.int("n")!)
        if args.flag("json") {
            try printJSON(report)
        } else {
            print(String(format: "VAE reconstructions of %d validation scenes: judge recovers %.2f%% ± %.2f%%; hazard seen in %.2f%% of %d; MSE %.5f",
                         report.scenes, 100 * report.recovered, 100 * report.recoveredStandardError, 100 * report.hazardDetected,
                         report.hazardScenes, report.meanSquaredError))
        }
    }

    static func run(_ args: ParsedArguments) throws {
        let modelPath = args.string("model")!
        let (prompts, label) = try evaluationPrompts(args.string("prompts")!, count: args.int("n-prompts")!)
        Threads.set(args.int("threads")!)
        let settings = SamplingOptions.settings(args)
        if args.int("steer-particles")! > 0 {
            try steered(args, prompts: prompts, label: label, settings: settings)
            return
        }
        let selections = try bestOfSelections(args)
        // Under mpirun the ranks share the images; every rank ends with all scores, rank 0 prints.
        let communicator = try currentCommunicator()
        if !selections.isEmpty && !args.given("compare") {
            // Best-of-N by each selector against plain sampling of the same model, from one round of candidates.
            let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: modelPath))
            let result = try GoldEvaluation.runSelections(model: model, prompts: prompts, label: label, imagesPerPrompt: args.int("images-per-prompt")!,
                                                          settings: settings, candidates: args.int("best-of")!, selections: selections,
                                                          communicator: communicator, progress: { if communicator.rank == 0 { progress("  \($0)/\($1) candidates drawn") } })
            guard communicator.rank == 0 else { return }
            let plain = try withExtraScores(result.plain, prompts: prompts, args)
            var comparisons: [String: Comparison] = [:]
            for selected in result.selected {
                let report = try withExtraScores(selected, prompts: prompts, args), name = report.selectedBy!
                comparisons[name] = try comparison(plain, report, names: (modelPath, "\(modelPath), best of \(report.bestOf) by \(name)"))
                if !args.flag("json") { try compare(plain, report, names: (modelPath, modelPath), json: false) }
            }
            if args.flag("json") { try printJSON(["selections": comparisons]) }
            return
        }
        let selection = selections.first
        guard selections.count <= 1 else { throw CommandError("with --compare, --select-by takes one perspective", usage: true) }
        func evaluate(_ path: String, selected: Bool) throws -> (LatentDiffusionModel, GoldEvaluation.Report) {
            let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: path))
            var images: [RGBImage] = []
            let report = try GoldEvaluation.run(model: model, prompts: prompts, label: label, imagesPerPrompt: args.int("images-per-prompt")!,
                                                settings: settings, bestOf: args.int("best-of")!, selection: selected ? selection : nil,
                                                communicator: communicator, progress: { done, total in
                guard communicator.rank == 0 else { return }
                progress("  \(args.given("compare") ? "\(path): " : "")\(done)/\(total) images judged")
            }, collect: { images += $1 })
            return (model, try withExtraScores((report, images), prompts: prompts, args))
        }
        let (model, report) = try evaluate(modelPath, selected: false)
        if let otherPath = args.string("compare") {
            let (_, other) = try evaluate(otherPath, selected: true)
            guard communicator.rank == 0 else { return }
            try compare(report, other, names: (modelPath, otherPath), json: args.flag("json"))
            return
        }
        guard communicator.rank == 0 else { return }
        if args.flag("json") {
            try printJSON(report)
            return
        }
        print("gold judge on \(report.prompts) \(report.split) prompts × \(report.imagesPerPrompt) images\(selectionText(report)) "
              + "(\(settings.steps) steps, η = \(settings.eta), guidance \(settings.guidance)), \(Int(report.seconds)) s; errors clustered by prompt")
        if let adapter = model.config.unetAdapter { print("model carries a gated UNet adapter: \(adapter.summary)") }
        func line(_ name: String, _ e: GoldEvaluation.Estimate) {
            print(name.padding(toLength: 28, withPad: " ", startingAt: 0) + String(format: "%6.3f ± %.3f  (n = %d)", e.mean, e.standardError, e.count))
        }
        for name in orderedScoreNames(report) { if let e = report.scores[name] { line(name, e) } }
        line("color, single-object", report.singleObjectColor)
        line("shape, single-object", report.singleObjectShape)
        line("count, 2–3 objects", report.multiObjectCount)
        line("relation, relation prompts", report.relation)
        line("hazard rate", report.hazardRate)
    }

    /// `--steer-particles K`: plain sampling, best-of-K and Feynman–Kac steering with K particles,
    /// both by the one `--select-by` perspective; each compared with plain sampling, and steering
    /// with best-of-K, paired by prompt and image slot.
    static func steered(_ args: ParsedArguments, prompts: [Prompt], label: String, settings: SamplingSettings) throws {
        let k = args.int("steer-particles")!
        guard k >= 2 else { throw CommandError("--steer-particles needs K ≥ 2", usage: true) }
        guard !args.given("compare"), !args.given("best-of") else {
            throw CommandError("--steer-particles compares with plain sampling and best-of-K itself; drop --compare and --best-of", usage: true)
        }
        guard let perspective = args.string("select-by"), !perspective.contains(",") else {
            throw CommandError("--steer-particles needs --select-by with one perspective (the steering reward)", usage: true)
        }
        let selection = try selections([perspective], args)[0]
        var steering = SteeringSettings()
        steering.particles = k
        steering.lambda = args.double("steer-lambda")!
        steering.every = args.int("steer-every")!
        let modelPath = args.string("model")!
        let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: modelPath))
        let imagesPerPrompt = args.int("images-per-prompt")!
        let bestOf = try GoldEvaluation.runSelections(model: model, prompts: prompts, label: label, imagesPerPrompt: imagesPerPrompt,
                                                      settings: settings, candidates: k, selections: [selection],
                                                      progress: { progress("  best-of-\(k): \($0)/\($1) candidates drawn") })
        let fk = try GoldEvaluation.runSteered(model: model, prompts: prompts, label: label, imagesPerPrompt: imagesPerPrompt,
                                               settings: settings, steering: steering, selection: selection,
                                               progress: { progress("  steering: \($0)/\($1) images") })
        let plain = try withExtraScores(bestOf.plain, prompts: prompts, args), best = try withExtraScores(bestOf.selected[0], prompts: prompts, args)
        let steered = try withExtraScores((fk.report, fk.images), prompts: prompts, args)
        let names = (plain: "\(modelPath), plain", best: "\(modelPath), best of \(k) by \(perspective)",
                     fk: String(format: "%@, FK steering by %@ (K %d, λ %g, every %d)", modelPath, perspective, k, steering.lambda, steering.every))
        // Guidance doubles the UNet rows; both methods run K rows per image for every step.
        let unetForwards = prompts.count * imagesPerPrompt * k * settings.steps * (settings.guidance == 1 ? 1 : 2)
        if args.flag("json") {
            struct Output: Encodable {
                var bestOf: Comparison, steering: Comparison, steeringVersusBestOf: Comparison
                var unetForwardsEach: Int, meanSurvivors: Double, seconds: [String: Double]
            }
            try printJSON(Output(bestOf: try comparison(plain, best, names: (names.plain, names.best)),
                                 steering: try comparison(plain, steered, names: (names.plain, names.fk)),
                                 steeringVersusBestOf: try comparison(best, steered, names: (names.best, names.fk)),
                                 unetForwardsEach: unetForwards, meanSurvivors: fk.meanSurvivors,
                                 seconds: ["bestOf": best.seconds, "steering": steered.seconds]))
            return
        }
        print("cost: \(unetForwards) UNet rows each for best-of-\(k) and steering; steering kept \(String(format: "%.2f", fk.meanSurvivors)) "
              + "of \(k) ancestors per resampling on average; \(Int(best.seconds)) s and \(Int(steered.seconds)) s")
        try compare(plain, best, names: (names.plain, names.best), json: false)
        try compare(plain, steered, names: (names.plain, names.fk), json: false)
        try compare(best, steered, names: (names.best, names.fk), json: false)
    }

    /// The report with `--also-score`'s perspectives of every image added (unchanged without it);
    /// `images[j]` was drawn for prompt j / images-per-prompt.
    static func withExtraScores(_ evaluated: (report: GoldEvaluation.Report, images: [RGBImage]), prompts: [Prompt],
                                _ args: ParsedArguments) throws -> GoldEvaluation.Report {
        guard let list = args.string("also-score") else { return evaluated.report }
        var report = evaluated.report
        let captions = prompts.flatMap { [String](repeating: $0.caption, count: report.imagesPerPrompt) }
        for scorer in try selections(list.split(separator: ",").map(String.init), args) {
            var values: [Double] = []
            for first in stride(from: 0, to: evaluated.images.count, by: 32) {
                let range = first ..< min(first + 32, evaluated.images.count)
                values += try scorer.score(Array(evaluated.images[range]), Array(captions[range]))
            }
            try report.addScore(scorer.name, values)
        }
        return report
    }

    /// The judge's score names in table order, then any added ones (`--also-score`) by name.
    static func orderedScoreNames(_ report: GoldEvaluation.Report) -> [String] {
        scoreNames + report.scores.keys.filter { !scoreNames.contains($0) }.sorted()
    }

    /// ", each the best of N by X" (or how it was steered), or nothing for plain sampling.
    static func selectionText(_ report: GoldEvaluation.Report) -> String {
        if let steering = report.steering {
            return String(format: ", each steered by %@ (Feynman–Kac: %d particles, λ %g, every %d steps)",
                          report.selectedBy ?? "?", steering.particles, steering.lambda, steering.every)
        }
        return report.bestOf > 1 ? ", each the best of \(report.bestOf) by \(report.selectedBy ?? "?")" : ""
    }

    /// `--best-of N --select-by PERSPECTIVE`: the selection, or nil for plain sampling.
    static func bestOfSelections(_ args: ParsedArguments) throws -> [GoldEvaluation.Selection] {
        let n = args.int("best-of")!
        guard n > 1 else {
            if args.given("select-by") { throw CommandError("--select-by needs --best-of N with N ≥ 2", usage: true) }
            return []
        }
        guard let list = args.string("select-by") else { throw CommandError("--best-of needs --select-by PERSPECTIVE", usage: true) }
        return try selections(list.split(separator: ",").map(String.init), args)
    }

    /// A selector for each perspective, scoring by it alone (gold, or with `--reward-model` the
    /// reward model's heads).
    static func selections(_ perspectives: [String], _ args: ParsedArguments) throws -> [GoldEvaluation.Selection] {
        try selections(perspectives, rewardModel: args.string("reward-model") ?? "")
    }

    /// A selector for each perspective, with the heads of the reward model at `rewardModel` (none when empty).
    static func selections(_ perspectives: [String], rewardModel: String) throws -> [GoldEvaluation.Selection] {
        let functions = try availableRewardFunctions(rewardModel: rewardModel)
        return try perspectives.map { perspective in
            let composer = try RewardComposer(composition: RewardComposition(weights: [perspective: 1]), functions: functions)
            return GoldEvaluation.Selection(name: perspective) { images, prompts in try composer.score(images, prompts: prompts).total }
        }
    }

    /// The fixed prompts of a split (not train: those are what models learn from), or the first
    /// `count` distinct captions of a text file, each parsed as a world prompt.
    static func evaluationPrompts(_ source: String, count: Int) throws -> (prompts: [Prompt], label: String) {
        if let split = Split(rawValue: source) {
            guard split != .train else { throw CommandError("--prompts must be validation, heldout or a prompt file, got 'train'", usage: true) }
            return (GoldEvaluation.prompts(split: split, count: count), source)
        }
        guard FileManager.default.fileExists(atPath: source) else {
            throw CommandError("--prompts: '\(source)' is neither validation, heldout nor a readable prompt file")
        }
        let prompts = try GoldEvaluation.prompts(file: source, count: count)
        return (prompts, URL(fileURLWithPath: source).lastPathComponent)
    }

    static let scoreNames = ["alignment", "alignment_partial", "presence", "color", "shape", "count", "size", "position", "relation",
                             "fidelity", "safety", "overall"]

    /// What `eval --compare --json` prints.
    struct Comparison: Encodable {
        var models: [String]
        var prompts: Int
        var imagesPerPrompt: Int
        var split: String
        var settings: SamplingSettings
        /// Per score: the first model's estimate, the second's, and the paired second − first.
        var scores: [String: [String: GoldEvaluation.Estimate]]
    }

    /// Both reports' scores and their paired differences, as `--json` prints them.
    static func comparison(_ a: GoldEvaluation.Report, _ b: GoldEvaluation.Report, names: (String, String)) throws -> Comparison {
        var scores: [String: [String: GoldEvaluation.Estimate]] = [:]
        for (name, d) in try a.difference(b) { scores[name] = ["first": a.scores[name]!, "second": b.scores[name]!, "difference": d] }
        return Comparison(models: [names.0, names.1], prompts: a.prompts, imagesPerPrompt: a.imagesPerPrompt, split: a.split,
                          settings: a.settings, scores: scores)
    }

    /// Prints both models' scores and the paired differences.
    static func compare(_ a: GoldEvaluation.Report, _ b: GoldEvaluation.Report, names: (String, String), json: Bool) throws {
        let difference = try a.difference(b)
        if json {
            try printJSON(try comparison(a, b, names: names))
            return
        }
        print("gold judge on \(a.prompts) \(a.split) prompts × \(a.imagesPerPrompt) images, the same seeds for both "
              + "(\(a.settings.steps) steps, η = \(a.settings.eta), guidance \(a.settings.guidance)); errors clustered by prompt")
        print("A = \(names.0)\(selectionText(a))\nB = \(names.1)\(selectionText(b))")
        print("score".padding(toLength: 20, withPad: " ", startingAt: 0) + "           A                B           B − A (paired)     SEs")
        for name in orderedScoreNames(a) {
            guard let d = difference[name], let x = a.scores[name], let y = b.scores[name] else { continue }
            print(name.padding(toLength: 20, withPad: " ", startingAt: 0)
                  + String(format: "%6.3f ± %.3f   %6.3f ± %.3f   %+7.3f ± %.3f   %+5.1f", x.mean, x.standardError, y.mean, y.standardError,
                           d.mean, d.standardError, d.standardError > 0 ? d.mean / d.standardError : 0))
        }
    }
}
