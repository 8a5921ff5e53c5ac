import Diffusion
import Distributed
import Engine
import Evaluation
import Foundation
import Images
import Inputs
import Rewards
import World

/// Settings of filtered self-training (`"objective": "selfTraining"`).
public struct SelfTrainingSettings: Codable, Equatable, Sendable {
    /// How an epoch's samples are kept: "topK" (the `k` best of each prompt group, RAFT),
    /// "threshold" (every sample at or above `threshold`, ReST's filter) or "weights" (every
    /// sample at or above `threshold`, weighted ∝ exp(r / `temperature`), reward-weighted
    /// likelihood).
    public var selection = SelfTrainingSelection.topK
    public var k = 1
    /// No sample with a lower reward is kept, whatever the selection (0: with gold alignment, an
    /// image that is wrong is never trained on).
    public var threshold = 0.0
    /// τ of the "weights" selection.
    public var temperature = 0.25
    /// Selected samples kept across epochs, oldest dropped first (ReST's growing dataset); 0
    /// trains on the current epoch's selection only.
    public var bufferSize = 0
    /// Share of each training batch's rows that are pretraining data (the world's training split,
    /// rendered and encoded by the frozen VAE), so the model keeps what it knew; in [0, 1).
    public var anchorShare = 0.5
    /// Share of trained captions replaced by "" (as in pretraining), so the unconditional branch
    /// that classifier-free guidance needs keeps learning too.
    public var captionDropout = 0.1
    /// The training timesteps [first, end) the denoising loss draws from; empty: all. Layout,
    /// count and relations are decided at high noise.
    public var timestepRange: [Int] = []
    /// Whether anchor scenes must pass the selection too: each rendered scene is scored by the
    /// run's reward and kept only at or above `threshold`, so that pretraining data does not teach
    /// back what the selection removes (the hazard mark, when selecting by a safety head).
    public var filterAnchors = false
    /// Hindsight relabeling: a sample below `threshold` for its own prompt is scored by the run's
    /// reward against up to this many of the prompt's contrastive prompts (one color, shape, count
    /// or relation changed); when one reaches `threshold`, the sample is kept with that caption —
    /// a correct pair for a prompt it was not asked for. 0: off.
    public var relabelCandidates = 0
    /// Compositing: for each caption of the epoch none of whose samples reached `threshold` (or
    /// every caption, with `compositeAllCaptions`), up to this many random layouts of its objects,
    /// cut from the policy's own samples of each object alone (`partsPerObject` per object
    /// caption, kept when they reach `threshold` for it); the `compositesKept` layouts the reward
    /// scores highest are kept with the caption when they reach `threshold`. Correct images of
    /// bindings the model cannot yet draw, made of objects it can. 0: off.
    public var composites = 0
    /// Samples drawn of each object caption a composite needs ("a small red circle").
    public var partsPerObject = 2
    /// Layouts kept per caption (the best that reach `threshold`).
    public var compositesKept = 1
    /// Composite every caption of the epoch, not only those no sample drew correctly.
    public var compositeAllCaptions = false

    public init() {}
}

// Hindsight relabeling (Andrychowicz et al. 2017, "Hindsight Experience Replay": a failed attempt
// at goal g is a success at the goal it reached; Betker et al. 2023, "Improving Image Generation
// with Better Captions": training on captions that describe the image improves prompt following).
// For a sample x drawn for prompt y with r(x, y) < θ and candidates y′₁ … y′ₖ ∈ C(y):
//
//     y* = argmax_j r(x, y′_j),   kept with caption y* when r(x, y*) ≥ θ.

/// The candidate a sample is relabeled with: the index of the highest of `candidateRewards` (ties
/// to the earlier), when it reaches `threshold` and the sample's own reward does not; nil otherwise.
public func hindsightCandidate(ownReward: Double, candidateRewards: [Double], threshold: Double) -> Int? {
    guard !(ownReward >= threshold) else { return nil }
    var best: Int?
    for (j, reward) in candidateRewards.enumerated() where reward.isFinite && reward >= threshold {
        if best == nil || reward > candidateRewards[best!] { best = j }
    }
    return best
}

