import Diffusion
import Distributed
import Engine
import Foundation
import RewardModel
import RL

/// `diffusion-rl bench engine`.
enum BenchCommand {
    static let batchOption = Option.integer("batch", default: 32, minimum: 1, "batch size")

    static let command = Command("bench", summary: "GFLOP/s of the engine, the UNet, a fine-tuning epoch and the reward model against the sgemm ceiling",
                                 description: "Progress goes to stderr, the table (or --json) to stdout.", subcommands: [
        Command("engine", summary: "the engine's kernels against the sgemm ceiling", description: """
            GFLOP/s of the engine's kernels at the default UNet's shapes (conv2d forward and backward,
            attention forward and backward, group norm + SiLU), each next to the sgemm ceiling measured
            in the same run (a 1024×1024×1024 GEMM), as a fraction of it. Convolutions are counted as
            the direct convolution's FLOPs whatever the algorithm, so where Winograd runs (3×3, stride 1:
            2.25× fewer multiplications) GFLOP/s is an effective rate and may pass the ceiling; the same
            holds for bench unet and bench ddpo.
            """, options: [.threads, batchOption, .json], run: engine),
        Command("unet", summary: "the default UNet's forward and backward", description: """
            Milliseconds of the default 3.15 M-parameter UNet's forward and forward + backward at batch
            8 and 32 (8×8×4 latents, 16 context tokens), the FLOPs of its GEMM-backed ops, GFLOP/s, and
            the fraction of the sgemm ceiling measured in the same run. --profile instead prints where
            forward + backward at batch 32 (or --batch) spends its time, by op and pass. Under mpirun (mpirun -np 2
            diffusion-rl bench unet --threads 1) each pass is data-parallel: every rank takes its rows
            of the batch through the whole network, forward + backward ends with the all-reduce of the
            gradients, and the ceiling is the ranks' sgemm ceilings measured at once, summed.
            --workers N does the same inside one process, N threads as ranks (--workers 2 --threads 1).
            """, options: [.threads, .workers, .flag("profile", "time by op and pass instead"),
                      .integer("batch", default: 32, minimum: 1, "the batch --profile times"), .json], run: unet),
        Command("ddpo", summary: "one sampling and one training epoch of the default fine-tuning config", description: """
            Samples per second of one sampling epoch and one training epoch at the default config (the
            shipped default UNet, 20 DDIM steps, η = 1, guidance 5, 32 samples, LoRA rank 4, training
            batch 8), their GEMM FLOPs, the share of core time inside BLAS GEMMs, GFLOP/s against
            the sgemm ceiling measured in the same run, and the peak resident memory.
            Experiments/peers/ddpo_epoch_torch.py is the same epoch in PyTorch. Under mpirun (mpirun -np 2 diffusion-rl bench ddpo
            --threads 1) the epochs are data-parallel: samples per second are the job's (FLOPs, GEMM time
            and the ceiling rank 0's), and the gradient all-reduces are counted and timed, with 20
            all-reduces each of the trained gradients' size and of the whole UNet's (full fine-tuning).
            --workers N runs the same inside one process, N threads as ranks (--workers 2 --threads 1).
            --profile also prints where each phase spends its time, by op and pass.
            """, options: [
                .text("model", "DIR", "the model (default: the config's)"),
                .text("config", "FILE.json", "a fine-tuning config"),
                .threadsOverride, .workers, .flag("profile", "also time each phase by op and pass"), .json,
            ], run: ddpo),
        Command("reward", summary: "the reward model's scoring throughput", description: """
            (image, prompt) pairs per second the reward model scores without gradients at a batch size
            (a trained model folder, or the default shape with random weights), with its FLOPs, GFLOP/s
            against the sgemm ceiling, and the share of time in GEMMs.
            """, options: [.text("model", "DIR", "a trained reward model (default: random weights)"), batchOption, .threads, .json],
            run: reward),
    ])

