import Diffusion
import Engine
import Layers

extension FineTuningTrainer {
    /// The epoch's `promptsPerEpoch` prompt groups of `imagesPerPrompt` images and their
    /// trajectories, sampled in batches of `samplingBatch`, each with a random stream of its own
    /// drawn from `rng` — so that the ranks of a distributed run each sample their batches
    /// (`ownBatches`) and gather the same epoch. `groups[i]` numbers sample i's group (0, 0, …, 1, 1, …);
    /// `promptIndices[i]` is its prompt's index in the pool. A pool smaller than `promptsPerEpoch`
    /// repeats prompts, but each repetition is a group of its own, so group baselines never
    /// merge two groups' images.
    func sampleEpoch(using rng: inout RandomGenerator) throws -> (groups: [Int], promptIndices: [Int], trajectories: Trajectories) {
        var chosen = promptPool.indices.map { $0 }
        chosen.shuffle(using: &rng)
        let groups = (0..<config.promptsPerEpoch).flatMap { [Int](repeating: $0, count: config.imagesPerPrompt) }
        let promptIndices = groups.map { chosen[$0 % chosen.count] }
        let prompts = promptIndices.map { promptPool[$0] }
        // One standard normal latent per group of `size` consecutive images; with `antithetic`,
        // every second image of a group gets its negative.
        func noise(perGroupOf size: Int, antithetic: Bool) throws -> Tensor {
            let one = [policy.config.vae.latentChannels, policy.latentSize, policy.latentSize]
            let z = try Tensor.randn([(prompts.count + size - 1) / size] + one, using: &rng)
                .indexSelect(axis: 0, (0..<prompts.count).map { $0 / size })
            guard antithetic else { return z }
            return try z * Tensor((0..<prompts.count).map { $0 % 2 == 0 ? 1 : -1 }, shape: [prompts.count, 1, 1, 1])
        }
        func perPromptNoise() throws -> Tensor { try noise(perGroupOf: config.imagesPerPrompt, antithetic: false) }
        func perSampleNoise() throws -> Tensor? { config.antitheticNoise ? try noise(perGroupOf: 2, antithetic: true) : nil }
        // x_T when the config shares it, then z for each step in `sharedNoiseStepRange`; the
        // other noise is the sampler's own draw, or antithetic pairs.
        let initialLatents = config.shareInitialNoise ? try perPromptNoise() : try perSampleNoise()
        var stepNoise: [Int: Tensor] = [:]
        for step in 0..<config.sampling.steps {
            let shared = FineTuningConfig.halfOpenRange(config.sharedNoiseStepRange)?.contains(step) ?? false
            stepNoise[step] = shared ? try perPromptNoise() : try perSampleNoise()
        }
        let starts = Array(stride(from: 0, to: prompts.count, by: config.samplingBatch))
        let seeds = starts.map { _ in rng.next() }
        let mine = Set(ownBatches(count: prompts.count))
        var parts: [(start: Int, trajectories: Trajectories)] = []
        // LoRA adapters merged for the epoch's sampling: one GEMM per adapted projection.
        try withMergedAdapters(in: policy.unet) {
            for (start, seed) in zip(starts, seeds) where mine.contains(start) {
                let range = start ..< min(start + config.samplingBatch, prompts.count)
                let initial = try initialLatents.map { try $0.indexSelect(axis: 0, Array(range)) }
                var batchRNG = RandomGenerator(seed: seed)
                parts.append((start, try policy.sampleTrajectories(Array(prompts[range]), settings: config.sampling, initialLatents: initial,
                                                                   stepNoise: { step in try stepNoise[step]?.indexSelect(axis: 0, Array(range)) },
                                                                   using: &batchRNG)))
            }
        }
        return (groups, promptIndices, try gatherTrajectories(parts))
    }

    /// The samples the KL drift is measured on: the first `kl.samples` of `count` (all when 0).
    func klIndices(count: Int) -> [Int] {
        Array(0 ..< (config.kl.samples == 0 ? count : min(config.kl.samples, count)))
    }

    /// Per-step KL between the policy's and the reference's Gaussians on the stored trajectories.
    /// Both means are recomputed with the same batches, so identical models give exactly 0. The
    /// batches are shared among the ranks and their values gathered.
    func klDrift(_ trajectories: Trajectories, indices: [Int]) throws -> KLSummary {
        var perStep = [[Double]](repeating: [Double](repeating: 0, count: indices.count), count: trajectories.stepCount)
        // Neither model changes here: the convolutions' transformed kernels are kept.
        try withNoGrad { try withFixedKernels {
            for start in communicator.batchStarts(count: indices.count, batch: config.samplingBatch) {
                let batch = Array(indices[start ..< min(start + config.samplingBatch, indices.count)])
                let captions = batch.map { trajectories.prompts[$0] }
                let context = try policy.encodeText(captions), empty = try policy.encodeText(captions.map { _ in "" })
                for s in 0..<trajectories.stepCount {
                    let mine = try policy.stepLogProb(trajectories, step: s, indices: batch, context: context, empty: empty, settings: config.sampling)
                    let theirs = try reference.stepLogProb(trajectories, step: s, indices: batch, context: context, empty: empty,
                                                           settings: config.sampling)
                    perStep[s].replaceSubrange(start ..< start + batch.count, with: try stepKL(mean: mine.mean, referenceMean: theirs.mean, sigma: mine.sigma).values)
                }
            }
        } }
        // Each rank filled its batches and left zeros elsewhere: the sum is every batch's values.
        if communicator.size > 1 {
            let sums = try sumOverRanks(perStep.flatMap { $0 })
            perStep = (0..<trajectories.stepCount).map { Array(sums[$0 * indices.count ..< ($0 + 1) * indices.count]) }
        }
        return KLSummary(perStep: perStep)
    }
}