/// The ways filtered self-training keeps samples.
public enum SelfTrainingSelection: String, Codable, Sendable {
    case topK, threshold, weights
}

/// Which samples filtered self-training keeps and with what weight (mean 1 over the kept ones):
/// among samples whose reward is at least `threshold`, the `k` best of each group (ties to the
/// earlier sample) with weight 1, all of them with weight 1, or all of them weighted
/// n·softmax(r / τ). Returns (sample index, weight) in sample order.
public func selfTrainingSelection(rewards: [Double], groups: [Int], settings: SelfTrainingSettings) -> [(index: Int, weight: Double)] {
    precondition(rewards.count == groups.count, "\(rewards.count) rewards for \(groups.count) group labels")
    let eligible = rewards.indices.filter { rewards[$0].isFinite && rewards[$0] >= settings.threshold }
    switch settings.selection {
    case .threshold:
        return eligible.map { ($0, 1) }
    case .weights:
        let weights = advantageWeights(advantages: eligible.map { rewards[$0] }, temperature: settings.temperature)
        return Array(zip(eligible, weights)).map { ($0.0, $0.1) }
    case .topK:
        var byGroup: [Int: [Int]] = [:]
        for i in eligible { byGroup[groups[i], default: []].append(i) }
        var kept: [Int] = []
        for members in byGroup.values {
            // Among equal rewards the earlier sample wins.
            kept += members.sorted { rewards[$0] != rewards[$1] ? rewards[$0] > rewards[$1] : $0 < $1 }.prefix(settings.k)
        }
        return kept.sorted().map { ($0, 1) }
    }
}

/// Filtered self-training (RAFT, Dong et al. 2023; ReST, Gulcehre et al. 2023; reward-weighted
/// likelihood with a pretraining term, Lee et al. 2023). Each epoch keeps the samples the reward
/// selects (`selfTrainingSelection`), adds them to a buffer of at most `bufferSize` (or replaces
/// it), and fits the model to them with its pretraining loss — the conditional ε-prediction error
/// on the sampler's own final latents, with caption dropout — mixed with pretraining data:
///
///     L = Σ_{i ∈ kept} w_i ‖ε̂_θ(x_t^i, t, c_i) − ε‖² + Σ_{j ∈ anchor} ‖ε̂_θ(x_t^j, t, c_j) − ε‖²,
///
/// over all rows of a batch, divided by their count (and by `gradientAccumulation`).
/// Unlike advantage-weighted regression it trains the conditional branch, as pretraining did,
/// so guidance acts on the new model as it did on the base.
final class SelfTrainingObjective: FineTuningObjective {
    let config: FineTuningConfig
    var settings: SelfTrainingSettings { config.selfTraining }
    /// The kept samples: final latent [1, C, h, w], the caption it is fitted with (its prompt, or
    /// the one it was relabeled with), weight.
    private(set) var buffer: [(latent: Tensor, caption: String, weight: Double)] = []
    let world = WorldGenerator(seed: 0)
    /// Captions the anchor never renders: the tuning and report sets of the run's prompt pool
    /// (`GoldEvaluation.unseenPrompts`), so that scores on them stay free of anything fine-tuning
    /// showed the model (`reservedCaptions(pool:)`, computed at its first use).
    private var reservedCache: Set<String>?

    /// Anchor scenes drawn and rejected by the reward this epoch (`filterAnchors`).
    private var anchorsDrawn = 0, anchorsRejected = 0

    init(config: FineTuningConfig) { self.config = config }

    func prepare(rewardFunctions: [any RewardFunction], composition: RewardComposition) throws {
        if (settings.filterAnchors || settings.relabelCandidates > 0 || settings.composites > 0) && !composition.standardize.isEmpty {
            let key = settings.filterAnchors ? "filterAnchors" : settings.relabelCandidates > 0 ? "relabelCandidates" : "composites"
            throw FineTuningError("selfTraining.\(key) compares rewards with the threshold; "
                                  + "rewards standardized over a batch (rewards.standardize) have no fixed scale to compare")
        }
    }

