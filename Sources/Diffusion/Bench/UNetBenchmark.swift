import Engine
import Foundation

/// `diffusion-rl bench unet`: milliseconds of the UNet's forward and forward + backward at the
/// default config, the FLOPs counted in its GEMM-backed ops, and GFLOP/s against the `sgemm`
/// ceiling measured in the same run.
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
        public var threads: Int
        public var parameters: Int
        public var contextTokens: Int
        public var ceilingGflops: Double
        public var figures: [Figure]
    }

    public static func run(threads: Int, batches: [Int] = [8, 32], config: UNetConfig = UNetConfig(),
                           progress: (String) -> Void = { _ in }) throws -> Report {
        Threads.set(threads)
        var rng = RandomGenerator(seed: 0)
        var ceiling = try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng)
        let unet = try UNet2DConditionModel(config, using: &rng)
        var figures: [Figure] = []
        for batch in batches {
            let x = Tensor.randn([batch, config.inChannels, 8, 8], using: &rng)
            let context = Tensor.randn([batch, 16, config.crossAttentionDimension], using: &rng)
            let timesteps = (0..<batch).map { Double(($0 * 37) % 1000) }
            let seed = Tensor.randn([batch, config.outChannels, 8, 8], using: &rng)
            let forwardFlops = try FlopCounter.measure { try withNoGrad { try unet(x, timesteps: timesteps, context: context) } }.flops
            let forward = try bestSeconds(minimumSeconds: 1) { _ = try withNoGrad { try unet(x, timesteps: timesteps, context: context) } }
            progress("batch \(batch): forward \(String(format: "%.1f", forward * 1000)) ms")
            let trainingFlops = try FlopCounter.measure {
                try unet(x, timesteps: timesteps, context: context).backward(gradient: seed)
            }.flops
            unet.zeroGrad()
            let training = try bestSeconds(minimumSeconds: 1) {
                try unet(x, timesteps: timesteps, context: context).backward(gradient: seed)
                unet.zeroGrad()
            }
            progress("batch \(batch): forward + backward \(String(format: "%.1f", training * 1000)) ms")
            figures.append(Figure(batch: batch, pass: "forward", milliseconds: forward * 1000, gflop: forwardFlops / 1e9,
                                  gflops: forwardFlops / forward / 1e9, fractionOfCeiling: 0))
            figures.append(Figure(batch: batch, pass: "forward+backward", milliseconds: training * 1000, gflop: trainingFlops / 1e9,
                                  gflops: trainingFlops / training / 1e9, fractionOfCeiling: 0))
        }
        ceiling = max(ceiling, try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng))
        for i in figures.indices { figures[i].fractionOfCeiling = figures[i].gflops / ceiling }
        return Report(threads: threads, parameters: unet.parameterCount, contextTokens: 16, ceilingGflops: ceiling, figures: figures)
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
