import Engine
import Foundation
import Images
import Inputs

// Feynman–Kac steering (Singhal et al. 2025, "A General Framework for Inference-time Scaling and
// Steering of Diffusion Models"). K particles per prompt follow the DDIM sampler; after the
// sampling steps s ∈ S each particle k is scored by a reward on the image decoded from its
// predicted clean latent x̂₀, and the particles of each prompt are resampled with probabilities
// ∝ G_s^k, with the difference potential
//
//     r_s^k = r(D(x̂₀(x_s^k)), c),    G_s^k = exp(λ·(r_s^k − r_{s′}^k))
//
// (r_{s′}^k the reward of the particle's ancestor at the previous resampling, 0 before the first).
// Resampling is systematic, from its own random stream. After the last step each prompt keeps
// the particle with the highest reward of its final image. K particles cost as many UNet
// evaluations as best-of-K; with λ = 0 or a constant reward the particles are exactly what plain
// sampling draws with the same seed, and the kept one is best-of-K from those draws.

/// Settings of Feynman–Kac steering (with defaults that run).
public struct SteeringSettings: Codable, Equatable, Sendable {
    /// K, particles per prompt.
    public var particles = 4
    /// λ, the potential's inverse temperature (in reward units⁻¹).
    public var lambda = 10.0
    /// Resample after every this many sampling steps (never after the last step).
    public var every = 5

    public init() {}
}

/// What a steered generation returns.
public struct SteeredSamples {
    /// One image per prompt: the particle whose final image the reward ranks first.
    public var images: [RGBImage]
    /// Its reward.
    public var rewards: [Double]
    /// Every particle's final image, prompt by prompt (K per prompt).
    public var particles: [RGBImage]
    public var particleRewards: [Double]
    /// How many times the particles were resampled, and how many distinct ancestors survived
    /// each time on average (K when the potentials are flat).
    public var resamplings: Int
    public var meanSurvivors: Double
    /// Images the reward scored (x̂₀ decodes and final images).
    public var rewardEvaluations: Int
}

/// Systematic resampling: N ancestors for normalized `weights` (N of them) from one uniform
/// `offset` u ∈ [0, 1): ancestor k is the first index whose cumulative weight exceeds (u + k)/N.
public func systematicResampling(weights: [Double], offset u: Double) -> [Int] {
    let n = weights.count
    var ancestors: [Int] = [], cumulative = 0.0, index = 0
    for k in 0..<n {
        let position = (u + Double(k)) / Double(n)
        while index < n - 1 && cumulative + weights[index] <= position {
            cumulative += weights[index]
            index += 1
        }
        ancestors.append(index)
    }
    return ancestors
}

/// exp(λ·(r − r_previous)) normalized over one prompt's particles; a non-finite reward gets
/// weight 0, and a prompt whose particles are all non-finite keeps uniform weights.
public func steeringWeights(rewards: [Double], previous: [Double], lambda: Double) -> [Double] {
    let logs = zip(rewards, previous).map { $0.isFinite ? lambda * ($0 - $1) : -Double.infinity }
    guard let top = logs.max(), top.isFinite else { return [Double](repeating: 1 / Double(rewards.count), count: rewards.count) }
    let unnormalized = logs.map { $0.isFinite ? Foundation.exp($0 - top) : 0 }
    let total = unnormalized.reduce(0, +)
    return unnormalized.map { $0 / total }
}

extension LatentDiffusionModel {
    /// Images for `prompts` by Feynman–Kac steering with `reward` (a score per image for its
    /// prompt, higher is better). The particles of prompt i are rows i·K … i·K + K − 1 of one batch
    /// drawn exactly as `generate` draws the prompts repeated K times with `settings.seed`.
    public func generateSteered(_ prompts: [String], settings: SamplingSettings, steering: SteeringSettings,
                                reward: ([RGBImage], [String]) throws -> [Double],
                                progress: (Int) -> Void = { _ in }) throws -> SteeredSamples {
        guard !prompts.isEmpty else { throw DiffusionError.invalidSettings("no prompts") }
        guard steering.particles >= 1, steering.every >= 1, steering.lambda.isFinite, steering.lambda >= 0 else {
            throw DiffusionError.invalidSettings("steering needs particles ≥ 1, every ≥ 1 and a finite λ ≥ 0")
        }
        let k = steering.particles
        let rows = prompts.flatMap { [String](repeating: $0, count: k) }
        // Resampling draws from its own stream, so the sampler's noise is plain sampling's.
        var resamplingRNG = RandomGenerator(seed: settings.seed ^ 0xF11E_57EE)
        var previous = [Double](repeating: 0, count: rows.count)
        var resamplings = 0, survivors = 0, evaluations = 0
        /// The images of `latents` and their rewards.
        func score(_ latents: Tensor) throws -> (images: [RGBImage], rewards: [Double]) {
            let images = try ImageTensors.images(vae.decode(latents / vae.scaleFactor.item))
            evaluations += images.count
            let scores = try reward(images, rows)
            guard scores.count == rows.count else {
                throw DiffusionError.invalidSettings("the steering reward gave \(scores.count) scores for \(rows.count) images")
            }
            return (images, scores)
        }
        return try withNoGrad {
            let x = try denoise(rows, settings: settings) { i, step, x in
                progress(i)
                guard (i + 1) % steering.every == 0, i + 1 < settings.steps, k > 1 else { return }
                let rewards = try score(step.predictedOriginal).rewards
                var ancestors: [Int] = []
                for p in prompts.indices {
                    let range = p * k ..< (p + 1) * k
                    let weights = steeringWeights(rewards: Array(rewards[range]), previous: Array(previous[range]), lambda: steering.lambda)
                    // Flat weights keep every particle where it is.
                    let chosen = weights.allSatisfy({ $0 == weights[0] }) ? Array(0..<k)
                        : systematicResampling(weights: weights, offset: resamplingRNG.uniform())
                    survivors += Set(chosen).count
                    ancestors += chosen.map { range.lowerBound + $0 }
                }
                resamplings += 1
                x = try x.indexSelect(axis: 0, ancestors)
                previous = ancestors.map { rewards[$0] }
            }
            let (particles, finalRewards) = try score(x)
            var images: [RGBImage] = [], kept: [Double] = []
            for p in prompts.indices {
                // NaN never wins; among equal rewards the earlier particle does.
                var best = p * k
                for j in p * k ..< (p + 1) * k where finalRewards[j] > finalRewards[best] || finalRewards[best].isNaN { best = j }
                images.append(particles[best])
                kept.append(finalRewards[best])
            }
            return SteeredSamples(images: images, rewards: kept, particles: particles, particleRewards: finalRewards,
                                  resamplings: resamplings,
                                  meanSurvivors: resamplings > 0 ? Double(survivors) / Double(resamplings * prompts.count) : Double(k),
                                  rewardEvaluations: evaluations)
        }
    }
}
