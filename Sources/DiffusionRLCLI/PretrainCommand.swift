import Diffusion
import Engine
import Foundation
import Pretraining
import RunLog

/// `diffusion-rl pretrain`: the base model.
enum PretrainCommand {
    static let command = Command("pretrain", summary: "train the VAE, text encoder and UNet (the base model) with an HDF5 log", description: """
        Trains the VAE on the world's training split (or the config's dataFolder: PNGs with
        captions.jsonl), then the text encoder and UNet on the frozen VAE's latents, with progress
        on stderr. Writes DIR/run.h5 (HDF5 log with the resolved config) and DIR/model (config.json,
        tokenizer.json, safetensors). Every config key is optional; an unknown key is an error.
        Every checkpointEvery steps a resumable checkpoint goes to DIR/checkpoints; --resume
        continues a stopped or killed run from the newest (same config; the result equals an
        uninterrupted run's).
        """, options: [
            .text("config", "FILE.json", "the pretraining config (default: every key's default)"),
            .threadsOverride,
        ] + Option.runFolder, exclusive: [["force", "resume"]], run: run)

    static func run(_ args: ParsedArguments) throws {
        var config = PretrainConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(PretrainConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        config.threads = args.int("threads") ?? config.threads
        StopSignal.install()
        let trainer = try Pretrainer(config: config, output: URL(fileURLWithPath: args.string("out")!),
                                     commandLine: CommandLine.arguments.joined(separator: " "), overwrite: args.flag("force"),
                                     resume: args.flag("resume"))
        progress("pretrain: \(trainer.model.unet.parameterCount) UNet parameters, \(trainer.model.vae.parameterCount) VAE, "
                 + "\(trainer.model.textEncoder.parameterCount) text encoder; vocabulary of \(trainer.model.tokenizer.count)")
        try trainer.run(progress: progress)
    }
}
