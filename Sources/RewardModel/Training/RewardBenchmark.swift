import Engine
import Foundation
import Inputs
import World

/// `diffusion-rl bench reward`: how fast the reward model scores (image, prompt) pairs without
/// gradients, as DDPO uses it — pairs per second at a batch size, FLOPs of the GEMM-backed ops,
/// GFLOP/s against the `sgemm` ceiling measured in the same run, and the share of time in GEMMs.
public enum RewardBenchmark {
    public struct Report: Codable, Sendable {
        public var threads: Int
        public var batch: Int
        public var architecture: String
        public var skipCrossAttention: Bool
        public var parameters: Int
        public var sequenceLength: Int
        public var pairsPerSecond: Double
        public var millisecondsPerBatch: Double
        public var gflopPerBatch: Double
        public var gflops: Double
        public var ceilingGflops: Double
        public var fractionOfCeiling: Double
        public var gemmShare: Double
    }

    /// Scores `repeats` batches of random images and world prompts with `model` (the default
    /// shape when none is given) after one warm-up batch.
    public static func run(model given: LearnedReward?, batch: Int, threads: Int, repeats: Int = 10) throws -> Report {
        Threads.set(threads)
        var rng = RandomGenerator(seed: 0)
        var ceiling = try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng)
        let model = try given ?? {
            let tokenizer = Tokenizer(captions: WorldGenerator(seed: 0).scenes(.train, count: 2000).map(\.caption))
            return LearnedReward(model: try LLaVAReward(RewardModelConfig(), vocabularySize: tokenizer.count, using: &rng), tokenizer: tokenizer)
        }()
        let size = model.config.imageSize
        let images = Tensor.uniform([batch, 3, size, size], low: -1, high: 1, using: &rng)
        let prompts = (0..<batch).map { ["a red circle", "two small blue squares", "a red circle to the left of a blue square"][$0 % 3] }
        _ = try withNoGrad { try model.rewards(images, prompts: prompts) }
        let start = Date()
        let (_, flops, blas) = try FlopCounter.profile {
            try withNoGrad { for _ in 0..<repeats { _ = try model.rewards(images, prompts: prompts) } }
        }
        let seconds = Date().timeIntervalSince(start)
        ceiling = Swift.max(ceiling, try EngineBenchmark.measureGemmCeiling(size: 1024, using: &rng))
        let gflops = flops / seconds / 1e9
        return Report(threads: threads, batch: batch, architecture: model.config.architecture.rawValue,
                      skipCrossAttention: model.config.skipCrossAttention, parameters: model.model.parameterCount,
                      sequenceLength: model.config.imageTokens + model.config.maxTextLength,
                      pairsPerSecond: Double(batch * repeats) / seconds, millisecondsPerBatch: 1000 * seconds / Double(repeats),
                      gflopPerBatch: flops / Double(repeats) / 1e9, gflops: gflops, ceilingGflops: ceiling,
                      fractionOfCeiling: gflops / ceiling, gemmShare: blas / (seconds * Double(threads)))
    }
}