    /// `count` anchor scenes with their renders: with `filterAnchors`, only scenes whose reward
    /// under the run's composition is at least `threshold` (drawn until there are enough).
    func anchors(_ count: Int, trainer: FineTuningTrainer, using rng: inout RandomGenerator) throws -> (scenes: [Scene], images: [RGBImage]) {
        let renderer = Renderer(size: trainer.policy.config.imageSize)
        var scenes: [Scene] = [], images: [RGBImage] = []
        while scenes.count < count {
            let candidates = anchorScenes(count - scenes.count, pool: trainer.promptPool, using: &rng)
            let rendered = candidates.map(renderer.render)
            var keep = [Bool](repeating: true, count: candidates.count)
            if settings.filterAnchors {
                // Each rank scores every size-th candidate; the scores are shared, so all keep alike.
                let rewards = try trainer.sharedScores(trainer.composer, images: rendered, prompts: candidates.map(\.caption),
                                                       indices: Array(candidates.indices),
                                                       own: trainer.communicator.ownRows(of: candidates.count)).total
                keep = rewards.map { $0.isFinite && $0 >= settings.threshold }
                anchorsDrawn += candidates.count
                anchorsRejected += keep.filter { !$0 }.count
                guard anchorsDrawn < 64 || anchorsRejected < anchorsDrawn * 9 / 10 else {
                    throw FineTuningError("selfTraining.filterAnchors: the reward rejects \(anchorsRejected) of \(anchorsDrawn) "
                                          + "pretraining scenes; lower the threshold or turn the filter off")
                }
            }
            for (i, kept) in keep.enumerated() where kept {
                scenes.append(candidates[i])
                images.append(rendered[i])
            }
        }
        return (scenes, images)
    }

    /// `count` rendered training-split scenes whose captions are not reserved, drawn with `rng`.
    func anchorScenes(_ count: Int, pool: [String], using rng: inout RandomGenerator) -> [Scene] {
        let reserved = reservedCaptions(pool: pool)
        var scenes: [Scene] = []
        while scenes.count < count {
            let scene = world.scene(.train, index: Int(rng.next() % 100_000_000))
            if !reserved.contains(scene.caption) { scenes.append(scene) }
        }
        return scenes
    }

    /// The tuning and report captions of a run on `pool`, computed once.
    func reservedCaptions(pool: [String]) -> Set<String> {
        if let reserved = reservedCache { return reserved }
        let reserved = Set(GoldEvaluation.unseenPrompts(split: .validation, excluding: Set(pool), count: 256).map(\.caption))
        reservedCache = reserved
        return reserved
    }

    var metricNames: [String] {
        ["selected", "selected_reward", "buffer_size", "within_prompt_diversity"] + (settings.filterAnchors ? ["anchors_rejected"] : [])
            + (settings.relabelCandidates > 0 ? ["relabeled"] : [])
            + (settings.composites > 0 ? ["composited", "composite_parts_sampled", "composite_parts_kept"] : [])
    }
    var usesAdvantages: Bool { false }

    func checkTrainedTimesteps(inside gate: Range<Int>, samplingTimesteps: [Int], trainSteps: Int) throws {
        try requireTimesteps(settings.timestepRange, named: "selfTraining.timestepRange", inside: gate,
                             gatePair: config.loraTimestepRange, trainSteps: trainSteps)
    }

