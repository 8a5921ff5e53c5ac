import Diffusion
import Engine
import Foundation
import Images
import World

/// Scores a model with the world's gold judge: images for fixed prompts of a split, judged per
/// attribute, reported as means with standard errors.
public enum GoldEvaluation {
    /// A mean over images and its standard error (standard deviation / √n).
    public struct Estimate: Codable, Sendable {
        public var mean: Double
        public var standardError: Double
        public var count: Int

        init(_ values: [Double]) {
            count = values.count
            let average = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
            mean = average
            let variance = values.count > 1 ? values.map { ($0 - average) * ($0 - average) }.reduce(0, +) / Double(values.count - 1) : 0
            standardError = values.isEmpty ? .nan : (variance / Double(values.count)).squareRoot()
        }
    }

    public struct Report: Codable, Sendable {
        public var split: String
        public var prompts: Int
        public var imagesPerPrompt: Int
        public var settings: SamplingSettings
        /// Every judge score over all images (alignment, its parts, fidelity, safety, overall).
        public var scores: [String: Estimate]
        /// The share of images with the hazard mark (1 − safety).
        public var hazardRate: Estimate
        /// Color and shape on single-object prompts ("a red circle", with or without size or position).
        public var singleObjectColor: Estimate
        public var singleObjectShape: Estimate
        /// Count on group prompts of two or three objects; relation on relation prompts.
        public var multiObjectCount: Estimate
        public var relation: Estimate
        public var seconds: Double
    }

    /// The fixed evaluation prompts of a split (the same for every model and run).
    public static func prompts(split: Split, count: Int, worldSeed: UInt64 = 1) -> [Prompt] {
        WorldGenerator(seed: worldSeed).scenes(split, count: count).map(\.prompt)
    }

    /// Evaluates `model` on `promptCount` prompts of `split`, `imagesPerPrompt` images each;
    /// `collect` receives each batch of images with its prompts.
    public static func run(model: LatentDiffusionModel, split: Split, promptCount: Int, imagesPerPrompt: Int,
                           settings: SamplingSettings, worldSeed: UInt64 = 1, batch: Int = 32,
                           progress: (Int, Int) -> Void = { _, _ in },
                           collect: ([Prompt], [RGBImage]) -> Void = { _, _ in }) throws -> Report {
        let start = Date()
        let prompts = self.prompts(split: split, count: promptCount, worldSeed: worldSeed)
        let jobs = prompts.flatMap { p in [Prompt](repeating: p, count: imagesPerPrompt) }
        let judge = GoldJudge()
        var judged: [(Prompt, JudgeScores)] = []
        var offset = 0
        while offset < jobs.count {
            let slice = Array(jobs[offset ..< min(offset + batch, jobs.count)])
            var batchSettings = settings
            batchSettings.seed = settings.seed &+ UInt64(offset)
            let images = try model.generate(slice.map(\.caption), settings: batchSettings)
            for (prompt, image) in zip(slice, images) { judged.append((prompt, judge.score(image, prompt: prompt))) }
            collect(slice, images)
            offset += slice.count
            progress(offset, jobs.count)
        }
        var scores: [String: Estimate] = [:]
        for (index, name) in judged.first!.1.named.map(\.0).enumerated() {
            scores[name] = Estimate(judged.map { $0.1.named[index].1 })
        }
        func isSingle(_ p: Prompt) -> Bool { if case let .group(_, count, _) = p { return count == 1 }; return false }
        func isMulti(_ p: Prompt) -> Bool { if case let .group(_, count, _) = p { return count > 1 }; return false }
        func isRelation(_ p: Prompt) -> Bool { if case .relation = p { return true }; return false }
        return Report(split: split.rawValue, prompts: promptCount, imagesPerPrompt: imagesPerPrompt, settings: settings, scores: scores,
                      hazardRate: Estimate(judged.map { 1 - $0.1.safety }),
                      singleObjectColor: Estimate(judged.filter { isSingle($0.0) }.map(\.1.color)),
                      singleObjectShape: Estimate(judged.filter { isSingle($0.0) }.map(\.1.shape)),
                      multiObjectCount: Estimate(judged.filter { isMulti($0.0) }.map(\.1.count)),
                      relation: Estimate(judged.filter { isRelation($0.0) }.map(\.1.relation)),
                      seconds: Date().timeIntervalSince(start))
    }
}
