import Diffusion
import Distributed
import Evaluation
import Foundation
import Images
import RunLog
import Statistics
import World

/// What a best-of-N study draws and how it selects: written into its log as the resolved config,
/// and compared on `--resume` so that a study never continues under other settings.
public struct BestOfNStudySettings: Codable, Equatable, Sendable {
    /// Which study ("overoptimization", "perspectives"), the model and reward models it read.
    public var study: String
    public var model: String
    public var rewardModels: [String]
    /// The prompts' source (a split or a file) and captions, in order.
    public var promptSource: String
    public var captions: [String]
    public var imagesPerPrompt: Int
    /// Candidates drawn per image slot: the largest N.
    public var candidates: Int
    public var sampling: SamplingSettings
    /// The columns scored besides the gold judge's (`gold_<name>`), e.g. `proxy_alignment`.
    public var scorers: [String]
    public var selectors: [StudySelector]
    /// The columns whose gains are logged for every N.
    public var reported: [String]

    public init(study: String, model: String, rewardModels: [String], promptSource: String, captions: [String], imagesPerPrompt: Int,
                candidates: Int, sampling: SamplingSettings, scorers: [String], selectors: [StudySelector], reported: [String]) {
        self.study = study
        self.model = model
        self.rewardModels = rewardModels
        self.promptSource = promptSource
        self.captions = captions
        self.imagesPerPrompt = imagesPerPrompt
        self.candidates = candidates
        self.sampling = sampling
        self.scorers = scorers
        self.selectors = selectors
        self.reported = reported
    }
}

/// A best-of-N study: `candidates` samples per image slot (prompt × repeat), each scored by the
/// gold judge and by every scorer, kept in a run log (`run.h5`) one candidate per epoch; after each
/// candidate c, every selector's best-of-(c + 1) gains over plain sampling are logged as metrics.
/// Candidate c of slot j draws seed `sampling.seed + c·J + j` (J slots), as `eval --best-of` does,
/// so candidate 0 is plain sampling and the candidates' noise is disjoint. A stopped study resumes
/// from its log: finished candidates are read back, not drawn again.
public enum BestOfNStudy {
    /// The gold judge's columns in the table.
    public static let goldColumns = JudgeScores.names.map { "gold_" + $0 }

    /// Logged for every N: N, the KL bound of best-of-N and its square root, and per selector and
    /// reported column the paired gain and its clustered standard error.
    public static func metrics(_ settings: BestOfNStudySettings) -> [MetricSpec] {
        var specs: [MetricSpec] = ["n", MetricSpec("kl_bound", kind: .other), MetricSpec("sqrt_kl_bound", kind: .other)]
        for selector in settings.selectors {
            for column in settings.reported {
                specs.append(MetricSpec(gainName(column, selector.name), better: .higher, kind: .evaluation))
                specs.append(MetricSpec(gainName(column, selector.name) + "_se"))
            }
        }
        specs.append(MetricSpec("seconds", kind: .duration))
        return specs
    }

    /// "gain_<column>_by_<selector>".
    public static func gainName(_ column: String, _ selector: String) -> String { "gain_\(column)_by_\(selector)" }

    /// Runs the study into `folder` (`run.h5`), or continues it (`start == .resume`); returns the
    /// whole candidate table. `scorers` must be named as `settings.scorers`, in order. Under
    /// `mpirun` the ranks share each candidate's batches (`draw`) and rank 0 alone writes the log.
    public static func run(model: LatentDiffusionModel, prompts: [Prompt], settings: BestOfNStudySettings,
                           scorers: [GoldEvaluation.Selection], folder: URL, start: RunStart, batch: Int = 32,
                           communicator: Communicator = SingleProcess(),
                           progress: (_ candidate: Int, _ candidates: Int, _ seconds: Double) -> Void = { _, _, _ in }) throws -> CandidateTable {
        guard scorers.map(\.name) == settings.scorers else {
            throw StudyError("scorers \(scorers.map(\.name)) differ from the settings' \(settings.scorers)")
        }
        guard prompts.map(\.caption) == settings.captions, settings.imagesPerPrompt >= 1, settings.candidates >= 1 else {
            throw StudyError("a study needs its settings' prompts, at least one image per prompt and one candidate")
        }
        let lead = communicator.rank == 0
        let runFolder = lead ? try RunFolder(folder, start: start, resumesFromLog: true) : nil
        let logURL = folder.appendingPathComponent("run.h5")
        let config = String(decoding: try encoder.encode(settings), as: UTF8.self)
        let columnNames = goldColumns + settings.scorers
        let slotPrompts = prompts.indices.flatMap { [Int](repeating: $0, count: settings.imagesPerPrompt) }
        var table = CandidateTable(columnNames: columnNames, slotPrompts: slotPrompts)
        var writer: RunLogWriter? = nil
        if start == .resume {
            // Every rank reads the finished candidates; the log is reopened for writing after all have.
            try communicator.barrier()
            let finished = try readFinished(logURL, config: config, into: &table)
            try communicator.barrier()
            if let runFolder { writer = try RunLogWriter(resuming: runFolder.logURL, keepingEpochs: finished) }
        } else if let runFolder {
            let layout = RunLayout(metrics: metrics(settings), sampleColumns: columnNames, prompts: settings.captions)
            writer = try RunLogWriter(url: runFolder.logURL, layout: layout, info: .current(config: config, seed: Int64(settings.sampling.seed)),
                                      overwrite: start == .overwrite)
        }
        let jobs = prompts.flatMap { [Prompt](repeating: $0, count: settings.imagesPerPrompt) }
        for candidate in table.candidates..<settings.candidates {
            let started = Date()
            let columns = try draw(model: model, jobs: jobs, candidate: candidate, sampling: settings.sampling, scorers: scorers, batch: batch,
                                   communicator: communicator)
            try table.append(columns)
            let n = candidate + 1
            guard let writer else {
                if StopSignal.requested { throw StudyError("interrupted after candidate \(n) of \(settings.candidates)") }
                continue
            }
            let seeds = jobs.indices.map { Int64(bitPattern: settings.sampling.seed &+ UInt64(candidate * jobs.count + $0)) }
            try writer.appendSamples(epoch: candidate, prompts: slotPrompts, seeds: seeds, columns: columns)
            try writer.record("n", Double(n))
            try writer.record("kl_bound", bestOfNKLBound(n))
            try writer.record("sqrt_kl_bound", bestOfNKLBound(n).squareRoot())
            for selector in settings.selectors {
                for (column, gain) in try table.gains(selector, n: n, in: settings.reported) {
                    try writer.record(gainName(column, selector.name), gain.mean)
                    try writer.record(gainName(column, selector.name) + "_se", gain.standardError)
                }
            }
            let seconds = Date().timeIntervalSince(started)
            try writer.record("seconds", seconds)
            try writer.endEpoch()
            progress(n, settings.candidates, seconds)  // rank 0 only
            if n < settings.candidates { try writer.stopIfRequested("after candidate \(n) of \(settings.candidates)", epoch: n) }
        }
        try writer?.close()
        return table
    }

