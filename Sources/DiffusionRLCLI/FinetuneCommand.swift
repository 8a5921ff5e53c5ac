import Engine
import Foundation
import RewardModel
import Rewards
import RL
import RunLog

/// `diffusion-rl finetune`: DDPO fine-tuning of a model folder from rewards.
enum FinetuneCommand {
    static let help = """
    usage: diffusion-rl finetune [--config FILE.json] --out DIR [--force | --resume] [--threads N] [--epochs N] [--seed N]

    Fine-tunes the config's model (default Models/base) from rewards. Each epoch samples prompts ×
    images as trajectories (DDIM with η, classifier-free guidance), scores them with the reward
    composition (perspectives of the gold judge, compressibility, brightness, and with rewardModel
    set a trained reward model's heads as proxy_<head>), and hands them to the config's
    "objective", which updates the UNet (LoRA on attention by default):
      ppo, reinforce       DDPO-IS / DDPO-SF on the trajectories' log-probabilities
      advantageWeighted    AWR/RWR: the guided denoising loss, weighted by exp(A/τ)
      diffusionDPO         online Diffusion-DPO on pairs of a prompt's images
      refl                 ReFL/DRaFT-K: a reward model's gradient through the last K steps
      selfTraining         filtered self-training (RAFT/ReST): the pretraining loss on the kept
                           samples (top k per prompt, a threshold, or reward weights), mixed
                           with pretraining data
    The last four have settings objects of the same name. Logs the resolved config,
    per-epoch metrics (reward per perspective, gold scores, KL drift to the base model, the
    objective's figures, timings), per-sample rows, evaluation grids and checkpoints to
    DIR/run.h5; writes the fine-tuned model to DIR/model at the end (LoRA merged, unless
    "loraTimestepRange" limits it to some timesteps: then it stays apart, in
    unet_lora.safetensors). Every config key is optional; an unknown key is an error. --resume
    continues a stopped run from its last checkpoint (same config); --force replaces an
    existing run. --threads, --epochs and --seed override the config's.

    usage: diffusion-rl finetune [--config FILE.json] --gradient-noise N [--threads N] [--json]

    Trains nothing: draws N independent sampling epochs at the starting parameters, takes the
    policy gradient of each (all samples, every trained step) and prints how alike they are —
    the mean pairwise cosine c, n·(1 − c)/c samples for an estimate whose signal equals its noise,
    and each trained step's share of the gradient's magnitude.
    """

    static func run(_ arguments: [String]) throws {
        let args = try Arguments(arguments, optionNames: ["config", "out", "threads", "epochs", "seed", "gradient-noise"],
                                 flagNames: ["force", "resume", "help", "json"])
        if args.flag("help") { print(help); return }
        if args.string("gradient-noise") != nil { try gradientNoise(args); return }
        guard let out = args.string("out") else { throw CommandError("finetune needs --out DIR", usage: true) }
        guard !(args.flag("force") && args.flag("resume")) else { throw CommandError("--force and --resume exclude each other", usage: true) }
        var config = FineTuningConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(FineTuningConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        if args.string("threads") != nil { config.threads = try args.int("threads", default: 2) }
        if args.string("epochs") != nil { config.epochs = try args.int("epochs", default: config.epochs) }
        if args.string("seed") != nil {
            let seed = try args.int("seed", default: 0)
            guard seed >= 0 else { throw CommandError("--seed expects a whole number ≥ 0, got \(seed)", usage: true) }
            config.seed = UInt64(seed)
        }
        try run(config: config, output: URL(fileURLWithPath: out), force: args.flag("force"), resume: args.flag("resume"))
    }

    /// `--gradient-noise N`: the policy gradient's noise at the config's starting parameters.
    static func gradientNoise(_ args: Arguments) throws {
        var config = FineTuningConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(FineTuningConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        if args.string("threads") != nil { config.threads = try args.int("threads", default: 2) }
        config.evaluation.prompts = 0
        let estimates = try args.int("gradient-noise", default: 6)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gradient-noise-\(UUID())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let trainer = try FineTuningTrainer(config: config, output: scratch, commandLine: CommandLine.arguments.joined(separator: " "),
                                      rewardFunctions: try rewardFunctions(config))
        let report = try trainer.gradientNoise(estimates: estimates) { FileHandle.standardError.write(Data("  \($0)\n".utf8)) }
        try trainer.close()
        if args.flag("json") { try printJSON(report); return }
        print(String(format: "policy gradient over %d estimates of %d samples: mean cosine %.3f ± %.3f, |mean| / mean |ĝ| %.3f",
                     report.estimates, report.samplesPerEstimate, report.meanCosine, report.cosineSE, report.meanNormRatio))
        if let n = report.samplesForUnitSNR {
            print(String(format: "samples for an estimate with signal = noise: %.0f", n))
        } else {
            print("no signal seen: the estimates are no more alike than random directions")
        }
        let total = report.stepGradientNorms.reduce(0, +)
        print("step  |∇| of one batch  share")
        for (step, value) in zip(report.steps, report.stepGradientNorms) {
            print(String(format: "%4d  %15.4g  %5.1f%%", step, value, 100 * value / max(total, 1e-30)))
        }
    }

    /// The built-in rewards (gold judge, compressibility, brightness), and with `rewardModel` set its heads as proxy_<head>.
    static func rewardFunctions(_ config: FineTuningConfig) throws -> [any RewardFunction] {
        var functions = builtInRewardFunctions
        if !config.rewardModel.isEmpty {
            functions.insert(PrefixedReward(prefix: "proxy_", try LearnedReward.load(from: URL(fileURLWithPath: config.rewardModel))), at: 0)
        }
        return functions
    }

    /// Runs (or resumes) a fine-tuning job with progress lines.
    static func run(config: FineTuningConfig, output: URL, force: Bool, resume: Bool) throws {
        StopSignal.install()
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: CommandLine.arguments.joined(separator: " "),
                                      overwrite: force, resume: resume, rewardFunctions: try rewardFunctions(config))
        for note in trainer.notes { print("finetune: \(note)") }
        print("finetune: \(config.objective) on \(config.rewards.active.joined(separator: " + ")), \(config.epochs) epochs of "
              + "\(config.promptsPerEpoch) prompts × \(config.imagesPerPrompt) images, \(trainer.parameterCount) trainable parameters"
              + " (\(config.trainedParametersDescription)); log \(output.appendingPathComponent("run.h5").path)")
        try trainer.run(progress: { print($0); fflush(stdout) })
        try trainer.close()
        print("finetune: wrote \(output.appendingPathComponent("model").path)")
    }
}
