import Distributed
import Engine
import Foundation

/// `diffusion-rl bench ddpo`: samples per second of a sampling epoch and a training epoch at the
/// default DDPO config (the default UNet, 20 DDIM steps, η = 1, guidance 5, 32 samples), the FLOPs
/// of their GEMM-backed ops, the share of core time inside BLAS GEMMs, and GFLOP/s against the
/// `sgemm` ceiling measured in the same run. Under `mpirun` the epochs are data-parallel: samples
/// per second are the job's, FLOPs and GEMM time rank 0's, and the gradient all-reduces are timed.
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
        /// With `profile`: the phase's time by op and pass, largest first.
        public var ops: [OpProfiler.Entry]?
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
        /// Ranks the epochs ran on (MPI processes, or worker threads of one process).
        public var ranks: Int = 1
        public var samplingBatch: Int = 0
        /// The training epoch's gradient all-reduces (none on one process).
        public var allreduce: AllreduceTally = AllreduceTally()
        /// Floats in one all-reduce of the trained gradients: every trainable parameter and one flag per tensor.
        public var allreduceFloats: Int = 0
        /// Mean seconds of an all-reduce of the trained gradients and of every UNet parameter's (full
        /// fine-tuning), 20 calls each (nil on one process).
        public var allreduceSecondsLoRA: Double?
        public var allreduceSecondsFull: Double?
        public var fullFloats: Int = 0
        /// Bytes of the sampling epoch's trajectories as the ranks gather them.
        public var trajectoryBytes: Int = 0
        /// The process's (rank 0's) peak resident memory after both epochs, in bytes.
        public var peakResidentBytes: Int?
        /// Processes the ranks are (MPI: one per rank; worker threads share one): the job's memory
        /// is about `processes` × `peakResidentBytes`.
        public var processes: Int = 1
    }

    /// Runs one sampling epoch and one training epoch of `config` (its epochs, evaluation and KL
    /// are ignored) in a scratch folder; with `profile`, each phase also charges its time to ops
    /// (`OpProfiler`, a few percent slower).
    public static func run(config given: FineTuningConfig, communicator: any Communicator = SingleProcess(), profile: Bool = false,
                           progress: (String) -> Void = { _ in }) throws -> Report {
        var config = given
        config.evaluation.prompts = 0
        config.kl.every = 0
        config.epochs = 1
        // Every rank needs a sampling batch of its own.
        let samples = config.promptsPerEpoch * config.imagesPerPrompt
        config.samplingBatch = min(config.samplingBatch, (samples + communicator.size - 1) / communicator.size)
        Threads.set(config.threads)
        var rng = RandomGenerator(seed: 0)
        var ceiling = try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bench-ddpo-\(UUID())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        // Each rank its own scratch folder: the benchmark's writes are not what it measures.
        let trainer = try FineTuningTrainer(config: config, output: scratch.appendingPathComponent("rank-\(communicator.rank)"), commandLine: "bench ddpo",
                                            communicator: communicator)
        defer { try? trainer.close() }
        var epochRNG = trainer.epochRNG(0)
        // A warm-up batch, so that allocations and thread start-up are not timed.
        _ = try trainer.policy.sampleTrajectories(["a red circle"], settings: config.sampling, using: &epochRNG)

        /// `body`, profiled by op when asked.
        func timed<R>(_ body: () throws -> R) throws -> (R, [OpProfiler.Entry]?) {
            guard profile else { return (try body(), nil) }
            var result: R?
            let entries = try OpProfiler.profile { result = try body() }
            return (result!, entries)
        }
        try communicator.barrier()
        var start = Date()
        let ((sampled, samplingFlops, samplingBlas), samplingOps) = try timed { try FlopCounter.profile { try trainer.sampleEpoch(using: &epochRNG) } }
        let samplingSeconds = Date().timeIntervalSince(start)
        let trajectories = sampled.trajectories
        progress(String(format: "sampling epoch: %d samples in %.2f s", trajectories.count, samplingSeconds))

        // Random rewards and advantages: the objective's work does not depend on their values.
        let indices = Array(0..<trajectories.count)
        let epoch = EpochSamples(trajectories: trajectories, groups: sampled.groups, promptIndices: sampled.promptIndices, usable: indices,
                                 rewards: indices.map { _ in rng.normal() }, advantages: indices.map { _ in rng.normal() })
        try communicator.barrier()
        start = Date()
        let ((_, trainingFlops, trainingBlas), trainingOps) = try timed {
            try FlopCounter.profile { try trainer.update(epoch, rng: &epochRNG) }
        }
        let trainingSeconds = Date().timeIntervalSince(start)
        let trained = PolicyLoss(rawValue: config.objective) != nil
            ? "\(FineTuningTrainer.trainedStepsPerSample(config)) of \(trajectories.stepCount) steps each" : "objective \(config.objective)"
        progress(String(format: "training epoch: %d samples (%@) in %.2f s", trajectories.count, trained, trainingSeconds))
        ceiling = max(ceiling, try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng))

        func phase(_ name: String, seconds: Double, flops: Double, blas: Double, ops: [OpProfiler.Entry]?) -> Phase {
            Phase(name: name, samples: trajectories.count, seconds: seconds, samplesPerSecond: Double(trajectories.count) / seconds,
                  gflop: flops / 1e9, gflops: flops / seconds / 1e9, fractionOfCeiling: flops / seconds / 1e9 / ceiling,
                  gemmShare: blas / (seconds * Double(config.threads)), ops: ops)
        }
        // All-reduces of the trained gradients' size and of the whole UNet's, timed apart from training.
        let loraFloats = trainer.parameters.reduce(trainer.parameters.count) { $0 + $1.tensor.count }
        let fullFloats = trainer.policy.unet.namedParameters().reduce(0) { $0 + $1.tensor.count }
        func allreduceSeconds(_ floats: Int) throws -> Double? {
            guard communicator.size > 1 else { return nil }
            var buffer = [Float](repeating: 1, count: floats)
            try communicator.allreduceSum(&buffer)
            try communicator.barrier()
            let begin = Date()
            for _ in 0..<20 { try communicator.allreduceSum(&buffer) }
            return Date().timeIntervalSince(begin) / 20
        }
        return Report(threads: config.threads, model: config.model, steps: config.sampling.steps, guidance: config.sampling.guidance,
                      trainBatch: config.trainBatch, loraRank: config.loraRank, ceilingGflops: ceiling,
                      phases: [phase("sampling", seconds: samplingSeconds, flops: samplingFlops, blas: samplingBlas, ops: samplingOps),
                               phase("training", seconds: trainingSeconds, flops: trainingFlops, blas: trainingBlas, ops: trainingOps)],
                      ranks: communicator.size, samplingBatch: config.samplingBatch, allreduce: trainer.allreduces, allreduceFloats: loraFloats,
                      allreduceSecondsLoRA: try allreduceSeconds(loraFloats), allreduceSecondsFull: try allreduceSeconds(fullFloats),
                      fullFloats: fullFloats, trajectoryBytes: trajectories.encoded().count, peakResidentBytes: peakResidentBytes(),
                      processes: communicator is MPICommunicator ? communicator.size : 1)
    }
}