    static func engine(_ args: ParsedArguments) throws {
        let threads = args.int("threads")!, batch = args.int("batch")!
        let json = args.flag("json")
        if !json {
            progress("bench engine: \(threads) thread(s), batch \(batch)")
        }
        let report = try EngineBenchmark.run(threads: threads, batch: batch) { figure in
            progress("  measured \(figure.name), \(figure.shape)")
        }
        if json {
            try printJSON(report)
            return
        }
        print(String(format: "ceiling: OpenBLAS sgemm 1024³, %d thread(s): %.1f GFLOP/s (best of the two measured before and after)",
                     threads, report.ceilingGflops))
        print("kernel                    shape                                     ms   GFLOP/s  of ceiling")
        for figure in report.figures { print(row(figure)) }
    }

    static func unet(_ args: ParsedArguments) throws {
        let threads = args.int("threads")!
        guard args.flag("profile") || !args.given("batch") else {
            throw CommandError("bench unet --batch sets the batch --profile times; without --profile it measures batches 8 and 32",
                               usage: true)
        }
        if args.flag("profile") {
            guard try currentCommunicator().size == 1, args.int("workers")! == 1 else {
                throw CommandError("bench unet --profile runs in one process of one worker, not under mpirun or --workers")
            }
            let batch = args.int("batch")!
            let (entries, total) = try UNetBenchmark.profile(threads: threads, batch: batch)
            struct Profile: Encodable { var threads: Int; var batch: Int; var totalMilliseconds: Double; var entries: [OpProfiler.Entry] }
            if args.flag("json") {
                try printJSON(Profile(threads: threads, batch: batch, totalMilliseconds: total, entries: entries))
                return
            }
            print(String(format: "default UNet forward + backward at batch %d, %d thread(s): %.1f ms per pass", batch, threads, total))
            printProfile(entries, totalMilliseconds: total)
            return
        }
        var first: UNetBenchmark.Report?
        try onEveryRank(workers: args.int("workers")!, threads: threads) { communicator in
            let report = try UNetBenchmark.run(threads: threads, communicator: communicator) { line in
                if communicator.rank == 0 { progress("  \(line)") }
            }
            if communicator.rank == 0 { first = report }
        }
        guard let report = first else { return }
        if args.flag("json") {
            try printJSON(report)
            return
        }
        let cores = report.ranks > 1 ? String(format: "%d ranks × %d thread(s)", report.ranks, threads) : "\(threads) thread(s)"
        print(String(format: "UNet %d parameters, %d context tokens; ceiling: OpenBLAS sgemm 1024³, %@: %.1f GFLOP/s",
                     report.parameters, report.contextTokens, cores, report.ceilingGflops))
        print("batch  pass                    ms     GFLOP   GFLOP/s  of ceiling")
        for f in report.figures {
            print(String(format: "%5d  ", f.batch) + f.pass.padding(toLength: 18, withPad: " ", startingAt: 0)
                  + String(format: " %8.2f %9.3f %9.1f %9.0f%%", f.milliseconds, f.gflop, f.gflops, 100 * f.fractionOfCeiling))
        }
    }

