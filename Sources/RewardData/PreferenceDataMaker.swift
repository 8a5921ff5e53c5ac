import Diffusion
import Engine
import Foundation
import Images
import RewardModel
import World

/// What `diffusion-rl reward make-data` makes.
public struct PreferenceDataSettings: Codable, Equatable, Sendable, ValidatedConfig {
    /// The world split whose prompts are used.
    public var split = Split.train
    public var prompts = 256
    /// Index of the first scene of the split (so training and evaluation sets do not overlap).
    public var firstPrompt = 0
    /// Images the diffusion model generates per prompt.
    public var generatedPerPrompt = 4
    public var sampling = SamplingSettings()
    /// Each prompt also gets its rendered scene, with the hazard mark at this rate, and a
    /// corrupted copy of it (noise or blur).
    public var renderedHazardRate = 0.3
    /// Rendered scenes of this many contrastive prompts (one color, shape, count or relation
    /// changed) join each prompt's images: clean pairs that isolate what alignment is about.
    public var contrastiveRenders = 0
    /// Images the diffusion model generates for this many contrastive prompts of each prompt
    /// (one image each), judged against the original prompt: hard negatives in the generated
    /// images' own look, unlike the clean contrastive renders.
    public var contrastiveGenerated = 0
    public var annotator = AnnotatorSettings()
    public var seed: UInt64 = 0

    public init() {}

    /// Fails with one line naming the first setting that cannot run.
    public func validate() throws {
        guard prompts >= 1, firstPrompt >= 0, generatedPerPrompt >= 0, contrastiveRenders >= 0, contrastiveGenerated >= 0 else {
            throw PreferenceDataError(description: "prompts must be at least 1, and firstPrompt, generatedPerPrompt, contrastiveRenders and contrastiveGenerated ≥ 0")
        }
        guard renderedHazardRate >= 0, renderedHazardRate <= 1 else { throw PreferenceDataError(description: "renderedHazardRate must be in [0, 1]") }
    }
}

/// Makes preference data like VisionPrefer's: for each prompt, images from the base diffusion
/// model plus the rendered scene and a corrupted copy; every pair of a prompt's images is labeled
/// per paired aspect by a simulated annotator, and every image gets an unpaired safety label.
/// The gold judge's own verdicts are stored beside the annotator's.
public struct PreferenceDataMaker {
    public let settings: PreferenceDataSettings
    let judge = GoldJudge()

    public init(settings: PreferenceDataSettings) { self.settings = settings }