    func train(_ samples: EpochSamples, trainer: FineTuningTrainer, rng: inout RandomGenerator) throws -> [String: Double] {
        let trajectories = samples.trajectories
        guard let finalLatents = trajectories.latents.last else { return UpdateStatistics().metrics }
        let usable = samples.usable
        let chosen = selfTrainingSelection(rewards: usable.map { samples.rewards[$0] }, groups: usable.map { samples.groups[$0] },
                                           settings: settings).map { (index: usable[$0.index], weight: $0.weight) }
        let relabeled = settings.relabelCandidates > 0 ? try relabel(samples, trainer: trainer) : []
        let composed = settings.composites > 0 ? try composites(samples, trainer: trainer, using: &rng) : nil
        let fresh = try chosen.map { (latent: try finalLatents.indexSelect(axis: 0, [$0.index]),
                                      caption: trainer.promptPool[samples.promptIndices[$0.index]], weight: $0.weight) }
            + relabeled.map { (latent: try finalLatents.indexSelect(axis: 0, [$0.index]), caption: $0.caption, weight: 1.0) }
            + (composed?.kept ?? []).map { (latent: $0.latent, caption: $0.caption, weight: 1.0) }
        if settings.bufferSize > 0 {
            buffer = Array((buffer + fresh).suffix(settings.bufferSize))
        } else {
            buffer = fresh
        }
        var metrics = ["selected": Double(chosen.count),
                       "selected_reward": chosen.isEmpty ? .nan : chosen.map { samples.rewards[$0.index] }.reduce(0, +) / Double(chosen.count),
                       "buffer_size": Double(buffer.count),
                       "within_prompt_diversity": withinGroupDistance(finalLatents, groups: samples.groups, members: usable)]
        if settings.relabelCandidates > 0 { metrics["relabeled"] = Double(relabeled.count) }
        if let composed {
            metrics["composited"] = Double(composed.kept.count)
            metrics["composite_parts_sampled"] = Double(composed.partsSampled)
            metrics["composite_parts_kept"] = Double(composed.partsKept)
        }
        anchorsDrawn = 0
        anchorsRejected = 0
        var statistics = UpdateStatistics()
        if !buffer.isEmpty {
            statistics = try trainer.trainInBatchRows(Array(buffer.indices), rng: &rng) { batch, ranks, rng in
                guard let part = try self.loss(batch: batch, ranks: ranks, trainer: trainer, using: &rng) else { return nil }
                try (part.loss * (1 / Double(config.gradientAccumulation))).backward()
                return (part.loss.item / part.share, part.share)
            }
        }
        metrics.merge(statistics.metrics) { $1 }
        if settings.filterAnchors { metrics["anchors_rejected"] = anchorsDrawn > 0 ? Double(anchorsRejected) / Double(anchorsDrawn) : .nan }
        return metrics
    }

    /// The usable samples below `threshold` for their own prompt that reach it for one of its
    /// contrastive prompts (`hindsightCandidate`), with that prompt's caption. A prompt outside
    /// the world's grammar has no candidates.
    func relabel(_ samples: EpochSamples, trainer: FineTuningTrainer) throws -> [(index: Int, caption: String)] {
        let reserved = reservedCaptions(pool: trainer.promptPool)
        var images: [RGBImage] = [], captions: [String] = [], owners: [(index: Int, range: Range<Int>)] = []
        for i in samples.usable where !(samples.rewards[i] >= settings.threshold) {
            guard let prompt = try? Prompt(parsing: samples.trajectories.prompts[i]) else { continue }
            // Never a caption scores are reported on, nor a composition held out of training.
            let candidates = prompt.contrastive(limit: settings.relabelCandidates).map(\.prompt)
                .filter { !world.heldOut.contains($0) && !reserved.contains($0.caption) }.map(\.caption)
            owners.append((i, captions.count ..< captions.count + candidates.count))
            captions += candidates
            images += [RGBImage](repeating: samples.trajectories.images[i], count: candidates.count)
        }
        guard !captions.isEmpty else { return [] }
        let rewards = try trainer.composer.score(images, prompts: captions).total
        return owners.compactMap { owner in
            hindsightCandidate(ownReward: samples.rewards[owner.index], candidateRewards: Array(rewards[owner.range]),
                               threshold: settings.threshold).map { (owner.index, captions[owner.range.lowerBound + $0]) }
        }
    }

