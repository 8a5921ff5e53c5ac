import Diffusion
import Engine
import Foundation
import Images
import RewardModel
import RunLog
import World

/// `diffusion-rl reward ...`: the compact LLaVA-Reward — pretrain its decoder, make preference
/// data, train the reward heads, evaluate, score.
enum RewardCommand {
    static let help = """
    usage: diffusion-rl reward <pretrain|make-data|train|eval|score> [options]

      pretrain    caption the world's images to pretrain the multimodal decoder (--config, --out)
      make-data   images from a diffusion model plus rendered scenes, labeled per aspect by
                  simulated annotators (paired: alignment, fidelity, overall; unpaired: safety)
      train       Bradley–Terry / BCE training of one value head per perspective, SkipCA on or off
      eval        pairwise accuracy per perspective against the gold judge and the annotators,
                  label accuracy, calibration (--json)
      score       rewards of one image for a prompt

    Every subcommand takes --help.
    """

    static func run(_ arguments: [String]) throws {
        guard let sub = arguments.first, sub != "--help", sub != "-h" else { print(help); return }
        let rest = Array(arguments.dropFirst())
        switch sub {
        case "pretrain": try pretrain(rest)
        case "make-data": try makeData(rest)
        case "train": try train(rest)
        case "eval": try evaluate(rest)
        case "score": try score(rest)
        default: throw CommandError("unknown reward subcommand '\(sub)' (see diffusion-rl reward --help)", usage: true)
        }
    }

    static let pretrainHelp = """
    usage: diffusion-rl reward pretrain [--config FILE.json] --out DIR [--force | --resume] [--threads N]

    Pretrains the reward model's multimodal decoder (ViT, projector, causal decoder) by captioning
    the world's training images. Writes DIR/run.h5 and DIR/decoder (config.json, tokenizer.json,
    decoder.safetensors). Config keys: model (RewardModelConfig), seed, steps, batch,
    learningRate, warmupSteps, gradientClip, hazardRate, logEvery, checkpointEvery, threads,
    initialDecoder (a decoder folder to continue from; its model and tokenizer replace `model`);
    unknown keys are errors. Every checkpointEvery steps a resumable checkpoint goes to
    DIR/checkpoints; --resume continues a stopped or killed run from the newest (same config, same
    result); --force replaces an existing run.
    """

    static func pretrain(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["config", "out", "threads"], flagNames: ["force", "resume", "help"])
        if args.flag("help") { print(pretrainHelp); return }
        guard let out = args.string("out") else { throw CommandError("reward pretrain needs --out DIR", usage: true) }
        guard !(args.flag("force") && args.flag("resume")) else { throw CommandError("--force and --resume exclude each other", usage: true) }
        var config = CaptionPretrainConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(CaptionPretrainConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        config.threads = try args.int("threads", default: config.threads)
        StopSignal.install()
        let trainer = try CaptionPretrainer(config: config, output: URL(fileURLWithPath: out),
                                            commandLine: CommandLine.arguments.joined(separator: " "), overwrite: args.flag("force"),
                                            resume: args.flag("resume"))
        try trainer.run { print($0); fflush(stdout) }
        let world = WorldGenerator(seed: 1)
        let scenes = world.scenes(.validation, count: 4)
        let captions = try CaptionPretrainer.caption(trainer.decoder, tokenizer: trainer.tokenizer,
                                                     images: ImageTensors.tensor(scenes.map(Renderer(size: config.model.imageSize).render)))
        for (scene, caption) in zip(scenes, captions) { print("  validation '\(scene.caption)' → captioned '\(caption)'") }
    }

    static let makeDataHelp = """
    usage: diffusion-rl reward make-data --model DIR --out DIR2 [--config FILE.json] [--split train|validation|heldout]
                                         [--prompts 256] [--first 0] [--noise 0.1] [--saturation-bias 0.1] [--seed 0] [--force]
           diffusion-rl reward make-data --relabel DIR/data.jsonl --out NAME.jsonl [--noise ...] [--saturation-bias ...]

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
    """

