import Engine
import Foundation
import RewardModel
import Rewards
import RL
import RunLog

/// `diffusion-rl finetune`: DDPO fine-tuning of a model folder from rewards.
enum FinetuneCommand {
    static let help = """
    usage: diffusion-rl finetune [--config FILE.json] --out DIR [--force | --resume] [--threads N] [--epochs N]

    Fine-tunes the config's model (default Models/base) with DDPO: each epoch samples prompts ×
    images as trajectories (DDIM with η, classifier-free guidance), scores them with the reward
    composition (perspectives of the gold judge, compressibility, and with rewardModel set a
    trained reward model's heads as proxy_<head>), and updates the UNet (LoRA on
    attention by default) with PPO-clip or REINFORCE. Logs the resolved config, per-epoch metrics
    (reward per perspective, gold scores, KL drift to the base model, loss, clip fraction,
    approx-KL, grad norm, timings), per-sample rows, evaluation grids and checkpoints to DIR/run.h5;
    writes the fine-tuned model to DIR/model at the end. Every config key is optional; an unknown
    key is an error. --resume continues a stopped run from its last checkpoint (same config);
    --force replaces an existing run.
    """

    static func run(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["config", "out", "threads", "epochs"], flagNames: ["force", "resume", "help"])
        if args.flag("help") { print(help); return }
        guard let out = args.string("out") else { throw CommandError("finetune needs --out DIR", usage: true) }
        guard !(args.flag("force") && args.flag("resume")) else { throw CommandError("--force and --resume exclude each other", usage: true) }
        var config = DDPOConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(DDPOConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        if args.string("threads") != nil { config.threads = try args.int("threads", default: 2) }
        if args.string("epochs") != nil { config.epochs = try args.int("epochs", default: config.epochs) }
        try run(config: config, output: URL(fileURLWithPath: out), force: args.flag("force"), resume: args.flag("resume"))
    }

    /// Runs (or resumes) a fine-tuning job with progress lines.
    static func run(config: DDPOConfig, output: URL, force: Bool, resume: Bool) throws {
        StopSignal.install()
        var functions: [any RewardFunction] = [GoldJudgeReward(), CompressibilityReward()]
        if !config.rewardModel.isEmpty {
            functions.insert(PrefixedReward(prefix: "proxy_", try LearnedReward.load(from: URL(fileURLWithPath: config.rewardModel))), at: 0)
        }
        let trainer = try DDPOTrainer(config: config, output: output, commandLine: CommandLine.arguments.joined(separator: " "),
                                      overwrite: force, resume: resume, rewardFunctions: functions)
        for note in trainer.notes { print("finetune: \(note)") }
        print("finetune: \(config.loss.rawValue) on \(config.rewards.active.joined(separator: " + ")), \(config.epochs) epochs of "
              + "\(config.promptsPerEpoch) prompts × \(config.imagesPerPrompt) images, \(trainer.parameterCount) trainable parameters"
              + (config.loraRank > 0 ? " (LoRA rank \(config.loraRank))" : "") + "; log \(output.appendingPathComponent("run.h5").path)")
        try trainer.run(progress: { print($0); fflush(stdout) })
        try trainer.close()
        print("finetune: wrote \(output.appendingPathComponent("model").path)")
    }
}