    /// Composites for the epoch's captions that no sample drew correctly, or for all of them
    /// (`composites`, `compositeAllCaptions`): each caption's object captions sampled from the policy (`partsPerObject` each, with the run's
    /// sampling settings), kept where the reward reaches `threshold` for them and cut out; then up
    /// to `composites` random layouts of cutouts per caption, scored by the reward against the
    /// caption, the `compositesKept` best kept when they reach `threshold` — encoded by the frozen VAE like the
    /// pretraining anchors. Captions outside the world's grammar are skipped.
    func composites(_ samples: EpochSamples, trainer: FineTuningTrainer, using rng: inout RandomGenerator) throws
        -> (kept: [(latent: Tensor, caption: String)], partsSampled: Int, partsKept: Int) {
        let reached = Set(samples.usable.filter { samples.rewards[$0] >= settings.threshold }.map { samples.groups[$0] })
        var targets: [Prompt] = [], seen = Set<String>()
        for i in samples.usable where settings.compositeAllCaptions || !reached.contains(samples.groups[i]) {
            let caption = samples.trajectories.prompts[i]
            guard seen.insert(caption).inserted, let prompt = try? Prompt(parsing: caption) else { continue }
            targets.append(prompt)
        }
        let partCaptions = Array(Set(targets.flatMap { $0.parts.map(\.caption) })).sorted()
        guard !partCaptions.isEmpty else { return ([], 0, 0) }
        let drawn = partCaptions.flatMap { [String](repeating: $0, count: settings.partsPerObject) }
        var sampling = config.sampling
        sampling.seed = rng.next()
        let images = try trainer.policy.generate(drawn, settings: sampling)
        let rewards = try trainer.composer.score(images, prompts: drawn).total
        var cutouts: [String: [ObjectCutout]] = [:]
        for (i, caption) in drawn.enumerated() where rewards[i] >= settings.threshold {
            if let cutout = ObjectCutout(from: images[i]) { cutouts[caption, default: []].append(cutout) }
        }
        let partsKept = cutouts.values.map(\.count).reduce(0, +)
        let found = try bestComposites(for: targets, cutouts: cutouts, proposals: settings.composites, keep: settings.compositesKept, size: trainer.policy.config.imageSize,
                                       threshold: settings.threshold, score: { try trainer.composer.score($0, prompts: $1).total },
                                       next: { rng.next() })
        let keptImages = found.map(\.image), keptCaptions = found.map(\.prompt.caption)
        guard !keptImages.isEmpty else { return ([], drawn.count, partsKept) }
        let latents = try trainer.policy.encodeLatents(keptImages)
        let kept = try keptCaptions.indices.map { (latent: try latents.indexSelect(axis: 0, [$0]), caption: keptCaptions[$0]) }
        return (kept, drawn.count, partsKept)
    }

    /// This rank's part of the mean of the batch's weighted denoising errors and of its anchor
    /// rows' errors: the sum over its rows (`ranks.ownRows`) divided by the batch's row count,
    /// with their share of the rows (nil when it has none). The anchors, caption dropout, timesteps and noise of every
    /// row are drawn on every rank alike, so the ranks' parts add up to one process's loss.
    func loss(batch: [Int], ranks: any Communicator, trainer: FineTuningTrainer, using rng: inout RandomGenerator) throws -> (loss: Tensor, share: Double)? {
        let policy = trainer.policy
        var latents = try concat(batch.map { buffer[$0].latent }, axis: 0)
        var captions = batch.map { buffer[$0].caption }
        var weights = batch.map { buffer[$0].weight }
        let anchors = anchorCount(forBatchOf: batch.count)
        let own = ranks.ownRows(of: batch.count + anchors)
        if anchors > 0 {
            let (scenes, images) = try self.anchors(anchors, trainer: trainer, using: &rng)
            // Only this rank's anchor rows are encoded; the others' stay zero (their loss is another rank's).
            let mine = own.filter { $0 >= batch.count }.map { $0 - batch.count }
            let encoded = mine.isEmpty ? nil : try policy.encodeLatents(mine.map { images[$0] })
            let zero = Tensor(zeros: [1] + Array(latents.shape.dropFirst()), dtype: latents.dtype)
            let rows = try (0..<anchors).map { j in try mine.firstIndex(of: j).map { try encoded!.indexSelect(axis: 0, [$0]) } ?? zero }
            latents = try concat([latents] + rows, axis: 0)
            captions += scenes.map(\.caption)
            weights += [Double](repeating: 1, count: anchors)
        }
        captions = captions.map { rng.uniform() < settings.captionDropout ? "" : $0 }
        guard !own.isEmpty else { return nil }
        let total = try policy.weightedDenoisingLoss(x0: latents, captions: captions, weights: weights, guidance: 1,
                                                     timesteps: FineTuningConfig.halfOpenRange(settings.timestepRange),
                                                     rows: own, using: &rng)
        return (total * (1 / Double(captions.count)), Double(own.count) / Double(captions.count))
    }

