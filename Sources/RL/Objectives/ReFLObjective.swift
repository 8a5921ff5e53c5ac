import Diffusion
import Engine
import Foundation
import Rewards

/// Settings of ReFL / DRaFT-K fine-tuning (`"objective": "refl"`).
public struct ReFLSettings: Codable, Equatable, Sendable {
    /// K: the last K sampling steps carry gradients (DRaFT-K; K = 1 is DRaFT-1, K = steps
    /// backpropagates through the whole chain, where layout is decided).
    public var gradientSteps = 1
    /// Treat ε̂'s dependence on its input x_t as constant (the UNet sees x_t detached): the reward's
    /// gradient then reaches each step's ε̂ only through the sampler's linear update, which keeps it
    /// from exploding through a long chain (a biased but stable gradient).
    public var detachUNetInput = false

    public init() {}
}

/// A differentiable reward function and the weighted perspectives a composition asks of it.
typealias DifferentiableSource = (function: any DifferentiableReward, perspectives: [(name: String, weight: Double)])

/// The perspectives of a composition resolved to the differentiable reward functions that compute
/// them, for ReFL — grouped by function, so each scores a batch once; fails naming the first
/// weighted perspective no function can differentiate.
func differentiableSources(_ composition: RewardComposition, functions: [any RewardFunction]) throws -> [DifferentiableSource] {
    let candidates = functions.compactMap { $0 as? DifferentiableReward }
    var sources: [DifferentiableSource] = [], sourceOfCandidate: [Int: Int] = [:]
    for name in composition.active {
        guard let candidate = candidates.firstIndex(where: { $0.differentiablePerspectives.contains(name) }) else {
            throw FineTuningError("refl backpropagates the reward into the images, but '\(name)' is not differentiable "
                            + "(the gold judge and compressibility are not; brightness and a reward model's proxy_ perspectives are)")
        }
        let weighted = (name: name, weight: composition.weights[name]!)
        if let source = sourceOfCandidate[candidate] {
            sources[source].perspectives.append(weighted)
        } else {
            sourceOfCandidate[candidate] = sources.count
            sources.append((candidates[candidate], [weighted]))
        }
    }
    return sources
}

/// ReFL / DRaFT-K as an objective: inner epochs over the epoch's usable samples, each batch's
/// `loss` backpropagated into the UNet. Needs differentiable perspectives only.
final class ReFLObjective: FineTuningObjective {
    let config: FineTuningConfig
    /// Resolved from the trainer's reward functions when it starts.
    var sources: [DifferentiableSource] = []

    init(config: FineTuningConfig) { self.config = config }

    var metricNames: [String] { [] }
    var usesKLPenalty: Bool { true }
    var usesAdvantages: Bool { false }

    func prepare(rewardFunctions: [any RewardFunction], composition: RewardComposition) throws {
        sources = try differentiableSources(composition, functions: rewardFunctions)
    }

    func train(_ samples: EpochSamples, trainer: FineTuningTrainer, rng: inout RandomGenerator) throws -> [String: Double] {
        let config = config
        // A slice's loss is its mean reward, weighted by its size: the ranks' gradients sum to the batch's.
        return try trainer.trainInBatches(samples.usable, rng: &rng) { slice, _, _ in
            let loss = try self.loss(samples.trajectories, batch: slice, sources: self.sources, policy: trainer.policy,
                                     reference: trainer.reference, beta: trainer.klBeta)
            guard loss.item.isFinite else {
                try trainer.log.event(epoch: trainer.epoch, kind: "skipped", "non-finite ReFL reward in a training batch; not trained on")
                return nil
            }
            try (loss * (Double(slice.count) / Double(config.trainBatch * config.gradientAccumulation))).backward()
            return loss.item
        }.metrics
    }

    func progressText(_ metrics: [String: Double]) -> String { progressFigures(metrics) }

    /// −mean over `batch` of Σ_p w_p·r_p(image), where the last K sampling steps are re-run from the
    /// stored x_{T−K} with gradients, reusing each step's stored noise z = (x_t′ − μ_old)/σ_t
    /// (reparameterized: x_t′ = μ_θ + σ_t z), and the final latent is decoded by the frozen VAE.
    ///
    /// With β > 0, plus β·mean over `batch` of Σ over the K steps of KL(N(μ_θ, σ²) ‖ N(μ_ref, σ²))
    /// on the same x_t (DPOK's penalty on the re-run steps): the two means share the sampler's
    /// linear part in x_t, so μ_θ − μ_ref = c_t·(ε̂_θ − ε̂_ref).
    func loss(_ trajectories: Trajectories, batch: [Int], sources: [DifferentiableSource], policy: LatentDiffusionModel,
              reference: LatentDiffusionModel? = nil, beta: Double = 0) throws -> Tensor {
        let scheduler = try DDIMScheduler(schedule: policy.schedule, stepCount: trajectories.stepCount, eta: config.sampling.eta)
        let first = trajectories.stepCount - config.refl.gradientSteps
        let captions = batch.map { trajectories.prompts[$0] }
        let (text, emptyText) = (try policy.encodeText(captions), try policy.encodeText(captions.map { _ in "" }))
        var x = try trajectories.latents[first].indexSelect(axis: 0, batch)
        var unused = RandomGenerator(seed: 0)
        var kl: Tensor?
        for s in first ..< trajectories.stepCount {
            let t = trajectories.timesteps[s], sigma = trajectories.sigmas[s]
            let next = try trajectories.latents[s + 1].indexSelect(axis: 0, batch)
            let noise = try withNoGrad { try (next - trajectories.means[s].indexSelect(axis: 0, batch)) * (1 / sigma) }
            let timesteps = [Double](repeating: Double(t), count: batch.count)
            let input = config.refl.detachUNetInput ? x.detach() : x
            let epsilon = try policy.guidedEpsilon(input, timesteps: timesteps,
                                                   context: text.context, mask: text.mask, empty: emptyText.context,
                                                   emptyMask: emptyText.mask, guidance: config.sampling.guidance)
            let step = try scheduler.step(modelOutput: epsilon, timestep: t, sample: x, previousSample: next, using: &unused)
            if beta > 0, let reference {
                // The frozen reference sees the same input as the policy, so the loss's gradient
                // through x_t is exact (and with a detached input, dropped for both).
                let theirs = try reference.guidedEpsilon(input, timesteps: timesteps, context: text.context, mask: text.mask,
                                                         empty: emptyText.context, emptyMask: emptyText.mask, guidance: config.sampling.guidance)
                let referenceMean = try scheduler.step(modelOutput: theirs, timestep: t, sample: x, previousSample: next, using: &unused).mean
                let term = try stepKL(mean: step.mean, referenceMean: referenceMean, sigma: sigma)
                kl = try kl.map { try $0 + term } ?? term
            }
            x = try step.mean + noise * sigma
        }
        let images = try policy.vae.decode(x * (1 / policy.vae.scaleFactor.item))
        var reward: Tensor?
        for source in sources {
            let scores = try source.function.differentiableScores(images, prompts: captions, perspectives: source.perspectives.map(\.name))
            for (name, weight) in source.perspectives {
                let weighted = scores[name]! * weight
                if let sum = reward { reward = try sum + weighted } else { reward = weighted }
            }
        }
        let objective = try -(reward!.mean())
        guard let kl else { return objective }
        return try objective + kl.mean() * beta
    }
}
