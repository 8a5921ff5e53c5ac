import Diffusion
import Distributed
import Engine
import Foundation
import Images
import Inputs
import RewardData
import RewardModel
import Rewards
import RunLog
import World

/// `diffusion-rl reward ...`: the compact LLaVA-Reward — pretrain its decoder, make preference
/// data, train the reward heads, evaluate, score.
enum RewardCommand {
    static let command = Command("reward", summary: "the compact LLaVA-Reward: pretrain, make-data, train, eval, score", subcommands: [
        pretrainCommand, makeDataCommand, trainCommand, evalCommand, scoreCommand,
    ])

    static let pretrainCommand = Command("pretrain", summary: "caption the world's images to pretrain the multimodal decoder", description: """
        Pretrains the reward model's multimodal decoder (ViT, projector, causal decoder) by captioning
        the world's training images. Writes DIR/run.h5 and DIR/decoder (config.json, tokenizer.json,
        decoder.safetensors). Config keys: model (RewardModelConfig), seed, steps, batch,
        learningRate, warmupSteps, gradientClip, hazardRate, logEvery, checkpointEvery, threads,
        initialDecoder (a decoder folder to continue from; its model and tokenizer replace `model`);
        unknown keys are errors. Every checkpointEvery steps a resumable checkpoint goes to
        DIR/checkpoints; --resume continues a stopped or killed run from the newest (same config, same
        result); --force replaces an existing run. Under mpirun it is data-parallel: every rank draws
        the step's batch and trains its rows r, r + N, …, the gradients are summed in one all-reduce
        per step, and rank 0 writes the run.
        """, options: [
            .text("config", "FILE.json", "the caption-pretraining config (default: every key's default)"),
            .threadsOverride,
        ] + Option.runFolder, exclusive: [["force", "resume"]], run: pretrain)