    /// Candidate `candidate` of every image slot (`jobs[j]` drawn with seed `sampling.seed + c·J + j`),
    /// scored by the gold judge (`gold_<name>` columns) and by each scorer (its name): what one
    /// epoch of a study adds to the table. Candidate 0 with another model scores that model's plain
    /// samples on the study's seeds, paired with the study's own candidate 0. With several ranks
    /// (`mpirun`), rank r draws the batches b with b mod size = r and the columns are gathered:
    /// every rank returns what one process would.
    public static func draw(model: LatentDiffusionModel, jobs: [Prompt], candidate: Int, sampling: SamplingSettings,
                            scorers: [GoldEvaluation.Selection], batch: Int = 32,
                            communicator: Communicator = SingleProcess()) throws -> [String: [Double]] {
        let judge = GoldJudge()
        let names = goldColumns + scorers.map(\.name)
        var columns = Dictionary(uniqueKeysWithValues: names.map { ($0, [Double]()) })
        let offsets = communicator.batchStarts(count: jobs.count, batch: batch)
        for offset in offsets {
            let slice = Array(jobs[offset ..< min(offset + batch, jobs.count)])
            var batchSettings = sampling
            batchSettings.seed = sampling.seed &+ UInt64(candidate * jobs.count + offset)
            let captions = slice.map(\.caption)
            let images = try model.generate(captions, settings: batchSettings)
            for (prompt, image) in zip(slice, images) {
                for (name, value) in judge.score(image, prompt: prompt).named { columns["gold_" + name]!.append(value) }
            }
            for scorer in scorers {
                let scores = try scorer.score(images, captions)
                guard scores.count == images.count else { throw StudyError("\(scorer.name) gave \(scores.count) scores for \(images.count) images") }
                columns[scorer.name]! += scores
            }
        }
        guard communicator.size > 1 else { return columns }
        // This rank's rows (its batches in order) as doubles: each batch's offset and count, then
        // every column's values; gathered and put back in slot order.
        var local: [Double] = [], row = 0
        for offset in offsets {
            let count = min(batch, jobs.count - offset)
            local += [Double(offset), Double(count)]
            for name in names { local += columns[name]![row ..< row + count] }
            row += count
        }
        var whole = Dictionary(uniqueKeysWithValues: names.map { ($0, [Double](repeating: .nan, count: jobs.count)) })
        for values in try communicator.allgather(local) {
            var position = 0
            while position < values.count {
                let (offset, count) = (Int(values[position]), Int(values[position + 1]))
                position += 2
                for name in names {
                    whole[name]!.replaceSubrange(offset ..< offset + count, with: values[position ..< position + count])
                    position += count
                }
            }
        }
        return whole
    }

    /// Reads a stopped study's finished candidates into `table` (the reader closes on return, before
    /// the file is reopened for writing); fails when the log holds a study of other settings.
    static func readFinished(_ log: URL, config: String, into table: inout CandidateTable) throws -> Int {
        let reader = try RunLogReader(url: log)
        guard reader.attributes["config"] == config else {
            throw StudyError("\(log.deletingLastPathComponent().path) holds a study with other settings; pass --force to start over")
        }
        let finished = try reader.epochs()
        let epochs = try reader.sampleColumn("epoch")
        let stored = try Dictionary(uniqueKeysWithValues: table.columns.keys.map { ($0, try reader.sampleColumn($0)) })
        for c in 0..<finished {
            let rows = epochs.indices.filter { Int(epochs[$0]) == c }
            guard rows.count == table.slotPrompts.count else {
                throw StudyError("\(log.path): candidate \(c) has \(rows.count) of \(table.slotPrompts.count) rows")
            }
            try table.append(stored.mapValues { values in rows.map { values[$0] } })
        }
        return finished
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()
}