    static func ddpo(_ args: ParsedArguments) throws {
        var config = FineTuningConfig()
        if let path = args.string("config") {
            config = try ConfigLoader.load(FineTuningConfig.self, from: URL(fileURLWithPath: path), defaults: config)
        }
        config.model = args.string("model") ?? config.model
        config.threads = args.int("threads") ?? config.threads
        // The op profiler charges time between one thread's consecutive ops.
        if args.flag("profile") && args.int("workers")! > 1 { throw CommandError("bench ddpo --profile runs with one worker") }
        var first: DDPOBenchmark.Report?
        try onEveryRank(workers: args.int("workers")!, threads: config.threads) { communicator in
            let report = try DDPOBenchmark.run(config: config, communicator: communicator, profile: args.flag("profile")) { line in
                if communicator.rank == 0 { progress("  \(line)") }
            }
            if communicator.rank == 0 { first = report }
        }
        guard let report = first else { return }
        if args.flag("json") {
            try printJSON(report)
            return
        }
        print(String(format: "DDPO epoch of %d samples, %d DDIM steps, guidance %.0f, LoRA rank %d, training batch %d; %d thread(s); ceiling: OpenBLAS sgemm 1024³ %.1f GFLOP/s",
                     report.phases[0].samples, report.steps, report.guidance, report.loraRank, report.trainBatch, report.threads, report.ceilingGflops))
        print("phase       samples/s   seconds    GFLOP   GFLOP/s  of ceiling  time in GEMM")
        for p in report.phases {
            print(p.name.padding(toLength: 10, withPad: " ", startingAt: 0)
                  + String(format: " %9.2f %9.2f %8.1f %9.1f %10.0f%% %12.0f%%", p.samplesPerSecond, p.seconds, p.gflop, p.gflops,
                           100 * p.fractionOfCeiling, 100 * p.gemmShare))
        }
        let seconds = report.phases.reduce(0) { $0 + $1.seconds }
        print(String(format: "epoch: %.2f s, %.2f samples/s; peak resident memory %@", seconds, Double(report.phases[0].samples) / seconds,
                     report.peakResidentBytes.map { String(format: "%.0f MiB", Double($0) / 1_048_576) } ?? "unknown"))
        for p in report.phases {
            guard let ops = p.ops else { continue }
            print("\n\(p.name) epoch by op (profiled):")
            printProfile(ops, totalMilliseconds: p.seconds * 1000)
        }
        guard report.ranks > 1 else { return }
        let tally = report.allreduce
        print(String(format: "%d ranks, sampling batches of %d; training: %d gradient all-reduces of %.1f KB, %.2f ms each with the wait for the slower rank (%.1f%% of the training epoch)",
                     report.ranks, report.samplingBatch, tally.calls, Double(report.allreduceFloats * 4) / 1e3,
                     1e3 * tally.seconds / Double(max(tally.calls, 1)), 100 * tally.seconds / report.phases[1].seconds))
        print(String(format: "all-reduce alone, 20 calls: trained gradients (%d floats) %.3f ms; the whole UNet (%d floats, full fine-tuning) %.3f ms",
                     report.allreduceFloats, 1e3 * (report.allreduceSecondsLoRA ?? .nan), report.fullFloats, 1e3 * (report.allreduceSecondsFull ?? .nan)))
    }

    static func reward(_ args: ParsedArguments) throws {
        let threads = args.int("threads")!, batch = args.int("batch")!
        let model = try args.string("model").map { try LearnedReward.load(from: URL(fileURLWithPath: $0)) }
        let r = try RewardBenchmark.run(model: model, batch: batch, threads: threads)
        if args.flag("json") {
            try printJSON(r)
            return
        }
        print(String(format: "reward model (%@%@, %d parameters, %d-token sequences), batch %d, %d thread(s); ceiling: OpenBLAS sgemm 1024³ %.1f GFLOP/s",
                     r.architecture, r.architecture == "llava" ? (r.skipCrossAttention ? " + SkipCA" : ", no SkipCA") : "", r.parameters,
                     r.sequenceLength, r.batch, r.threads, r.ceilingGflops))
        print(String(format: "%.1f pairs/s  %.1f ms per batch  %.2f GFLOP per batch  %.1f GFLOP/s  %.0f%% of ceiling  %.0f%% of time in GEMM",
                     r.pairsPerSecond, r.millisecondsPerBatch, r.gflopPerBatch, r.gflops, 100 * r.fractionOfCeiling, 100 * r.gemmShare))
    }

    /// A profile's table: op, pass, calls, milliseconds and share of `totalMilliseconds`, for the
    /// entries of at least 0.05 ms.
    static func printProfile(_ entries: [OpProfiler.Entry], totalMilliseconds total: Double) {
        print("op                          pass        calls        ms    share")
        for e in entries where e.seconds * 1000 >= 0.05 {
            print(e.op.padding(toLength: 27, withPad: " ", startingAt: 0) + " " + e.pass.padding(toLength: 9, withPad: " ", startingAt: 0)
                  + String(format: " %8d %9.2f %7.1f%%", e.calls, e.seconds * 1000, 100 * e.seconds * 1000 / total))
        }
    }

    static func row(_ f: BenchmarkFigure) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        return pad(f.name, 26) + pad(f.shape, 38) + String(format: "%8.3f %9.1f %9.0f%%", f.seconds * 1000, f.gflops, 100 * f.fractionOfCeiling)
    }
}