    static func pretrain(_ args: ParsedArguments) throws {
        let out = args.string("out")!
        var config = CaptionPretrainConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(CaptionPretrainConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        config.threads = args.int("threads") ?? config.threads
        StopSignal.install()
        let communicator = try currentCommunicator()
        let trainer = try CaptionPretrainer(config: config, output: URL(fileURLWithPath: out),
                                            commandLine: CommandLine.arguments.joined(separator: " "), overwrite: args.flag("force"),
                                            resume: args.flag("resume"), communicator: communicator)
        try trainer.run(progress: communicator.rank == 0 ? progress : { _ in })
        guard communicator.rank == 0 else { return }
        let world = WorldGenerator(seed: 1)
        let scenes = world.scenes(.validation, count: 4)
        let captions = try CaptionPretrainer.caption(trainer.decoder, tokenizer: trainer.tokenizer,
                                                     images: ImageTensors.tensor(scenes.map(Renderer(size: config.model.imageSize).render)))
        for (scene, caption) in zip(scenes, captions) { print("  validation '\(scene.caption)' → captioned '\(caption)'") }
    }

    static let makeDataCommand = Command("make-data", summary: "preference data: a diffusion model's images and rendered scenes, labeled by simulated annotators", description: """
        For each prompt of the split: generatedPerPrompt images from the diffusion model (20 DDIM
        steps, η 1, guidance 5), its rendered scene (with the hazard mark at renderedHazardRate), a
        corrupted copy, and the rendered scenes of contrastiveRenders prompts with one color, shape,
        count or relation changed, and contrastiveGenerated images the model draws for such prompts
        (judged against the original prompt). Simulated annotators (gold judge + saturation bias + noise) label every pair
        of a prompt's images for alignment, fidelity and overall, and every image safe/unsafe. Writes
        DIR2/images/*.png and DIR2/data.jsonl (with the gold judge's verdicts beside the annotators').
        Options override the config's keys (PreferenceDataSettings). With --relabel, the same images
        and pairs are labeled again by annotators with other settings (the gold judge re-reads every
        image) and written as NAME.jsonl beside the source, so noise and bias can be studied without
        generating anything.
        """, options: [
            .text("model", "DIR", "the diffusion model (required unless --relabel)"),
            .text("out", "DIR2", required: true, "the folder to write (with --relabel: NAME.jsonl beside the source)"),
            .text("config", "FILE.json", "PreferenceDataSettings (default: every key's default)"),
            .choice("split", ["train", "validation", "heldout"], "override the config's split"),
            .integer("prompts", minimum: 1, "override the config's prompts"),
            .integer("first", minimum: 0, "override the config's first prompt"),
            .number("noise", minimum: 0, "override the annotators' noise"),
            .number("saturation-bias", minimum: 0, "override the annotators' saturation bias"),
            .integer("seed", minimum: 0, "override the config's seed"),
            .text("relabel", "DIR/data.jsonl", "label existing data again instead of generating"),
            .threads,
            .flag("force", "overwrite existing data"),
        ], exclusive: [["model", "relabel"]], usages: ["--relabel DIR/data.jsonl --out NAME.jsonl [--noise X] [--saturation-bias X]"], run: makeData)

    static func makeData(_ args: ParsedArguments) throws {
        let out = args.string("out")!
        var settings = PreferenceDataSettings()
        if let path = args.string("config") {
            settings = try ConfigLoader.load(PreferenceDataSettings.self, from: URL(fileURLWithPath: path), defaults: settings)
        }
        settings.split = args.string("split").map { Split(rawValue: $0)! } ?? settings.split
        settings.prompts = args.int("prompts") ?? settings.prompts
        settings.firstPrompt = args.int("first") ?? settings.firstPrompt
        settings.seed = args.int("seed").map(UInt64.init) ?? settings.seed
        settings.annotator.noise = args.double("noise") ?? settings.annotator.noise
        settings.annotator.saturationBias = args.double("saturation-bias") ?? settings.annotator.saturationBias
        try settings.validate()
        Threads.set(args.int("threads")!)
        if let source = args.string("relabel") {
            guard !out.contains("/"), out.hasSuffix(".jsonl") else {
                throw CommandError("with --relabel, --out is a file name (NAME.jsonl) written beside the source", usage: true)
            }
            let sourceURL = URL(fileURLWithPath: source)
            let target = sourceURL.deletingLastPathComponent().appendingPathComponent(out)
            guard target.standardizedFileURL != sourceURL.standardizedFileURL else { throw CommandError("--out would overwrite the source data") }
            if FileManager.default.fileExists(atPath: target.path) && !args.flag("force") {
                throw CommandError("\(target.path) exists; pass --force to overwrite")
            }
            let records = try PreferenceDataMaker(settings: settings).relabel(PreferenceData.read(sourceURL), folder: sourceURL.deletingLastPathComponent())
            try PreferenceData.write(records, to: target)
            summarize(records, written: target)
            return
        }
        guard let modelPath = args.string("model") else {
            throw CommandError("reward make-data needs --model DIR (or --relabel) (see diffusion-rl reward make-data --help)", usage: true)
        }
        let folder = URL(fileURLWithPath: out)
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("data.jsonl").path) && !args.flag("force") {
            throw CommandError("\(folder.path) already holds preference data; pass --force to overwrite")
        }
        if args.flag("force") { try? FileManager.default.removeItem(at: folder.appendingPathComponent("images")) }
        let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: modelPath))
        let records = try PreferenceDataMaker(settings: settings).make(model: model, folder: folder, progress: progress)
        try ConfigLoader.json(settings).write(to: folder.appendingPathComponent("settings.json"), atomically: true, encoding: .utf8)
        summarize(records, written: folder.appendingPathComponent("data.jsonl"))
    }

    /// Counts, and how often the annotators agree with the gold judge where it has a preference.
    static func summarize(_ records: [PreferenceRecord], written url: URL) {
        let pairs = records.filter(\.isPair)
        var agreement: [String] = []
        for aspect in SimulatedAnnotator.pairedAspects {
            let both = pairs.filter { $0.preferred?[aspect] != nil && $0.goldPreferred?[aspect] != nil }
            let same = both.filter { $0.preferred![aspect] == $0.goldPreferred![aspect] }.count
            agreement.append(String(format: "%@ %.3f", aspect, Double(same) / Double(Swift.max(both.count, 1))))
        }
        print("wrote \(url.path): \(pairs.count) pairs, \(records.count - pairs.count) labeled images")
        print("annotators agree with the gold judge on pairs it separates: " + agreement.joined(separator: ", "))
    }

    static let trainCommand = Command("train", summary: "Bradley–Terry / BCE training of one value head per perspective, SkipCA on or off", description: """
        Trains the reward model from a captioning-pretrained decoder on preference JSONL: one value
        head per perspective, Bradley–Terry on pairs and BCE on labeled images, LoRA on the decoder's
        attention and MLP projections, SkipCA unless --no-skip-ca. --dual-encoder trains the CLIP-style
        baseline instead (same vision encoder; image and text embeddings scored by a dot product).
        Writes DIR/run.h5 and DIR/model; after every epoch a resumable checkpoint goes to
        DIR/checkpoints, and --resume continues a stopped or killed run from the newest (same config,
        same result). Under mpirun it is data-parallel: the ranks split each batch's prompts (so
        promptsPerBatch should be at least the number of ranks), sum the gradients in one all-reduce
        per step, and rank 0 writes the run.
        Config keys: PreferenceTrainConfig (decoder, data, perspectives, skipCrossAttention, architecture,
        captionLikelihoodPerspectives (their reward adds the decoder's log p(prompt | image)), loraRank,
        trainVision, epochs, promptsPerBatch, learningRate, warmupSteps, gradientClip, margin, temperature, seed,
        logEvery, threads).
        """, options: [
            .text("config", "FILE.json", "PreferenceTrainConfig (default: every key's default)"),
            .text("decoder", "DIR", "override the config's captioning-pretrained decoder"),
            .text("data", "FILE.jsonl", "override the config's preference data"),
            .text("perspectives", "alignment,fidelity,safety,overall", "override the config's perspectives"),
            .flag("no-skip-ca", "train without SkipCA"),
            .flag("dual-encoder", "train the CLIP-style baseline instead"),
            .threadsOverride,
        ] + Option.runFolder, exclusive: [["force", "resume"]], run: train)

    static func train(_ args: ParsedArguments) throws {
        let out = args.string("out")!
        var config = PreferenceTrainConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(PreferenceTrainConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        if let decoder = args.string("decoder") { config.decoder = decoder }
        if let data = args.string("data") { config.data = data }
        if let names = args.string("perspectives") { config.perspectives = names.split(separator: ",").map(String.init) }
        if args.flag("no-skip-ca") { config.skipCrossAttention = false }
        if args.flag("dual-encoder") { config.architecture = .dualEncoder }
        config.threads = args.int("threads") ?? config.threads
        let folder = URL(fileURLWithPath: out)
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("model").path) && !args.flag("force") {
            throw CommandError("\(folder.path) already holds a trained reward model; pass --force to overwrite")
        }
        StopSignal.install()
        let communicator = try currentCommunicator()
        let trainer = try PreferenceTrainer(config: config, output: folder, commandLine: CommandLine.arguments.joined(separator: " "),
                                            overwrite: args.flag("force"), resume: args.flag("resume"), communicator: communicator)
        try trainer.run(progress: communicator.rank == 0 ? progress : { _ in })
    }

    static let evalCommand = Command("eval", summary: "pairwise accuracy per perspective against the gold judge and the annotators, label accuracy, calibration", description: """
        Scores every image of held-out preference data and prints, per perspective: pairwise accuracy
        against the gold judge's strict preferences (± standard error) and against the annotators,
        label accuracy (reward > 0 = good) and expected calibration error. With --compare, both
        models' gold pairwise accuracy on the same pairs and their difference, paired. With --caption-likelihood,
        the score is log p(prompt | image) from a captioning-pretrained decoder (`reward pretrain`
        writes OUT/decoder), evaluated as a zero-shot alignment reward.
        """, options: [
            .text("data", "FILE.jsonl", required: true, "held-out preference data"),
            .text("model", "DIR", "a trained reward model"),
            .text("caption-likelihood", "DECODER", "score by log p(prompt | image) from a captioning-pretrained decoder instead"),
            .number("textnorm", "TAU", minimum: 1e-6, "score the alignment and overall heads by TextNorm's r̃ at temperature TAU (8 contrastive prompts each)"),
            .text("compare", "DIR", "a second reward model: print both models' gold pairwise accuracy and --model's minus this one's, paired pair by pair (standard error clustered by prompt)"),
            .threads, .json,
        ], exclusive: [["model", "caption-likelihood"], ["textnorm", "caption-likelihood"], ["compare", "caption-likelihood"], ["compare", "textnorm"]],
        usages: ["--caption-likelihood DECODER --data FILE.jsonl [--json]", "--model DIR --compare DIR --data FILE.jsonl [--json]"], run: evaluate)

    static func evaluate(_ args: ParsedArguments) throws {
        guard args.given("model") || args.given("caption-likelihood") else {
            throw CommandError("reward eval needs --model DIR or --caption-likelihood DECODER (see diffusion-rl reward eval --help)", usage: true)
        }
        Threads.set(args.int("threads")!)
        let url = URL(fileURLWithPath: args.string("data")!)
        let records = try PreferenceData.read(url)
        let result: [String: PerspectiveAgreement], perspectives: [String]
        if let decoder = args.string("caption-likelihood") {
            // Zero-shot: log p(prompt | image) from the captioning-pretrained decoder, as an alignment score.
            var rng = RandomGenerator(seed: 0)
            let model = try PretrainedDecoder.rewardModel(from: URL(fileURLWithPath: decoder), skipCrossAttention: false,
                                                          perspectives: ["alignment"], using: &rng)
            perspectives = ["alignment"]
            result = try PairwiseEvaluation.run(perspectives: perspectives, imageSize: model.config.imageSize, batchSize: model.batchSize,
                                                records: records, folder: url.deletingLastPathComponent()) { images, prompts in
                try model.captionLogLikelihood(images, prompts: prompts)
            }
        } else {
            let model = try LearnedReward.load(from: URL(fileURLWithPath: args.string("model")!))
            if let other = args.string("compare") {
                let baseline = try LearnedReward.load(from: URL(fileURLWithPath: other))
                let paired = try PairwiseEvaluation.compare(model: model, baseline: baseline, records: records, folder: url.deletingLastPathComponent())
                if args.flag("json") { try printJSON(paired); return }
                print("perspective   gold pairs   --model  --compare   difference (paired, SE clustered by prompt)")
                for name in model.perspectives {
                    guard let p = paired[name] else { continue }
                    print("\(name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(String(format: "%10d", p.goldPairs))    "
                          + String(format: "%.3f     %.3f     %+.3f ± %.3f", p.accuracy, p.baselineAccuracy, p.difference, p.differenceSE))
                }
                return
            }
            if let temperature = args.double("textnorm") {
                // TextNorm's r̃ in place of each prompt-dependent head's raw reward, under the head's name.
                var settings = TextNormSettings()
                settings.temperature = temperature
                settings.heads = settings.heads.filter(model.perspectives.contains)
                let textNorm = try TextNormReward(model, settings: settings)
                perspectives = settings.heads
                result = try PairwiseEvaluation.run(perspectives: perspectives, imageSize: model.config.imageSize, batchSize: model.batchSize,
                                                    records: records, folder: url.deletingLastPathComponent()) { images, prompts in
                    let scores = try textNorm.differentiableScores(images, prompts: prompts, perspectives: textNorm.perspectives)
                    let columns = textNorm.perspectives.map { scores[$0]!.values }
                    return (0..<prompts.count).flatMap { row in columns.map { $0[row] } }
                }
            } else {
                perspectives = model.perspectives
                result = try PairwiseEvaluation.run(model: model, records: records, folder: url.deletingLastPathComponent())
            }
        }
        if args.flag("json") { try printJSON(result); return }
        func show(_ value: Double?) -> String { value.map { String(format: "%.3f", $0) } ?? "  —  " }
        print("perspective   gold pairs  accuracy vs gold   vs annotators   labels  label acc.  calibration err.")
        for name in perspectives {
            guard let a = result[name] else { continue }
            print("\(name.padding(toLength: 12, withPad: " ", startingAt: 0)) \(String(format: "%10d", a.goldPairs))  "
                  + "\(show(a.goldPairAccuracy)) ± \(show(a.goldPairAccuracySE))    \(show(a.annotatorPairAccuracy))           "
                  + "\(String(format: "%6d", a.goldLabels))  \(show(a.goldLabelAccuracy))       \(show(a.calibrationError))")
        }
    }

    static let scoreCommand = Command("score", summary: "the reward model's score of one image for a prompt, per perspective", description: """
        The reward model's score of one image for a prompt, per perspective.
        """, options: [
            .text("model", "DIR", required: true, "a trained reward model"),
            .text("prompt", "\"...\"", required: true, "the caption"),
            .threads, .json,
        ], positionals: Positionals(name: "IMAGE.png", minimum: 1, maximum: 1, help: "the image"), run: score)

    static func score(_ args: ParsedArguments) throws {
        let path = args.positional[0], prompt = args.string("prompt")!, modelPath = args.string("model")!
        Threads.set(args.int("threads")!)
        // The image first: a bad file is reported before a model is loaded for it.
        let image = try PNG.read(URL(fileURLWithPath: path))
        let model = try LearnedReward.load(from: URL(fileURLWithPath: modelPath))
        guard image.width == model.config.imageSize, image.height == model.config.imageSize else {
            throw CommandError("\(path) is \(image.width)×\(image.height); the reward model takes \(model.config.imageSize)×\(model.config.imageSize)")
        }
        let scores = try model.score([image], prompts: [prompt], perspectives: model.perspectives)
        let flat = scores.mapValues { $0[0] }
        if args.flag("json") { try printJSON(flat); return }
        for name in model.perspectives { print(String(format: "%@ %.4f", name, flat[name]!)) }
    }
}
