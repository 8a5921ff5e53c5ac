import Distributed
import Engine
import Foundation
import RewardModel
import Rewards
import RL
import RunLog

/// `diffusion-rl finetune`: reward fine-tuning of a model folder with any registered objective.
enum FinetuneCommand {
    static let command = Command("finetune", summary: "reward fine-tuning (DDPO, AWR, Diffusion-DPO, ReFL, self-training, DiffusionNFT) with KL drift and an HDF5 log",
                                 description: """
        Fine-tunes the config's model (default Models/base) from rewards. Each epoch samples prompts ×
        images as trajectories (DDIM with η, classifier-free guidance), scores them with the reward
        composition (perspectives of the gold judge, compressibility, brightness, and with rewardModel
        set a trained reward model's heads as proxy_<head> and their confidence-normalized versions,
        TextNorm, as proxy_textnorm_<head>), and hands them to the config's
        "objective", which updates the UNet (LoRA on attention by default):
          ppo, reinforce       DDPO-IS / DDPO-SF on the trajectories' log-probabilities
          advantageWeighted    AWR/RWR: the guided denoising loss, weighted by exp(A/τ)
          diffusionDPO         online Diffusion-DPO on pairs of a prompt's images
          refl                 ReFL/DRaFT-K: a reward model's gradient through the last K steps
          selfTraining         filtered self-training (RAFT/ReST): the pretraining loss on the kept
                               samples (top k per prompt, a threshold, or reward weights), mixed
                               with pretraining data
          diffusionNFT         DiffusionNFT: the ε-loss toward each sample's successes and away
                               from its failures (implicit positive and negative policies)
        The last five have settings objects of the same name. "trainTextEncoder": true trains
        the text encoder beside the UNet (full fine-tuning). Logs the resolved config, per-epoch
        metrics (reward per perspective, gold scores, KL drift to the base model, the objective's
        figures, timings), per-sample rows, evaluation grids and checkpoints to DIR/run.h5; writes
        the fine-tuned model to DIR/model at the end (LoRA merged, unless "loraTimestepRange" limits
        it to some timesteps: then it stays apart, in unet_lora.safetensors). Every config key is
        optional; an unknown key is an error. Progress goes to stderr.

        With --gradient-noise N it trains nothing: it draws N independent sampling epochs at the
        starting parameters, takes the policy gradient of each (all samples, every trained step) and
        prints how alike they are — the mean pairwise cosine c, n·(1 − c)/c samples for an estimate
        whose signal equals its noise, and each trained step's share of the gradient's magnitude.

        Under mpirun (mpirun -np N diffusion-rl finetune ... --threads 1 on one machine) the run is
        data-parallel, for every objective: each rank samples and scores its share of every
        epoch and trains its rows of every batch, gradients are summed with one all-reduce per
        step, and rank 0 writes the log, checkpoints and model; the result is the one-process
        run's, up to summation order. A rank that dies takes the job down (mpirun names it);
        --resume reads the last checkpoint on every rank, so the run folder must be on a file
        system all ranks see. --workers N does the same inside one process, N threads as ranks
        (diffusion-rl finetune ... --workers 2 --threads 1 on two cores).
        """, options: [
            .text("config", "FILE.json", "the fine-tuning config (default: every key's default)"),
            .text("out", "DIR", "the run folder (required unless --gradient-noise)"),
            .flag("force", "replace an existing run in DIR"),
            .flag("resume", "continue a stopped run in DIR from its last checkpoint (same config)"),
            .integer("epochs", minimum: 1, "override the config's epochs"),
            .integer("seed", minimum: 0, "override the config's seed"),
            .threadsOverride,
            .workers,
            .integer("gradient-noise", minimum: 2, "measure the policy gradient's noise over N epochs instead of training"),
            .json,
        ], exclusive: [["force", "resume"], ["gradient-noise", "out"]],
        usages: ["--gradient-noise N [--config FILE.json] [--threads N] [--json]"], run: run)

    /// The config file's settings (or the defaults) with the command line's overrides.
    static func config(_ args: ParsedArguments) throws -> FineTuningConfig {
        var config = FineTuningConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(FineTuningConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        config.threads = args.int("threads") ?? config.threads
        config.epochs = args.int("epochs") ?? config.epochs
        config.seed = args.int("seed").map(UInt64.init) ?? config.seed
        return config
    }

    static func run(_ args: ParsedArguments) throws {
        if args.given("gradient-noise") { try gradientNoise(args); return }
        guard let out = args.string("out") else { throw CommandError("finetune needs --out DIR (see diffusion-rl finetune --help)", usage: true) }
        try run(config: try config(args), output: URL(fileURLWithPath: out), force: args.flag("force"), resume: args.flag("resume"),
                workers: args.int("workers")!)
    }

    /// `--gradient-noise N`: the policy gradient's noise at the config's starting parameters.
    static func gradientNoise(_ args: ParsedArguments) throws {
        guard try currentCommunicator().size == 1 else { throw CommandError("--gradient-noise runs on one process; start it without mpirun") }
        var config = try config(args)
        config.evaluation.prompts = 0
        let estimates = args.int("gradient-noise")!
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gradient-noise-\(UUID())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let trainer = try FineTuningTrainer(config: config, output: scratch, commandLine: CommandLine.arguments.joined(separator: " "),
                                      rewardFunctions: try rewardFunctions(config))
        let report = try trainer.gradientNoise(estimates: estimates) { progress("  \($0)") }
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

    static func rewardFunctions(_ config: FineTuningConfig) throws -> [any RewardFunction] {
        try availableRewardFunctions(rewardModel: config.rewardModel, textNorm: config.textNorm)
    }

    /// Runs (or resumes) a fine-tuning job with progress lines.
    static func run(config: FineTuningConfig, output: URL, force: Bool, resume: Bool, workers: Int = 1) throws {
        StopSignal.install()
        try onEveryRank(workers: workers, threads: config.threads) { communicator in
            // Rank 0 speaks for the job.
            let say: (String) -> Void = communicator.rank == 0 ? progress : { _ in }
            let trainer = try FineTuningTrainer(config: config, output: output, commandLine: CommandLine.arguments.joined(separator: " "),
                                                overwrite: force, resume: resume, rewardFunctions: try rewardFunctions(config), communicator: communicator)
            for note in trainer.notes { say("finetune: \(note)") }
            say("finetune: \(config.objective) on \(config.rewards.active.joined(separator: " + ")), \(config.epochs) epochs of "
                  + "\(config.promptsPerEpoch) prompts × \(config.imagesPerPrompt) images, \(trainer.parameterCount) trainable parameters"
                  + " (\(config.trainedParametersDescription))" + (communicator.size > 1 ? ", \(communicator.size) ranks" : "")
                  + "; log \(output.appendingPathComponent("run.h5").path)")
            try trainer.run(progress: say)
            try trainer.close()
            if communicator.rank == 0 { print("finetune: wrote \(output.appendingPathComponent("model").path)") }
        }
    }
}
