import Distributed
import Engine
import Foundation

/// `diffusion-rl bench unet`: milliseconds of the UNet's forward and forward + backward at the
/// default config, the FLOPs counted in its GEMM-backed ops, and GFLOP/s against the `sgemm`
/// ceiling measured in the same run.
///
/// Over N ranks (`mpirun -np N`, or N worker threads) a pass is data-parallel: each rank takes its rows of the batch
/// (`ownRows`) through the whole network, and forward + backward ends with the all-reduce that
/// sums the ranks' parameter gradients into the full batch's — the pass is done when every rank's
/// part is (barriers around it, timed on rank 0). FLOPs are the job's, and the ceiling is the sum
/// of the ranks' sgemm ceilings measured at the same time (each rank's cores, all busy at once).
public enum UNetBenchmark {
    public struct Figure: Codable, Sendable {
        public var batch: Int
        public var pass: String
        public var milliseconds: Double
        public var gflop: Double
        public var gflops: Double
        public var fractionOfCeiling: Double
    }

    public struct Report: Codable, Sendable {
        /// Threads per rank.
        public var threads: Int
        /// Ranks a pass is split over (MPI processes, or worker threads of one process).
        public var ranks: Int = 1
        public var parameters: Int
        public var contextTokens: Int
        public var ceilingGflops: Double
        public var figures: [Figure]
    }

    public static func run(threads: Int, batches: [Int] = [8, 32], config: UNetConfig = UNetConfig(),
                           communicator: any Communicator = SingleProcess(), progress: (String) -> Void = { _ in }) throws -> Report {
        Threads.set(threads)
        var rng = RandomGenerator(seed: 0)
        let unet = try UNet2DConditionModel(config, using: &rng)
        let parameters = unet.namedParameters()
        /// The ranks' ceilings, measured at once and summed (one process: its own).
        func ceiling() throws -> Double {
            try communicator.barrier()
            var figure = [try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng)]
            try communicator.allreduceSum(&figure)
            return figure[0]
        }
        /// The fastest of repeated runs of `body` on every rank at once; one process times as
        /// `bestSeconds` does, ranks run the same count (the ranks' mean first time decides it).
        func best(_ body: () throws -> Void) throws -> Double {
            guard communicator.size > 1 else { return try bestSeconds(minimumSeconds: 1, body) }
            func once() throws -> Double {
                try communicator.barrier()
                let start = DispatchTime.now().uptimeNanoseconds
                try body()
                try communicator.barrier()
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }
            for _ in 0..<2 { _ = try once() }
            var first = [try once()]
            try communicator.allreduceSum(&first)
            let runs = max(5, Int((Double(communicator.size) / first[0]).rounded(.up)))
            var times = [first[0] / Double(communicator.size)]
            for _ in 1..<runs { times.append(try once()) }
            return times.min()!
        }
        /// The full batch's gradient on every rank: the ranks' partial sums, summed.
        func sumGradients() throws { try communicator.allreduceGradients(parameters) }
        var peak = try ceiling()
        var figures: [Figure] = []
        for batch in batches {
            // The whole batch drawn on every rank, so that the ranks' rows are the one batch's.
            let rows = communicator.ownRows(of: batch)
            let x = try Tensor.randn([batch, config.inChannels, 8, 8], using: &rng).indexSelect(axis: 0, rows)
            let context = try Tensor.randn([batch, 16, config.crossAttentionDimension], using: &rng).indexSelect(axis: 0, rows)
            let timesteps = rows.map { Double(($0 * 37) % 1000) }
            let seed = try Tensor.randn([batch, config.outChannels, 8, 8], using: &rng).indexSelect(axis: 0, rows)
            var forwardFlops = [try FlopCounter.measure { try withNoGrad { try unet(x, timesteps: timesteps, context: context) } }.flops]
            try communicator.allreduceSum(&forwardFlops)
            let forward = try best { _ = try withNoGrad { try unet(x, timesteps: timesteps, context: context) } }
            progress("batch \(batch): forward \(String(format: "%.1f", forward * 1000)) ms")
            var trainingFlops = [try FlopCounter.measure {
                try unet(x, timesteps: timesteps, context: context).backward(gradient: seed)
            }.flops]
            try communicator.allreduceSum(&trainingFlops)
            unet.zeroGrad()
            let training = try best {
                try unet(x, timesteps: timesteps, context: context).backward(gradient: seed)
                try sumGradients()
                unet.zeroGrad()
            }
            progress("batch \(batch): forward + backward \(String(format: "%.1f", training * 1000)) ms")
            figures.append(Figure(batch: batch, pass: "forward", milliseconds: forward * 1000, gflop: forwardFlops[0] / 1e9,
                                  gflops: forwardFlops[0] / forward / 1e9, fractionOfCeiling: 0))
            figures.append(Figure(batch: batch, pass: "forward+backward", milliseconds: training * 1000, gflop: trainingFlops[0] / 1e9,
                                  gflops: trainingFlops[0] / training / 1e9, fractionOfCeiling: 0))
        }
        peak = max(peak, try ceiling())
        for i in figures.indices { figures[i].fractionOfCeiling = figures[i].gflops / peak }
        return Report(threads: threads, ranks: communicator.size, parameters: unet.parameterCount, contextTokens: 16, ceilingGflops: peak,
                      figures: figures)
    }

    /// Milliseconds per forward + backward of the default UNet at `batch`, by op and pass
    /// (`OpProfiler`), averaged over `iterations` after one warm-up.
    public static func profile(threads: Int, batch: Int = 32, iterations: Int = 5, config: UNetConfig = UNetConfig()) throws
        -> (entries: [OpProfiler.Entry], totalMilliseconds: Double) {
        Threads.set(threads)
        var rng = RandomGenerator(seed: 0)
        let unet = try UNet2DConditionModel(config, using: &rng)
        let x = Tensor.randn([batch, config.inChannels, 8, 8], using: &rng)
        let context = Tensor.randn([batch, 16, config.crossAttentionDimension], using: &rng)
        let timesteps = (0..<batch).map { Double(($0 * 37) % 1000) }
        let seed = Tensor.randn([batch, config.outChannels, 8, 8], using: &rng)
        func pass() throws {
            try unet(x, timesteps: timesteps, context: context).backward(gradient: seed)
            unet.zeroGrad()
        }
        try pass()
        let start = Date()
        var entries = try OpProfiler.profile { for _ in 0..<iterations { try pass() } }
        let total = Date().timeIntervalSince(start) * 1000 / Double(iterations)
        for i in entries.indices {
            entries[i].seconds /= Double(iterations)
            entries[i].calls /= iterations
        }
        return (entries, total)
    }
}
