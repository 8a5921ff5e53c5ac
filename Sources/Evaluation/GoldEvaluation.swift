import Diffusion
import Distributed
import Engine
import Foundation
import Images
import Statistics
import World

/// Scores a model with the world's gold judge: images for fixed prompts of a split, judged per
/// attribute, reported as means with standard errors clustered by prompt.
public enum GoldEvaluation {
    /// A mean with its standard error clustered by prompt (`Statistics.Estimate`).
    public typealias Estimate = Statistics.Estimate

    public struct Report: Codable, Sendable {
        /// The prompts' split, or the prompt file they came from.
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
        /// Best-of-N: how many candidates each kept image was chosen from (1: plain sampling) and
        /// by what.
        public var bestOf = 1
        public var selectedBy: String? = nil
        /// Feynman–Kac steering: the settings the images were steered with (nil: not steered;
        /// `bestOf` is then the particle count and `selectedBy` the reward).
        public var steering: SteeringSettings? = nil
        /// Each image's prompt (an index into the split's fixed prompts), in generation order.
        public var imagePrompts: [Int]
        /// Every judge score of every image, in generation order: what a paired comparison of two
        /// models on the same prompts and seeds needs.
        public var imageScores: [String: [Double]]

        /// `other` minus this report, score by score, paired image by image and clustered by
        /// prompt; fails unless both judged the same prompts with the same sampling settings.
        public func difference(_ other: Report) throws -> [String: Estimate] {
            guard other.split == split, other.imagePrompts == imagePrompts, other.settings == settings else {
                throw EvaluationError("the two evaluations used different prompts or sampling settings; a paired comparison needs the same")
            }
            var result: [String: Estimate] = [:]
            for (name, mine) in imageScores {
                if let theirs = other.imageScores[name] { result[name] = Estimate.paired(theirs, mine, clusters: imagePrompts) }
            }
            return result
        }

        /// Adds a score of every image under `name` (a reward model's head, say), estimated and
        /// compared like the judge's own; `values[j]` belongs to image j in generation order.
        public mutating func addScore(_ name: String, _ values: [Double]) throws {
            guard values.count == imagePrompts.count else {
                throw EvaluationError("\(name): \(values.count) scores for \(imagePrompts.count) images")
            }
            guard scores[name] == nil else { throw EvaluationError("the report already has a score named '\(name)'") }
            imageScores[name] = values
            scores[name] = Estimate(values, clusters: imagePrompts)
        }
    }

    /// An evaluation that cannot be made as asked, in one line.
    public struct EvaluationError: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// The fixed evaluation prompts of a split (the same for every model and run).
    public static func prompts(split: Split, count: Int, worldSeed: UInt64 = 1) -> [Prompt] {
        WorldGenerator(seed: worldSeed).scenes(split, count: count).map(\.prompt)
    }

    /// The first `count` distinct captions of a text file (one per line), each parsed as a world
    /// prompt; fails in one line naming the file (and the line of a caption outside the grammar).
    public static func prompts(file path: String, count: Int) throws -> [Prompt] {
        guard let text = try? String(contentsOf: URL(fileURLWithPath: path), encoding: .utf8) else {
            throw EvaluationError("'\(path)' is not a readable prompt file")
        }
        var seen = Set<String>(), prompts: [Prompt] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where prompts.count < count {
            let caption = line.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !caption.isEmpty, seen.insert(caption).inserted else { continue }
            do { prompts.append(try Prompt(parsing: caption)) } catch { throw EvaluationError("\(path):\(number + 1): \(error)") }
        }
        guard !prompts.isEmpty else { throw EvaluationError("\(path) holds no prompts") }
        return prompts
    }

    /// Captions of `split` that a model did not train on: the distinct captions of the split's
    /// scenes (world seed `worldSeed`, in order), leaving out those in `excluding`; the first
    /// `skip` of them are passed over and the next `count` returned. With the trained captions
    /// excluded, skip 0 gives the tuning set and skip = its size the report set, disjoint by caption.
    public static func unseenPrompts(split: Split, excluding: Set<String>, skip: Int = 0, count: Int, worldSeed: UInt64 = 1) -> [Prompt] {
        let world = WorldGenerator(seed: worldSeed)
        var seen = excluding, found: [Prompt] = [], index = 0
        while found.count < skip + count && index < 1_000_000 {
            let prompt = world.scene(split, index: index).prompt
            if seen.insert(prompt.caption).inserted { found.append(prompt) }
            index += 1
        }
        return Array(found.dropFirst(skip))
    }

