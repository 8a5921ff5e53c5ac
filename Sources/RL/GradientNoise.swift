import Engine
import Diffusion
import Foundation
import Rewards

/// How noisy DDPO's policy-gradient estimate is at the current parameters.
///
/// Several independent sampling epochs each give one gradient of the policy loss over all their
/// samples and every eligible step. With E[ĝ] = g and per-sample variance v, the expected cosine
/// between two independent n-sample estimates is |g|² / (|g|² + v/n), so n·(1 − c)/c samples give
/// one estimate whose signal equals its noise: the figure that says how many samples an update
/// needs before it points anywhere in particular.
public struct GradientNoiseReport: Codable, Sendable {
    public var estimates: Int
    public var samplesPerEstimate: Int
    /// Mean cosine between the estimates, over all pairs, and its standard error (pairs treated as independent).
    public var meanCosine: Double
    public var cosineSE: Double
    /// |mean of the estimates| / mean |estimate|: about 1/√estimates when they are pure noise.
    public var meanNormRatio: Double
    /// n·(1 − c)/c, or nil when c ≤ 0 (no signal seen).
    public var samplesForUnitSNR: Double?
    /// The trained steps (sampling order, 0 the noisiest) and the mean gradient norm of one
    /// training batch's loss at each: where the estimate's magnitude comes from.
    public var steps: [Int]
    public var stepGradientNorms: [Double]
}

extension FineTuningTrainer {
    /// Measures the policy gradient's noise with `estimates` sampling epochs (drawn from streams
    /// that training never uses) without changing the parameters or the reward statistics.
    public func gradientNoise(estimates: Int, progress: (String) -> Void = { _ in }) throws -> GradientNoiseReport {
        guard estimates >= 2 else { throw FineTuningError("gradient noise needs at least 2 estimates, got \(estimates)") }
        guard let loss = PolicyLoss(rawValue: config.objective) else {
            throw FineTuningError("gradient noise measures the policy gradient of \"ppo\" or \"reinforce\"; the config's objective is \"\(config.objective)\"")
        }
        let steps = trainableSteps
        var vectors: [[Double]] = [], stepNorms = [Double](repeating: 0, count: steps.count), batchCount = 0, samples = 0
        for estimate in 0..<estimates {
            var rng = epochRNG(1_000_000 + estimate)
            _ = rng.next()
            let (groups, _, trajectories) = try sampleEpoch(using: &rng)
            let prompts = trajectories.prompts
            let rewards = try composer.score(trajectories.images, prompts: prompts).total
            guard rewards.allSatisfy(\.isFinite) else { throw FineTuningError("a non-finite reward in gradient-noise estimate \(estimate)") }
            var statistics = tracker  // a copy: measuring leaves the trainer's statistics as they are
            let advantages = clippedAdvantages(rewards: rewards, prompts: prompts, groups: groups, tracker: &statistics)
            vectors.append(try policyGradient(trajectories, loss: loss, advantages: advantages, stepNorms: &stepNorms))
            batchCount += (prompts.count + config.trainBatch - 1) / config.trainBatch
            samples = prompts.count
            progress("estimate \(estimate + 1)/\(estimates): \(prompts.count) samples, |ĝ| \(String(format: "%.4g", norm(vectors.last!)))")
        }
        var cosines: [Double] = []
        for i in vectors.indices { for j in (i + 1)..<vectors.count { cosines.append(cosine(vectors[i], vectors[j])) } }
        let (meanCosine, spread) = meanAndStd(cosines)
        let mean = vectors[0].indices.map { i in vectors.reduce(0) { $0 + $1[i] } / Double(vectors.count) }
        let meanNorm = vectors.map(norm).reduce(0, +) / Double(vectors.count)
        return GradientNoiseReport(estimates: estimates, samplesPerEstimate: samples, meanCosine: meanCosine,
                                   cosineSE: spread / Double(cosines.count).squareRoot(),
                                   meanNormRatio: norm(mean) / max(meanNorm, 1e-30),
                                   samplesForUnitSNR: meanCosine > 0 ? Double(samples) * (1 - meanCosine) / meanCosine : nil,
                                   steps: steps, stepGradientNorms: stepNorms.map { $0 / Double(max(batchCount, 1)) })
    }

    /// The gradient of the policy loss over every sample of `trajectories` at every trainable
    /// step, in training batches, at the current parameters: with the trajectories' own log π as
    /// the old ones the ratio is 1, so PPO and REINFORCE both give −Σ_batches mean(A · ∇ Σ_t log π).
    /// Flattened over `parameters`, whose gradients it leaves cleared; adds each step's gradient
    /// norm per batch to `stepNorms` (indexed like `trainableSteps`).
    func policyGradient(_ trajectories: Trajectories, loss: PolicyLoss, advantages: [Double], stepNorms: inout [Double]) throws -> [Double] {
        func flatGradient() -> [Double] {
            parameters.flatMap { $0.tensor.grad?.values ?? [Double](repeating: 0, count: $0.tensor.count) }
        }
        let prompts = trajectories.prompts, steps = trainableSteps
        let oldLogProbs = trajectories.logProbs.map(\.values)
        for p in parameters { p.tensor.grad = nil }
        defer { for p in parameters { p.tensor.grad = nil } }
        let batches = stride(from: 0, to: prompts.count, by: config.trainBatch).map { Array($0 ..< min($0 + config.trainBatch, prompts.count)) }
        for batch in batches {
            let captions = batch.map { prompts[$0] }
            let (context, empty) = try withNoGrad { (try policy.encodeText(captions), try policy.encodeText(captions.map { _ in "" })) }
            for (k, s) in steps.enumerated() {
                let before = flatGradient()
                let step = try policy.stepLogProb(trajectories, step: s, indices: batch, context: context, empty: empty, settings: config.sampling)
                let result = try loss(logProb: step.logProb, oldLogProb: batch.map { oldLogProbs[s][$0] },
                                             advantages: batch.map { advantages[$0] }, clipRange: config.clipRange)
                try result.loss.backward()
                let after = flatGradient()
                stepNorms[k] += zip(after, before).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
            }
        }
        return flatGradient()
    }
}

func norm(_ v: [Double]) -> Double { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }

/// u·v / (|u| |v|), 0 when either is zero.
func cosine(_ u: [Double], _ v: [Double]) -> Double {
    let denominator = norm(u) * norm(v)
    return denominator > 0 ? zip(u, v).reduce(0) { $0 + $1.0 * $1.1 } / denominator : 0
}