    static func makeData(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["model", "out", "config", "split", "prompts", "first", "noise",
                                                          "saturation-bias", "seed", "threads", "relabel"], flagNames: ["force", "help"])
        if args.flag("help") { print(makeDataHelp); return }
        guard let out = args.string("out") else { throw CommandError("reward make-data needs --out", usage: true) }
        var settings = PreferenceDataSettings()
        if let path = args.string("config") {
            settings = try ConfigLoader.load(PreferenceDataSettings.self, from: URL(fileURLWithPath: path), defaults: settings)
        }
        if let name = args.string("split") {
            guard let split = Split(rawValue: name) else { throw CommandError("--split must be train, validation or heldout", usage: true) }
            settings.split = split
        }
        settings.prompts = try args.int("prompts", default: settings.prompts)
        settings.firstPrompt = try args.int("first", default: settings.firstPrompt)
        settings.seed = UInt64(try args.int("seed", default: Int(settings.seed)))
        func number(_ name: String, _ value: Double) throws -> Double {
            guard let text = args.string(name) else { return value }
            guard let parsed = Double(text), parsed >= 0 else { throw CommandError("--\(name) expects a number ≥ 0, got '\(text)'", usage: true) }
            return parsed
        }
        settings.annotator.noise = try number("noise", settings.annotator.noise)
        settings.annotator.saturationBias = try number("saturation-bias", settings.annotator.saturationBias)
        guard settings.prompts >= 1 else { throw CommandError("--prompts must be at least 1", usage: true) }
        Threads.set(try args.int("threads", default: 2))
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
        guard let modelPath = args.string("model") else { throw CommandError("reward make-data needs --model DIR (or --relabel)", usage: true) }
        let folder = URL(fileURLWithPath: out)
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("data.jsonl").path) && !args.flag("force") {
            throw CommandError("\(folder.path) already holds preference data; pass --force to overwrite")
        }
        if args.flag("force") { try? FileManager.default.removeItem(at: folder.appendingPathComponent("images")) }
        let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: modelPath))
        let records = try PreferenceDataMaker(settings: settings).make(model: model, folder: folder) { print($0); fflush(stdout) }
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

    static let trainHelp = """
    usage: diffusion-rl reward train [--config FILE.json] --out DIR [--decoder DIR] [--data FILE.jsonl]
                                     [--perspectives alignment,fidelity,safety,overall] [--no-skip-ca] [--dual-encoder]
                                     [--force | --resume] [--threads N]

    Trains the reward model from a captioning-pretrained decoder on preference JSONL: one value
    head per perspective, Bradley–Terry on pairs and BCE on labeled images, LoRA on the decoder's
    attention and MLP projections, SkipCA unless --no-skip-ca. --dual-encoder trains the CLIP-style
    baseline instead (same vision encoder; image and text embeddings scored by a dot product).
    Writes DIR/run.h5 and DIR/model; after every epoch a resumable checkpoint goes to
    DIR/checkpoints, and --resume continues a stopped or killed run from the newest (same config,
    same result).
    Config keys: PreferenceTrainConfig (decoder, data, perspectives, skipCrossAttention, architecture,
    captionLikelihoodPerspectives (their reward adds the decoder's log p(prompt | image)), loraRank,
    trainVision, epochs, promptsPerBatch, learningRate, warmupSteps, gradientClip, margin, temperature, seed,
    logEvery, threads).
    """

    static func train(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["config", "out", "decoder", "data", "perspectives", "threads"],
                                 flagNames: ["no-skip-ca", "dual-encoder", "force", "resume", "help"])
        if args.flag("help") { print(trainHelp); return }
        guard let out = args.string("out") else { throw CommandError("reward train needs --out DIR", usage: true) }
        guard !(args.flag("force") && args.flag("resume")) else { throw CommandError("--force and --resume exclude each other", usage: true) }
        var config = PreferenceTrainConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(PreferenceTrainConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        if let decoder = args.string("decoder") { config.decoder = decoder }
        if let data = args.string("data") { config.data = data }
        if let names = args.string("perspectives") { config.perspectives = names.split(separator: ",").map(String.init) }
        if args.flag("no-skip-ca") { config.skipCrossAttention = false }
        if args.flag("dual-encoder") { config.architecture = .dualEncoder }
        config.threads = try args.int("threads", default: config.threads)
        let folder = URL(fileURLWithPath: out)
        if FileManager.default.fileExists(atPath: folder.appendingPathComponent("model").path) && !args.flag("force") {
            throw CommandError("\(folder.path) already holds a trained reward model; pass --force to overwrite")
        }
        StopSignal.install()
        let trainer = try PreferenceTrainer(config: config, output: folder, commandLine: CommandLine.arguments.joined(separator: " "),
                                            overwrite: args.flag("force"), resume: args.flag("resume"))
        try trainer.run { print($0); fflush(stdout) }
    }

    static let evalHelp = """
    usage: diffusion-rl reward eval --model DIR --data FILE.jsonl [--threads 2] [--json]
           diffusion-rl reward eval --caption-likelihood DECODER --data FILE.jsonl [--json]

    Scores every image of held-out preference data and prints, per perspective: pairwise accuracy
    against the gold judge's strict preferences (± standard error) and against the annotators,
    label accuracy (reward > 0 = good) and expected calibration error. With --caption-likelihood,
    the score is log p(prompt | image) from a captioning-pretrained decoder (`reward pretrain`
    writes OUT/decoder), evaluated as a zero-shot alignment reward.
    """

    static func evaluate(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["model", "data", "threads", "caption-likelihood"], flagNames: ["json", "help"])
        if args.flag("help") { print(evalHelp); return }
        guard let data = args.string("data"), (args.string("model") == nil) != (args.string("caption-likelihood") == nil) else {
            throw CommandError("reward eval needs --data FILE.jsonl and either --model DIR or --caption-likelihood DECODER", usage: true)
        }
        Threads.set(try args.int("threads", default: 2))
        let url = URL(fileURLWithPath: data)
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
            perspectives = model.perspectives
            result = try PairwiseEvaluation.run(model: model, records: records, folder: url.deletingLastPathComponent())
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

    static let scoreHelp = """
    usage: diffusion-rl reward score IMAGE.png --prompt "..." --model DIR [--json]

    The reward model's score of one image for a prompt, per perspective.
    """

    static func score(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["model", "prompt", "threads"], flagNames: ["json", "help"])
        if args.flag("help") { print(scoreHelp); return }
        guard let path = args.positional.first, let prompt = args.string("prompt"), let modelPath = args.string("model") else {
            throw CommandError("reward score needs IMAGE.png, --prompt and --model DIR", usage: true)
        }
        Threads.set(try args.int("threads", default: 2))
        let model = try LearnedReward.load(from: URL(fileURLWithPath: modelPath))
        let image = try PNG.read(URL(fileURLWithPath: path))
        guard image.width == model.config.imageSize, image.height == model.config.imageSize else {
            throw CommandError("\(path) is \(image.width)×\(image.height); the reward model takes \(model.config.imageSize)×\(model.config.imageSize)")
        }
        let scores = try model.score([image], prompts: [prompt], perspectives: model.perspectives)
        let flat = scores.mapValues { $0[0] }
        if args.flag("json") { try printJSON(flat); return }
        for name in model.perspectives { print(String(format: "%@ %.4f", name, flat[name]!)) }
    }
}