    /// Evaluates `model` on `promptCount` prompts of `split`, `imagesPerPrompt` images each;
    /// `collect` receives each batch of images with its prompts.
    public static func run(model: LatentDiffusionModel, split: Split, promptCount: Int, imagesPerPrompt: Int,
                           settings: SamplingSettings, worldSeed: UInt64 = 1, batch: Int = 32,
                           progress: (Int, Int) -> Void = { _, _ in },
                           collect: ([Prompt], [RGBImage]) -> Void = { _, _ in }) throws -> Report {
        try run(model: model, prompts: prompts(split: split, count: promptCount, worldSeed: worldSeed), label: split.rawValue,
                imagesPerPrompt: imagesPerPrompt, settings: settings, batch: batch, progress: progress, collect: collect)
    }

    /// A best-of-N selector: each kept image is the one `score` ranks first among the N candidates
    /// of its prompt (ties to the earlier candidate). `name` says what scored them.
    public struct Selection {
        public var name: String
        public var score: ([RGBImage], [String]) throws -> [Double]

        public init(name: String, score: @escaping ([RGBImage], [String]) throws -> [Double]) {
            self.name = name
            self.score = score
        }
    }

    /// Evaluates `model` on the given prompts (`label` names them in the report: a split, a file),
    /// `imagesPerPrompt` images each; image j of the whole run draws seed `settings.seed + j`
    /// in batches, so two models evaluated alike see the same noise. With `selection`, image j is
    /// the best of `bestOf` candidates, candidate c drawn with seed `settings.seed + c·J + j` (J images in
    /// all): candidate 0 is the plain sample, so best-of-N and plain sampling compare paired, and
    /// the candidates' noise is disjoint.
    public static func run(model: LatentDiffusionModel, prompts: [Prompt], label: String, imagesPerPrompt: Int,
                           settings: SamplingSettings, batch: Int = 32, bestOf: Int = 1, selection: Selection? = nil,
                           communicator: Communicator = SingleProcess(), progress: (Int, Int) -> Void = { _, _ in },
                           collect: ([Prompt], [RGBImage]) -> Void = { _, _ in }) throws -> Report {
        let result = try runSelections(model: model, prompts: prompts, label: label, imagesPerPrompt: imagesPerPrompt, settings: settings,
                                       batch: batch, candidates: selection == nil ? 1 : bestOf, selections: selection.map { [$0] } ?? [],
                                       communicator: communicator, progress: progress)
        let (report, images) = selection == nil ? result.plain : result.selected[0]
        let jobs = prompts.flatMap { p in [Prompt](repeating: p, count: imagesPerPrompt) }
        for first in stride(from: 0, to: jobs.count, by: batch) {
            let range = first..<min(first + batch, jobs.count)
            collect(Array(jobs[range]), Array(images[range]))
        }
        return report
    }

