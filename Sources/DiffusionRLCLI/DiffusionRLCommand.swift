import Engine
import World
import RunLog
import Foundation

/// Dispatches subcommands and turns every error into one line on stderr and a non-zero exit.
enum DiffusionRLCommand {
    static let help = """
    usage: diffusion-rl <command> [options]

    Reward fine-tuning of a compact latent text-to-image diffusion model, on the CPU.

    commands:
      bench engine   GFLOP/s of the tensor engine's kernels against the sgemm ceiling
      world          the embedded world: sample, judge, export, judge-eval
      pretrain       train the VAE, text encoder and UNet (the base model) with an HDF5 log
      sample         generate a grid of images for a prompt from a model folder
      finetune       reward fine-tuning (DDPO, AWR, Diffusion-DPO, ReFL, self-training), with
                     KL drift and an HDF5 log (--resume)
      eval           the gold judge's scores of a model (--compare: two models, paired)
      eval-vae       whether the judge still reads the VAE's reconstructions
      convert        rewrite a model folder's weights as F16 or F32
      inspect        summarize a run log (HDF5); --follow watches a live run
      report         one self-contained HTML page of charts, samples and events for runs
      reward         the compact LLaVA-Reward: pretrain, make-data, train, eval, score
      debug          write-log: a synthetic run log, for trying readers and crash recovery
      demo           the main job: self-training on gold fidelity from the shipped base
                     model, then every gold perspective before and after on unseen captions

    Every command takes --help. Options: --threads N sets OpenBLAS and engine threads.
    """

    static func main(_ arguments: [String]) {
        guard let command = arguments.first, command != "--help", command != "-h", command != "help" else {
            print(help)
            exit(arguments.isEmpty ? 2 : 0)
        }
        let rest = Array(arguments.dropFirst())
        do {
            switch command {
            case "bench": try BenchCommand.run(rest)
            case "demo": try DemoCommand.run(rest)
            case "world": try WorldCommand.run(rest)
            case "inspect": try InspectCommand.run(rest)
            case "report": try ReportCommand.run(rest)
            case "pretrain": try PretrainCommand.run(rest)
            case "sample": try PretrainCommand.sample(rest)
            case "finetune": try FinetuneCommand.run(rest)
            case "eval": try EvalCommand.run(rest)
            case "eval-vae": try EvalCommand.vae(rest)
            case "convert": try PretrainCommand.convert(rest)
            case "reward": try RewardCommand.run(rest)
            case "debug": try DebugCommand.run(rest)
            default: throw CommandError("unknown command '\(command)' (see diffusion-rl --help)", usage: true)
            }
        } catch let error as CaptionError {
            FileHandle.standardError.write(Data("diffusion-rl: \(error.description)\n".utf8))
            exit(1)
        } catch let error as ConfigLoader.ConfigError {
            FileHandle.standardError.write(Data("diffusion-rl: \(error.description)\n".utf8))
            exit(1)
        } catch let error as HDF5Error {
            FileHandle.standardError.write(Data("diffusion-rl: \(error.description)\n".utf8))
            exit(1)
        } catch let error as CommandError {
            FileHandle.standardError.write(Data("diffusion-rl: \(error.description)\n".utf8))
            exit(error.isUsage ? 2 : 1)
        } catch {
            FileHandle.standardError.write(Data("diffusion-rl: \(error)\n".utf8))
            exit(1)
        }
    }
}
