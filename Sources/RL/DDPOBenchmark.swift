import Engine
import Foundation

/// `diffusion-rl bench ddpo`: samples per second of a sampling epoch and a training epoch at the
/// default DDPO config (the default UNet, 20 DDIM steps, η = 1, guidance 5, 32 samples), the FLOPs
/// of their GEMM-backed ops, the share of core time inside BLAS GEMMs, and GFLOP/s against the
/// `sgemm` ceiling measured in the same run.
public enum DDPOBenchmark {
    public struct Phase: Codable, Sendable {
        public var name: String
        public var samples: Int
        public var seconds: Double
        public var samplesPerSecond: Double
        public var gflop: Double
        public var gflops: Double
        public var fractionOfCeiling: Double
        /// Core-seconds inside BLAS GEMM calls / (wall seconds × threads).
        public var gemmShare: Double
    }

    public struct Report: Codable, Sendable {
        public var threads: Int
        public var model: String
        public var steps: Int
        public var guidance: Double
        public var trainBatch: Int
        public var loraRank: Int
        public var ceilingGflops: Double
        public var phases: [Phase]
    }

    /// Runs one sampling epoch and one training epoch of `config` (its epochs, evaluation and KL
    /// are ignored) in a scratch folder.
    public static func run(config given: FineTuningConfig, progress: (String) -> Void = { _ in }) throws -> Report {
        var config = given
        config.evaluation.prompts = 0
        config.kl.every = 0
        config.epochs = 1
        Threads.set(config.threads)
        var rng = RandomGenerator(seed: 0)
        var ceiling = try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bench-ddpo-\(UUID())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let trainer = try FineTuningTrainer(config: config, output: scratch, commandLine: "bench ddpo")
        defer { try? trainer.close() }
        var epochRNG = trainer.epochRNG(0)
        // A warm-up batch, so that allocations and thread start-up are not timed.
        _ = try trainer.policy.sampleTrajectories(["a red circle"], settings: config.sampling, using: &epochRNG)

        var start = Date()
        let (sampled, samplingFlops, samplingBlas) = try FlopCounter.profile { try trainer.sampleEpoch(using: &epochRNG) }
        let samplingSeconds = Date().timeIntervalSince(start)
        let trajectories = sampled.trajectories
        progress(String(format: "sampling epoch: %d samples in %.2f s", trajectories.count, samplingSeconds))

        // Random rewards and advantages: the objective's work does not depend on their values.
        let indices = Array(0..<trajectories.count)
        let samples = EpochSamples(trajectories: trajectories, groups: sampled.groups, promptIndices: sampled.promptIndices, usable: indices,
                                   rewards: indices.map { _ in rng.normal() }, advantages: indices.map { _ in rng.normal() })
        start = Date()
        let (_, trainingFlops, trainingBlas) = try FlopCounter.profile {
            try trainer.objective.train(samples, trainer: trainer, rng: &epochRNG)
        }
        let trainingSeconds = Date().timeIntervalSince(start)
        let trained = PolicyLoss(rawValue: config.objective) != nil
            ? "\(FineTuningTrainer.trainedStepsPerSample(config)) of \(trajectories.stepCount) steps each" : "objective \(config.objective)"
        progress(String(format: "training epoch: %d samples (%@) in %.2f s", trajectories.count, trained, trainingSeconds))
        ceiling = max(ceiling, try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng))

        func phase(_ name: String, seconds: Double, flops: Double, blas: Double) -> Phase {
            Phase(name: name, samples: trajectories.count, seconds: seconds, samplesPerSecond: Double(trajectories.count) / seconds,
                  gflop: flops / 1e9, gflops: flops / seconds / 1e9, fractionOfCeiling: flops / seconds / 1e9 / ceiling,
                  gemmShare: blas / (seconds * Double(config.threads)))
        }
        return Report(threads: config.threads, model: config.model, steps: config.sampling.steps, guidance: config.sampling.guidance,
                      trainBatch: config.trainBatch, loraRank: config.loraRank, ceilingGflops: ceiling,
                      phases: [phase("sampling", seconds: samplingSeconds, flops: samplingFlops, blas: samplingBlas),
                               phase("training", seconds: trainingSeconds, flops: trainingFlops, blas: trainingBlas)])
    }
}