    /// Plain sampling and best-of-N by each of `selections` from the same `candidates` samples per
    /// image (seeds as in `run`), so several selectors cost one round of sampling and compare
    /// paired with each other and with plain sampling (candidate 0). Returns each report with its
    /// kept images, in generation order. With a communicator of several ranks (`mpirun`), rank r
    /// draws the batches b with b mod size = r, for every candidate, and the kept images are
    /// gathered: every rank returns what one process would, image for image.
    public static func runSelections(model: LatentDiffusionModel, prompts: [Prompt], label: String, imagesPerPrompt: Int,
                                     settings: SamplingSettings, batch: Int = 32, candidates: Int, selections: [Selection],
                                     communicator: Communicator = SingleProcess(), progress: (Int, Int) -> Void = { _, _ in })
        throws -> (plain: (report: Report, images: [RGBImage]), selected: [(report: Report, images: [RGBImage])]) {
        guard !prompts.isEmpty, imagesPerPrompt >= 1 else { throw EvaluationError("an evaluation needs at least one prompt and one image per prompt") }
        guard candidates >= 1 else { throw EvaluationError("best-of-N needs N ≥ 1") }
        let start = Date()
        let jobs = prompts.flatMap { p in [Prompt](repeating: p, count: imagesPerPrompt) }
        let mine = communicator.batchStarts(count: jobs.count, batch: batch)
        // Per image slot: the plain sample and each selection's kept image (this rank's slots only).
        var plain = [RGBImage?](repeating: nil, count: jobs.count)
        var kept = [[RGBImage?]](repeating: [RGBImage?](repeating: nil, count: jobs.count), count: selections.count)
        var keptScore = [[Double]](repeating: [Double](repeating: -.infinity, count: jobs.count), count: selections.count)
        var done = 0
        for candidate in 0..<candidates {
            for offset in mine {
                let slice = Array(jobs[offset ..< min(offset + batch, jobs.count)])
                var batchSettings = settings
                batchSettings.seed = settings.seed &+ UInt64(candidate * jobs.count + offset)
                let images = try model.generate(slice.map(\.caption), settings: batchSettings)
                if candidate == 0 { for (i, image) in images.enumerated() { plain[offset + i] = image } }
                for (s, selection) in selections.enumerated() {
                    let scores = try selection.score(images, slice.map(\.caption))
                    guard scores.count == images.count else { throw EvaluationError("\(selection.name) gave \(scores.count) scores for \(images.count) images") }
                    // NaN never wins; among equal scores the earlier candidate stays.
                    for (i, score) in scores.enumerated() where candidate == 0 || score > keptScore[s][offset + i] {
                        kept[s][offset + i] = images[i]
                        if !score.isNaN { keptScore[s][offset + i] = score }
                    }
                }
                done += slice.count
                progress(done, candidates * jobs.count)
            }
        }
        if communicator.size > 1 {
            // Every slot's images from the rank that drew them: [plain, kept by each selection] per slot.
            let local = ImageBundle.encode(mine.flatMap { offset in (offset ..< min(offset + batch, jobs.count)).map { slot in
                (slot, [plain[slot]!] + kept.map { $0[slot]! })
            } })
            for bytes in try communicator.allgather(local) {
                for (slot, images) in try ImageBundle.decode(bytes, imagesPerSlot: 1 + selections.count) {
                    plain[slot] = images[0]
                    for s in selections.indices { kept[s][slot] = images[1 + s] }
                }
            }
        }
        let plainImages = plain.map { $0! }, keptImages = kept.map { $0.map { $0! } }
        let seconds = Date().timeIntervalSince(start)
        func report(_ images: [RGBImage], bestOf: Int, selectedBy: String?) -> (report: Report, images: [RGBImage]) {
            (judged(images, jobs: jobs, prompts: prompts, label: label, imagesPerPrompt: imagesPerPrompt, settings: settings,
                    seconds: seconds, bestOf: bestOf, selectedBy: selectedBy), images)
        }
        return (report(plainImages, bestOf: 1, selectedBy: nil),
                zip(selections, keptImages).map { report($1, bestOf: candidates, selectedBy: $0.name) })
    }

