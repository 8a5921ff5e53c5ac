import Diffusion
import Engine
import Foundation
import Pretraining
import Images
import RunLog

/// `diffusion-rl pretrain` and `diffusion-rl sample`.
enum PretrainCommand {
    static let help = """
    usage: diffusion-rl pretrain [--config FILE.json] --out DIR [--force | --resume] [--threads N]

    Trains the VAE on the world's training split (or the config's dataFolder: PNGs with
    captions.jsonl), then the text encoder and UNet on the frozen VAE's latents, with progress
    lines. Writes DIR/run.h5 (HDF5 log with the resolved config) and DIR/model (config.json,
    tokenizer.json, safetensors). Every config key is optional; an unknown key is an error.
    Every checkpointEvery steps a resumable checkpoint goes to DIR/checkpoints; --resume continues
    a stopped or killed run from the newest (same config; the result equals an uninterrupted
    run's); --force replaces an existing run.
    """

    static func run(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["config", "out", "threads"], flagNames: ["force", "resume", "help"])
        if args.flag("help") { print(help); return }
        guard !(args.flag("force") && args.flag("resume")) else { throw CommandError("--force and --resume exclude each other", usage: true) }
        guard let out = args.string("out") else { throw CommandError("pretrain needs --out DIR", usage: true) }
        var config = PretrainConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(PretrainConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        if let threads = args.string("threads") {
            guard let n = Int(threads), n >= 1 else { throw CommandError("--threads expects a whole number ≥ 1", usage: true) }
            config.threads = n
        }
        StopSignal.install()
        let trainer = try Pretrainer(config: config, output: URL(fileURLWithPath: out),
                                     commandLine: CommandLine.arguments.joined(separator: " "), overwrite: args.flag("force"),
                                     resume: args.flag("resume"))
        print("pretrain: \(trainer.model.unet.parameterCount) UNet parameters, \(trainer.model.vae.parameterCount) VAE, "
              + "\(trainer.model.textEncoder.parameterCount) text encoder; vocabulary of \(trainer.model.tokenizer.count)")
        try trainer.run { line in print(line); fflush(stdout) }
    }

    static let sampleHelp = """
    usage: diffusion-rl sample --model DIR --prompt "..." [--n 16] [--steps 20] [--eta 1] [--guidance 5] [--seed 0] --out grid.png

    Generates n images of the prompt with DDIM (η) and classifier-free guidance, as a grid PNG.
    """

    static func sample(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["model", "prompt", "n", "steps", "eta", "guidance", "seed", "out", "threads"],
                                 flagNames: ["help"])
        if args.flag("help") { print(sampleHelp); return }
        guard let modelPath = args.string("model"), let prompt = args.string("prompt"), let out = args.string("out") else {
            throw CommandError("sample needs --model DIR, --prompt and --out (see --help)", usage: true)
        }
        Threads.set(try args.int("threads", default: 2))
        var settings = SamplingSettings()
        settings.steps = try args.int("steps", default: 20)
        settings.seed = UInt64(try args.int("seed", default: 0))
        func number(_ name: String, _ value: Double) throws -> Double {
            guard let text = args.string(name) else { return value }
            guard let parsed = Double(text) else { throw CommandError("--\(name) expects a number, got '\(text)'", usage: true) }
            return parsed
        }
        settings.eta = try number("eta", 1)
        settings.guidance = try number("guidance", 5)
        let n = try args.int("n", default: 16)
        let model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: modelPath))
        let images = try model.generate([String](repeating: prompt, count: n), settings: settings)
        try PNG.write(imageGrid(images, columns: Int(Double(n).squareRoot().rounded(.up))), to: URL(fileURLWithPath: out))
        print("wrote \(out) (\(n) samples of '\(prompt)')")
    }

    static let convertHelp = """
    usage: diffusion-rl convert --model DIR --out DIR2 [--dtype f16|f32] [--force]

    Rewrites a model folder with its weights stored as F16 (half the size; how the shipped base
    model is stored) or F32.
    """

    static func convert(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["model", "out", "dtype"], flagNames: ["force", "help"])
        if args.flag("help") { print(convertHelp); return }
        guard let input = args.string("model"), let out = args.string("out") else {
            throw CommandError("convert needs --model DIR and --out DIR2", usage: true)
        }
        let stored: Safetensors.StoredType
        switch args.string("dtype") ?? "f16" {
        case "f16": stored = .f16
        case "f32": stored = .f32
        case let other: throw CommandError("--dtype must be f16 or f32, got '\(other)'", usage: true)
        }
        let target = URL(fileURLWithPath: out)
        if FileManager.default.fileExists(atPath: target.appendingPathComponent("config.json").path) && !args.flag("force") {
            throw CommandError("\(target.path) already holds a model; pass --force to overwrite")
        }
        try LatentDiffusionModel.load(from: URL(fileURLWithPath: input)).save(to: target, as: stored)
        print("wrote \(target.path) (\(stored.rawValue))")
    }
}
