import Engine
import Foundation
import Images
import Inputs
import Rewards
import World

// Online reward learning: during fine-tuning the reward model is re-trained on the policy's own
// images, labeled by the simulated annotators (the same ones that labeled its training data), so
// that what the policy found and the reward model misjudges gets labels. For a labeled pair
// (w ≻ l) and each paired perspective p of the model, the step's loss is Bradley–Terry's
//
//     L = mean over labeled (pair, p) of −log σ(r_p(w) − r_p(l)),
//
// minimized by AdamW over all of the reward model's parameters.

extension LearnedReward: RefreshableReward {
    public func refresh(images: [RGBImage], prompts: [String], groups: [Int], settings: RewardRefreshSettings,
                        using rng: inout RandomGenerator) throws -> (loss: Double, agreementBefore: Double) {
        precondition(images.count == prompts.count && prompts.count == groups.count, "\(images.count) images, \(prompts.count) prompts, \(groups.count) groups")
        let aspects = perspectives.filter { SimulatedAnnotator.pairedAspects.contains($0) }
        guard !aspects.isEmpty else { throw RewardError("the reward model has no paired perspective (alignment, fidelity, overall) to refresh") }
        // The annotators read each image once; an image whose prompt is outside the world's grammar is left out.
        let judge = GoldJudge()
        let scores: [JudgeScores?] = zip(images, prompts).map { image, prompt in
            (try? Prompt(parsing: prompt)).map { judge.score(image, prompt: $0) }
        }
        var byGroup: [Int: [Int]] = [:]
        for i in images.indices where scores[i] != nil { byGroup[groups[i], default: []].append(i) }
        let pairs = byGroup.keys.sorted().flatMap { group -> [(Int, Int)] in
            let members = byGroup[group]!
            return members.indices.flatMap { a in members[(a + 1)...].map { (members[a], $0) } }
        }
        guard !pairs.isEmpty else { return (.nan, .nan) }
        let parameters = model.namedParameters()
        if refreshOptimizer == nil { refreshOptimizer = AdamW(parameters, learningRate: settings.learningRate, weightDecay: 0) }
        refreshOptimizer!.learningRate = settings.learningRate
        var losses: [Double] = [], agreementBefore = Double.nan
        for step in 0..<settings.steps {
            // Labels: (winner, loser, aspect column) for each drawn pair the annotator does not tie.
            var labeled: [(winner: Int, loser: Int, aspect: String)] = []
            for _ in 0..<settings.pairsPerStep {
                let (i, j) = pairs[Int(rng.next() % UInt64(pairs.count))]
                for aspect in aspects {
                    guard let preferred = SimulatedAnnotator.preference(aspect, (scores[i]!, images[i]), (scores[j]!, images[j]),
                                                                        settings: AnnotatorSettings(), using: &rng) else { continue }
                    labeled.append(preferred == 0 ? (i, j, aspect) : (j, i, aspect))
                }
            }
            guard !labeled.isEmpty else { continue }
            let rows = Array(Set(labeled.flatMap { [$0.winner, $0.loser] })).sorted()
            let rowOf = Dictionary(uniqueKeysWithValues: rows.enumerated().map { ($0.element, $0.offset) })
            for p in parameters { p.tensor.grad = nil }  // ReFL's backward may have left gradients here
            let all = try rewards(ImageTensors.tensor(rows.map { images[$0] }), prompts: rows.map { prompts[$0] })
            var total: Tensor?
            var agree = 0.0
            for aspect in aspects {
                let mine = labeled.filter { $0.aspect == aspect }
                guard !mine.isEmpty else { continue }
                let column = try model.column(all, aspect)
                let chosen = try column.indexSelect(axis: 0, mine.map { rowOf[$0.winner]! })
                let rejected = try column.indexSelect(axis: 0, mine.map { rowOf[$0.loser]! })
                agree += zip(chosen.values, rejected.values).reduce(0) { $0 + pairAgreement(preferred: $1.0, other: $1.1) }
                let loss = try bradleyTerryLoss(chosen: chosen, rejected: rejected, reduction: .sum)
                total = try total.map { try $0 + loss } ?? loss
            }
            if step == 0 { agreementBefore = agree / Double(labeled.count) }
            let loss = try total! * (1 / Double(labeled.count))
            try loss.backward()
            try refreshOptimizer!.step()
            for p in parameters { p.tensor.grad = nil }
            losses.append(loss.item)
        }
        return (losses.isEmpty ? .nan : losses.reduce(0, +) / Double(losses.count), agreementBefore)
    }

    public func refreshState() throws -> [String: Tensor] {
        guard let refreshOptimizer else { return [:] }
        var state: [String: Tensor] = [:]
        for p in model.namedParameters() { state["weights." + p.name] = p.tensor }
        for (name, tensor) in refreshOptimizer.state() { state["optimizer." + name] = tensor }
        return state
    }

    public func restoreRefreshState(_ state: [String: Tensor]) throws {
        guard !state.isEmpty else { return }
        let weights = state.filter { $0.key.hasPrefix("weights.") }
        try model.loadParameters(Dictionary(uniqueKeysWithValues: weights.map { (String($0.key.dropFirst("weights.".count)), $0.value) }))
        let optimizer = AdamW(model.namedParameters(), learningRate: 1e-4, weightDecay: 0)
        let saved = state.filter { $0.key.hasPrefix("optimizer.") }
        try optimizer.loadState(Dictionary(uniqueKeysWithValues: saved.map { (String($0.key.dropFirst("optimizer.".count)), $0.value) }))
        refreshOptimizer = optimizer
    }
}