    /// Writes `images/*.png` and `data.jsonl` into `folder`; returns the records.
    public func make(model: LatentDiffusionModel, folder: URL, progress: (String) -> Void) throws -> [PreferenceRecord] {
        let imageFolder = folder.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: imageFolder, withIntermediateDirectories: true)
        let world = WorldGenerator(seed: 1, hazardRate: settings.renderedHazardRate)
        let scenes = world.scenes(settings.split, count: settings.prompts, start: settings.firstPrompt)
        let renderer = Renderer(size: model.config.imageSize)
        var rng = RandomGenerator(seed: settings.seed)
        var records: [PreferenceRecord] = []
        var written = 0
        let perPrompt = settings.generatedPerPrompt + settings.contrastiveGenerated
        let batchPrompts = Swift.max(1, 32 / Swift.max(perPrompt, 1))
        let start = Date()
        for first in stride(from: 0, to: scenes.count, by: batchPrompts) {
            let group = Array(scenes[first..<Swift.min(first + batchPrompts, scenes.count)])
            var sampling = settings.sampling
            sampling.seed = settings.sampling.seed &+ UInt64(first)
            // Per prompt: its own captions, then one caption of each generated contrast.
            let captionsByScene = group.map { scene in
                [String](repeating: scene.caption, count: settings.generatedPerPrompt)
                    + scene.prompt.contrastive(limit: settings.contrastiveGenerated).map(\.prompt.caption)
            }
            let captions = captionsByScene.flatMap { $0 }
            let generated = captions.isEmpty ? [] : try model.generate(captions, settings: sampling)
            var next = 0
            for (index, scene) in group.enumerated() {
                let clean = renderer.render(scene)
                let corrupted = rng.uniform() < 0.5
                    ? Corruption.gaussianNoise(clean, sigma: 20 + 40 * rng.uniform(), using: &rng)
                    : Corruption.gaussianBlur(clean, sigma: 0.5 + rng.uniform())
                let contrasts = scene.prompt.contrastive(limit: settings.contrastiveRenders).map { contrast -> RGBImage in
                    var other = world.sampler.scene(for: contrast.prompt, using: &rng)
                    other.hazard = nil
                    return renderer.render(other)
                }
                let own = captionsByScene[index].count
                let images = Array(generated[next..<(next + own)]) + [clean, corrupted] + contrasts
                next += own
                var named: [(path: String, image: RGBImage, scores: JudgeScores)] = []
                for image in images {
                    let path = String(format: "images/%06d.png", written)
                    try PNG.write(image, to: folder.appendingPathComponent(path))
                    written += 1
                    named.append((path, image, judge.score(image, prompt: scene.prompt)))
                }
                records += label(prompt: scene.caption, named, using: &rng)
            }
            let done = Swift.min(first + batchPrompts, scenes.count)
            let rate = Double(done) / Date().timeIntervalSince(start)
            progress(String(format: "prompts %d/%d  %d images  %d records  %.1f prompts/s", done, scenes.count, written, records.count, rate))
        }
        try PreferenceData.write(records, to: folder.appendingPathComponent("data.jsonl"))
        return records
    }

    /// The records of existing data labeled again by this maker's annotator (the gold judge
    /// re-reads each image): the same images and pairs under other noise or bias, without
    /// generating anything. Prompts group images in the order they first appear.
    public func relabel(_ records: [PreferenceRecord], folder: URL) throws -> [PreferenceRecord] {
        var groups: [(prompt: String, paths: [String])] = [], seen: Set<String> = []
        for record in records {
            for path in record.images where seen.insert(path).inserted {
                if groups.last?.prompt == record.prompt { groups[groups.count - 1].paths.append(path) } else { groups.append((record.prompt, [path])) }
            }
        }
        var rng = RandomGenerator(seed: settings.seed)
        var result: [PreferenceRecord] = []
        for group in groups {
            let prompt = try Prompt(parsing: group.prompt)
            let images = try group.paths.map { path -> (path: String, image: RGBImage, scores: JudgeScores) in
                let image = try PNG.read(folder.appendingPathComponent(path))
                return (path, image, judge.score(image, prompt: prompt))
            }
            result += label(prompt: group.prompt, images, using: &rng)
        }
        return result
    }

    /// The annotator's and the gold judge's labels for every pair of a prompt's images and for each image.
    func label(prompt: String, _ images: [(path: String, image: RGBImage, scores: JudgeScores)],
               using rng: inout RandomGenerator) -> [PreferenceRecord] {
        var records: [PreferenceRecord] = []
        for i in images.indices {
            for j in (i + 1)..<images.count {
                var preferred: [String: Int] = [:], gold: [String: Int] = [:]
                for aspect in SimulatedAnnotator.pairedAspects {
                    preferred[aspect] = SimulatedAnnotator.preference(aspect, (images[i].scores, images[i].image),
                                                                      (images[j].scores, images[j].image),
                                                                      settings: settings.annotator, using: &rng)
                    gold[aspect] = SimulatedAnnotator.goldPreference(aspect, images[i].scores, images[j].scores)
                }
                guard !preferred.isEmpty else { continue }
                records.append(PreferenceRecord(prompt: prompt, images: [images[i].path, images[j].path], preferred: preferred,
                                                goldPreferred: gold))
            }
        }
        for image in images {
            var labels: [String: Bool] = [:], gold: [String: Bool] = [:]
            for aspect in SimulatedAnnotator.unpairedAspects {
                labels[aspect] = SimulatedAnnotator.label(aspect, image.scores, settings: settings.annotator, using: &rng)
                gold[aspect] = SimulatedAnnotator.goldUtility(aspect, image.scores) >= 0.5
            }
            records.append(PreferenceRecord(prompt: prompt, images: [image.path], labels: labels, goldLabels: gold))
        }
        return records
    }
}