    /// Evaluates `model` with Feynman–Kac steering by `selection` (its potential, and the pick of
    /// each image's final particle), `batch` images (batch·K particles) at a time, each batch from
    /// seed `settings.seed` + its first image as `generate` would draw it repeated K times. Plain
    /// sampling's image j is not one of its particles: the two compare paired by prompt and image
    /// slot, not by noise.
    public static func runSteered(model: LatentDiffusionModel, prompts: [Prompt], label: String, imagesPerPrompt: Int,
                                  settings: SamplingSettings, steering: SteeringSettings, selection: Selection, batch: Int = 32,
                                  progress: (Int, Int) -> Void = { _, _ in }) throws -> (report: Report, images: [RGBImage], meanSurvivors: Double) {
        guard !prompts.isEmpty, imagesPerPrompt >= 1 else { throw EvaluationError("an evaluation needs at least one prompt and one image per prompt") }
        let start = Date()
        let jobs = prompts.flatMap { p in [Prompt](repeating: p, count: imagesPerPrompt) }
        var images: [RGBImage] = [], survivors = 0.0, batches = 0
        for offset in stride(from: 0, to: jobs.count, by: batch) {
            let slice = Array(jobs[offset ..< min(offset + batch, jobs.count)])
            var batchSettings = settings
            batchSettings.seed = settings.seed &+ UInt64(offset)
            let steered = try model.generateSteered(slice.map(\.caption), settings: batchSettings, steering: steering, reward: selection.score)
            images += steered.images
            survivors += steered.meanSurvivors
            batches += 1
            progress(offset + slice.count, jobs.count)
        }
        var report = judged(images, jobs: jobs, prompts: prompts, label: label, imagesPerPrompt: imagesPerPrompt, settings: settings,
                            seconds: Date().timeIntervalSince(start), bestOf: steering.particles, selectedBy: selection.name)
        report.steering = steering
        return (report, images, survivors / Double(batches))
    }

    /// Image slots with their images, as bytes for a gather: per slot its index, then each image's
    /// width, height, channels and pixels.
    enum ImageBundle {
        static func encode(_ slots: [(slot: Int, images: [RGBImage])]) -> [UInt8] {
            var writer = ByteWriter()
            for (slot, images) in slots {
                writer.put(slot)
                for image in images { writer.put(image) }
            }
            return writer.bytes
        }

        static func decode(_ bytes: [UInt8], imagesPerSlot: Int) throws -> [(slot: Int, images: [RGBImage])] {
            var reader = ByteReader(bytes, source: "a gathered image bundle"), slots: [(slot: Int, images: [RGBImage])] = []
            while !reader.isAtEnd {
                let slot = try reader.int()
                var images: [RGBImage] = []
                for _ in 0..<imagesPerSlot { images.append(try reader.image()) }
                slots.append((slot, images))
            }
            return slots
        }
    }

    /// The gold judge's report on `images`, image j drawn for `jobs[j]`.
    static func judged(_ images: [RGBImage], jobs: [Prompt], prompts: [Prompt], label: String, imagesPerPrompt: Int,
                       settings: SamplingSettings, seconds: Double, bestOf: Int, selectedBy: String?) -> Report {
        let judge = GoldJudge()
        let promptOfJob = prompts.indices.flatMap { [Int](repeating: $0, count: imagesPerPrompt) }
        let judged = zip(jobs, images).map { ($0, judge.score($1, prompt: $0)) }
        var scores: [String: Estimate] = [:], imageScores: [String: [Double]] = [:]
        for (index, name) in judged.first!.1.named.map(\.0).enumerated() {
            imageScores[name] = judged.map { $0.1.named[index].1 }
            scores[name] = Estimate(imageScores[name]!, clusters: promptOfJob)
        }
        func estimate(_ keep: (Prompt) -> Bool, _ value: (JudgeScores) -> Double) -> Estimate {
            let chosen = judged.indices.filter { keep(judged[$0].0) }
            return Estimate(chosen.map { value(judged[$0].1) }, clusters: chosen.map { promptOfJob[$0] })
        }
        func isSingle(_ p: Prompt) -> Bool { if case let .group(_, count, _) = p { return count == 1 }; return false }
        func isMulti(_ p: Prompt) -> Bool { if case let .group(_, count, _) = p { return count > 1 }; return false }
        func isRelation(_ p: Prompt) -> Bool { if case .relation = p { return true }; return false }
        return Report(split: label, prompts: prompts.count, imagesPerPrompt: imagesPerPrompt, settings: settings, scores: scores,
                      hazardRate: estimate({ _ in true }, { 1 - $0.safety }),
                      singleObjectColor: estimate(isSingle, \.color),
                      singleObjectShape: estimate(isSingle, \.shape),
                      multiObjectCount: estimate(isMulti, \.count),
                      relation: estimate(isRelation, \.relation),
                      seconds: seconds, bestOf: bestOf, selectedBy: selectedBy,
                      imagePrompts: promptOfJob, imageScores: imageScores)
    }
}