    /// Anchor rows added to a batch of `n` selected rows so that they make up `anchorShare` of it.
    func anchorCount(forBatchOf n: Int) -> Int {
        Int((Double(n) * settings.anchorShare / (1 - settings.anchorShare)).rounded())
    }

    func progressText(_ metrics: [String: Double]) -> String {
        progressFigures(metrics, [("kept", "selected", "%.0f"), ("kept reward", "selected_reward", "%.3f"), ("buffer", "buffer_size", "%.0f")])
    }

    // The buffer, so that a resumed run trains on what the uninterrupted one would.
    func checkpointState() throws -> [String: Tensor] {
        guard !buffer.isEmpty else { return [:] }
        return ["latents": try concat(buffer.map(\.latent), axis: 0),
                "captions": try captionTensor(buffer.map(\.caption)),
                "weights": try Tensor(buffer.map(\.weight), shape: [buffer.count], dtype: .float64)]
    }

    func restore(_ state: [String: Tensor]) throws {
        guard !state.isEmpty else { buffer = []; return }
        guard let latents = state["latents"], let captionBytes = state["captions"], let weights = state["weights"],
              let captions = captionsFromTensor(captionBytes), latents.shape.first == captions.count, captions.count == weights.count else {
            throw FineTuningError("the checkpoint's self-training buffer is incomplete")
        }
        buffer = try (0..<captions.count).map { i in
            (latent: try latents.indexSelect(axis: 0, [i]), caption: captions[i], weight: weights.values[i])
        }
    }
}

/// Captions as one tensor of their UTF-8 bytes, each followed by a 0 (captions hold no NUL), for a
/// checkpoint; `captionsFromTensor` reads them back (nil when the bytes are not such a list).
func captionTensor(_ captions: [String]) throws -> Tensor {
    let bytes: [Double] = captions.flatMap { caption -> [Double] in caption.utf8.map { Double($0) } + [0] }
    return try Tensor(bytes, shape: [bytes.count], dtype: .float64)
}

func captionsFromTensor(_ tensor: Tensor) -> [String]? {
    var captions: [String] = [], current: [UInt8] = []
    for value in tensor.values {
        guard value >= 0, value < 256, value == value.rounded() else { return nil }
        if value == 0 {
            guard let caption = String(bytes: current, encoding: .utf8) else { return nil }
            captions.append(caption)
            current = []
        } else {
            current.append(UInt8(value))
        }
    }
    return current.isEmpty ? captions : nil
}

/// Mean root-mean-square distance between the final latents of two images of the same group
/// (over all such pairs among `members`): how different a prompt's images still are, so that a
/// collapse of diversity shows.
func withinGroupDistance(_ latents: Tensor, groups: [Int], members: [Int]) -> Double {
    let values = latents.values, size = latents.count / max(latents.shape.first ?? 1, 1)
    var total = 0.0, pairs = 0
    for (a, i) in members.enumerated() {
        for j in members[(a + 1)...] where groups[i] == groups[j] {
            var squares = 0.0
            for d in 0..<size { let diff = values[i * size + d] - values[j * size + d]; squares += diff * diff }
            total += (squares / Double(size)).squareRoot()
            pairs += 1
        }
    }
    return pairs > 0 ? total / Double(pairs) : .nan
}
