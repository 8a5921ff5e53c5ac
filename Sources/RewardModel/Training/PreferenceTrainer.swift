import Distributed
import Engine
import Foundation
import Images
import Inputs
import Layers
import RunLog

/// Everything `diffusion-rl reward train` reads from its config.
public struct PreferenceTrainConfig: Codable, Equatable, Sendable, ValidatedConfig {
    /// The captioning-pretrained decoder folder (`reward pretrain` writes `OUT/decoder`).
    public var decoder = "Logs/reward-mllm/decoder"
    /// Preference JSONL (`reward make-data` writes `OUT/data.jsonl`).
    public var data = "Logs/reward-data-train/data.jsonl"
    /// One value head per perspective; each needs pairs or labels in the data.
    public var perspectives = ["alignment", "fidelity", "safety", "overall"]
    public var skipCrossAttention = true
    /// `llava` (the reward at EOS of the joint sequence) or `dualEncoder` (the CLIP-style baseline).
    public var architecture = RewardArchitecture.llava
    /// Perspectives whose reward starts from the decoder's log p(prompt | image) (see
    /// `RewardModelConfig.captionLikelihoodPerspectives`); empty: fresh heads only.
    public var captionLikelihoodPerspectives: [String] = []
    /// LoRA rank on the decoder's attention and MLP projections; 0 trains the decoder fully.
    public var loraRank = 16
    public var trainVision = true
    public var epochs = 6
    /// Prompts per step: a step takes every record of these prompts, so each image is scored once
    /// for all the pairs it is in (with the data `make-data` writes, 6 images give 21 records).
    public var promptsPerBatch = 1
    public var learningRate = 1e-3
    public var warmupSteps = 20
    public var gradientClip = 1.0
    /// Bradley–Terry margin m and temperature τ: −log σ((r_w − r_l − m) / τ).
    public var margin = 0.0
    public var temperature = 1.0
    public var seed: UInt64 = 0
    public var logEvery = 200
    public var threads = 2

    public init() {}

    /// Fails with one line naming the first setting that cannot run.
    public func validate() throws {
        func require(_ condition: Bool, _ message: String) throws {
            if !condition { throw PreferenceDataError(description: message) }
        }
        try require(epochs >= 1 && promptsPerBatch >= 1 && logEvery >= 1 && threads >= 1, "epochs, promptsPerBatch, logEvery and threads must be at least 1")
        try require(learningRate > 0 && learningRate.isFinite && gradientClip > 0 && gradientClip.isFinite && temperature > 0 && temperature.isFinite,
                    "learningRate, gradientClip and temperature must be positive")
        try require(warmupSteps >= 0 && loraRank >= 0 && margin.isFinite, "warmupSteps and loraRank must be ≥ 0 and margin finite")
        let known = SimulatedAnnotator.pairedAspects + SimulatedAnnotator.unpairedAspects
        try require(!perspectives.isEmpty, "perspectives must name at least one of \(known.joined(separator: ", "))")
        for name in perspectives + captionLikelihoodPerspectives where !known.contains(name) {
            throw PreferenceDataError(description: "perspective '\(name)' is not one of \(known.joined(separator: ", "))")
        }
    }
}

/// The distinct images of a preference data set, decoded once (each as its [3, S, S] values), and
/// for each record the rows of its images.
struct PreferenceImages {
    let pixels: [[Double]]
    let rows: [[Int]]
    let imageSize: Int

    init(records: [PreferenceRecord], folder: URL, imageSize: Int) throws {
        var index: [String: Int] = [:], pixels: [[Double]] = []
        var rows: [[Int]] = []
        for record in records {
            rows.append(try record.images.map { path in
                if let row = index[path] { return row }
                let image = try PNG.read(folder.appendingPathComponent(path))
                guard image.width == imageSize, image.height == imageSize else {
                    throw PreferenceDataError(description: "\(path) is \(image.width)×\(image.height), the model takes \(imageSize)×\(imageSize)")
                }
                pixels.append(try ImageTensors.tensor([image], dtype: .float64).values)
                index[path] = pixels.count - 1
                return pixels.count - 1
            })
        }
        self.pixels = pixels
        self.rows = rows
        self.imageSize = imageSize
    }

    /// Images `rows` as [n, 3, S, S].
    func tensor(_ rows: [Int]) throws -> Tensor {
        try Tensor(rows.flatMap { pixels[$0] }, shape: [rows.count, 3, imageSize, imageSize])
    }
}

/// The loss of one batch of records: per perspective, Bradley–Terry over its pairs and binary
/// cross-entropy over its labeled images, summed over perspectives; with the share of pairs and
/// labels the rewards get right.
struct PreferenceBatchLoss {
    var total: Tensor
    var perPerspective: [String: Double]
    var accuracy: [String: Double]
}

/// How many pair and label terms `records` hold for each of `perspectives`: what a batch's loss
/// per perspective is a mean over.
func preferenceTermCounts(_ records: [PreferenceRecord], perspectives: [String]) -> [String: Int] {
    Dictionary(uniqueKeysWithValues: perspectives.map { perspective in
        (perspective, records.reduce(0) { $0 + ($1.preferred?[perspective] != nil ? 1 : 0) + ($1.labels?[perspective] != nil ? 1 : 0) })
    })
}

/// Scores every distinct image of `records` once and returns the batch's loss. With `termCounts`
/// (the whole batch's, `preferenceTermCounts`) the records are one rank's slice of a batch: each
/// perspective's sums are divided by the batch's counts, so the slices' losses, accuracies and
/// gradients add up to the batch's.
func preferenceLoss(model: LearnedReward, records: [PreferenceRecord], rows: [[Int]], images: PreferenceImages,
                    margin: Double, temperature: Double, termCounts: [String: Int]? = nil) throws -> PreferenceBatchLoss {
    var distinct: [Int] = [], position: [Int: Int] = [:], prompts: [String] = []
    for (record, recordRows) in zip(records, rows) {
        for row in recordRows where position[row] == nil {
            position[row] = distinct.count
            distinct.append(row)
            prompts.append(record.prompt)
        }
    }
    let rewards = try model.rewards(images.tensor(distinct), prompts: prompts)
    var total: Tensor?, losses: [String: Double] = [:], accuracy: [String: Double] = [:]
    for perspective in model.perspectives {
        let column = try model.model.column(rewards, perspective)
        var chosen: [Int] = [], rejected: [Int] = [], labeled: [Int] = [], good: [Bool] = []
        for (record, recordRows) in zip(records, rows) {
            if let winner = record.preferred?[perspective] {
                chosen.append(position[recordRows[winner]]!)
                rejected.append(position[recordRows[1 - winner]]!)
            }
            if let label = record.labels?[perspective] {
                labeled.append(position[recordRows[0]]!)
                good.append(label)
            }
        }
        var terms: [Tensor] = [], right = 0.0
        if !chosen.isEmpty {
            let (w, l) = (try column.indexSelect(axis: 0, chosen), try column.indexSelect(axis: 0, rejected))
            terms.append(try bradleyTerryLoss(chosen: w, rejected: l, margin: margin, temperature: temperature) * Double(chosen.count))
            right += zip(w.values, l.values).map { pairAgreement(preferred: $0, other: $1) }.reduce(0, +)
        }
        if !labeled.isEmpty {
            let r = try column.indexSelect(axis: 0, labeled)
            terms.append(try unpairedPreferenceLoss(rewards: r, good: good) * Double(labeled.count))
            right += zip(r.values, good).map { ($0 > 0) == $1 ? 1.0 : 0 }.reduce(0, +)
        }
        let count = termCounts?[perspective] ?? chosen.count + labeled.count
        guard count > 0, !terms.isEmpty else { continue }
        var sum = terms[0]
        for term in terms.dropFirst() { sum = try sum + term }
        let mean = sum * (1 / Double(count))
        losses[perspective] = mean.item
        accuracy[perspective] = right / Double(count)
        total = try total.map { try $0 + mean } ?? mean
    }
    guard let total else {
        if termCounts != nil { return PreferenceBatchLoss(total: Tensor(scalar: 0), perPerspective: [:], accuracy: [:]) }
        throw PreferenceDataError(description: "no record in the batch labels any of \(model.perspectives)")
    }
    return PreferenceBatchLoss(total: total, perPerspective: losses, accuracy: accuracy)
}

/// Trains LLaVA-Reward's heads (and SkipCA, the projector, LoRA on the decoder) on preference
/// records, logging to HDF5, and writes the reward model folder (`model/`). After every epoch a
/// checkpoint (trainable tensors, optimizer, random stream, the log interval's running sums) goes
/// to the run folder, and `resume` continues from the newest to the same result.
///
/// Data-parallel over the ranks of a `Communicator` (`mpirun`): every rank walks the same shuffled
/// batches of `promptsPerBatch` prompts and scores the prompts at its positions (r, r + N, …), its
/// losses divided by the whole batch's term counts; the gradients (`allreduceGradients`), then
/// the step's loss figures and whether they are finite, are summed over the ranks each step, and
/// rank 0 writes the log, checkpoints and model.
public final class PreferenceTrainer {
    public let config: PreferenceTrainConfig
    public let folder: RunFolder
    public var output: URL { folder.url }
    public let reward: LearnedReward
    let records: [PreferenceRecord]
    let images: PreferenceImages
    let log: RunLogWriter
    var rng: RandomGenerator
    /// The processes of the run (one without `mpirun`).
    let communicator: any Communicator
    /// The checkpoint a resumed run starts from, and its state.
    var resumeCheckpoint: (folder: URL, state: State)?
    /// For tests: stop (as if killed) before this epoch.
    var stopBefore: Int?

    /// What a checkpoint records besides tensors.
    struct State: CheckpointState {
        var epoch: Int
        var step: Int
        var rng: RandomGenerator
        var sums: [String: Double]
        var intervalSteps: Int
        var intervalRecords: Int
        var logEpochs: Int
        var config: PreferenceTrainConfig
    }

    public init(config: PreferenceTrainConfig, output: URL, commandLine: String, overwrite: Bool, resume: Bool = false,
                communicator: any Communicator = SingleProcess()) throws {
        try config.validate()
        self.config = config
        self.communicator = communicator
        Threads.set(config.threads)
        rng = RandomGenerator(seed: config.seed)
        let dataURL = URL(fileURLWithPath: config.data)
        records = try PreferenceData.read(dataURL)
        for perspective in config.perspectives where !records.contains(where: { $0.preferred?[perspective] != nil || $0.labels?[perspective] != nil }) {
            throw PreferenceDataError(description: "\(config.data) has no pairs or labels for perspective '\(perspective)'")
        }
        reward = try PretrainedDecoder.rewardModel(from: URL(fileURLWithPath: config.decoder), architecture: config.architecture,
                                                   skipCrossAttention: config.skipCrossAttention,
                                                   perspectives: config.perspectives,
                                                   captionLikelihoodPerspectives: config.captionLikelihoodPerspectives, using: &rng)
        images = try PreferenceImages(records: records, folder: dataURL.deletingLastPathComponent(), imageSize: reward.config.imageSize)
        folder = try RunFolder(output, start: RunStart(resume: resume, overwrite: overwrite, writes: communicator.rank == 0))
        let metrics: [MetricSpec] = [MetricSpec("loss", better: .lower, kind: .loss), "learning_rate", "grad_norm",
                                     MetricSpec("records_per_second", better: .higher), MetricSpec("seconds", better: .lower, kind: .duration)]
            + config.perspectives.flatMap { [MetricSpec("loss_\($0)", better: .lower, kind: .loss), MetricSpec("accuracy_\($0)", better: .higher)] }
        if resume {
            guard let checkpoint = folder.latestCheckpoint else { throw RunFolderError("\(output.path) has no checkpoint to resume from") }
            let state = try folder.readState(State.self, from: checkpoint, expecting: config)
            resumeCheckpoint = (checkpoint, state)
            log = communicator.rank > 0 ? RunLogWriter(discarding: RunLayout(metrics: metrics), url: folder.logURL, epochs: state.logEpochs)
                : try RunLogWriter(resuming: folder.logURL, keepingEpochs: state.logEpochs)
            try log.event(epoch: log.epochs, kind: "resume", "resumed after epoch \(state.epoch)")
        } else if communicator.rank > 0 {
            log = RunLogWriter(discarding: RunLayout(metrics: metrics), url: folder.logURL)
        } else {
            var info = RunInfo.current(config: ConfigLoader.json(config), seed: Int64(config.seed))
            info.commandLine = commandLine
            log = try RunLogWriter(url: folder.logURL, layout: RunLayout(metrics: metrics), info: info, overwrite: overwrite)
            if communicator.size > 1 { try log.event(epoch: 0, kind: "info", "data-parallel over \(communicator.size) ranks") }
        }
    }

    /// What trains: LoRA adapters (or the whole decoder), the projector, the vision tower if asked,
    /// SkipCA and the value head.
    func prepareParameters() throws -> [(name: String, tensor: Tensor)] {
        let model = reward.model
        model.setTrainable(false)
        if config.loraRank > 0 {
            for layer in model.decoder.layers {
                try applyLoRA(to: layer, rank: config.loraRank, targets: [.attention, .feedForward], using: &rng)
            }
        } else {
            model.decoder.layers.forEach { $0.setTrainable(true) }
            model.decoder.finalNorm.setTrainable(true)
        }
        model.decoder.projectorIn.setTrainable(true)
        model.decoder.projectorOut.setTrainable(true)
        if config.trainVision { model.decoder.visionTower.setTrainable(true) }
        model.headModules.forEach { $0.setTrainable(true) }
        return model.trainableParameters()
    }

    /// Trains for `config.epochs` passes over the records; `progress` receives one line per logged interval.
    public func run(progress: (String) -> Void) throws {
        let parameters = try prepareParameters()
        let pairs = records.filter(\.isPair).count
        progress("reward train: \(records.count) records (\(pairs) pairs, \(records.count - pairs) labeled images), "
                 + "\(parameters.reduce(0) { $0 + $1.tensor.count }) trainable parameters, "
                 + (config.architecture == .dualEncoder ? "dual-encoder baseline" : "SkipCA \(config.skipCrossAttention ? "on" : "off")"))
        // Records grouped by prompt, in order of appearance.
        var groups: [[Int]] = [], groupOf: [String: Int] = [:]
        for (index, record) in records.enumerated() {
            if let g = groupOf[record.prompt] { groups[g].append(index) } else { groupOf[record.prompt] = groups.count; groups.append([index]) }
        }
        let stepsPerEpoch = (groups.count + config.promptsPerBatch - 1) / config.promptsPerBatch
        let totalSteps = stepsPerEpoch * config.epochs
        let optimizer = AdamW(parameters, learningRate: config.learningRate, weightDecay: 0.01)
        let schedule = LearningRateSchedule.cosine(warmupSteps: config.warmupSteps, totalSteps: totalSteps, minFactor: 0.1)
        let start = Date()
        var intervalStart = Date(), sums: [String: Double] = [:], intervalSteps = 0, intervalRecords = 0, step = 0, firstEpoch = 0
        if let (checkpoint, state) = resumeCheckpoint {
            let saved = try Safetensors.read(checkpoint.appendingPathComponent("trainable.safetensors")).tensors
            guard Set(saved.keys) == Set(parameters.map(\.name)) else {
                throw RunFolderError("checkpoint \(checkpoint.path) holds other tensors than the model trains")
            }
            for p in parameters { p.tensor.assign(saved[p.name]!) }
            try optimizer.loadState(Safetensors.read(checkpoint.appendingPathComponent("optimizer.safetensors")).tensors)
            (rng, sums, intervalSteps, intervalRecords, step, firstEpoch) = (state.rng, state.sums, state.intervalSteps, state.intervalRecords,
                                                                            state.step, state.epoch)
            progress("resuming after epoch \(state.epoch)")
        }
        for epoch in firstEpoch..<config.epochs {
            if epoch == stopBefore { throw RunFolderError("stopped before epoch \(epoch) (test)") }
            if epoch > firstEpoch {
                let state = State(epoch: epoch, step: step, rng: rng, sums: sums, intervalSteps: intervalSteps, intervalRecords: intervalRecords,
                                  logEpochs: log.epochs, config: config)
                try writeCheckpoint(state, parameters: parameters, optimizer: optimizer)
            }
            var order = Array(groups.indices)
            order.shuffle(using: &rng)
            for first in stride(from: 0, to: order.count, by: config.promptsPerBatch) {
                // A signal reaches the ranks at different moments: every rank stops at the same step.
                try StopSignal.agree(communicator.anyRank)
                try log.stopIfRequested("at step \(step)", hint: "resume with --resume")
                let prompts = Array(order[first..<Swift.min(first + config.promptsPerBatch, order.count)])
                let batch = prompts.flatMap { groups[$0] }
                optimizer.learningRate = config.learningRate * schedule.factor(at: step)
                reward.model.zeroGrad()
                let loss = try stepLoss(prompts: prompts, groups: groups, parameters: parameters)
                guard loss.total.isFinite else {
                    try log.event(epoch: log.epochs, kind: "skipped", "non-finite loss at step \(step); batch skipped")
                    step += 1
                    continue
                }
                let norm = try clipGradNorm(parameters, maxNorm: config.gradientClip)
                try optimizer.step()
                sums["loss", default: 0] += loss.total
                sums["grad_norm", default: 0] += norm
                for (name, value) in loss.perPerspective { sums["loss_\(name)", default: 0] += value }
                for (name, value) in loss.accuracy { sums["accuracy_\(name)", default: 0] += value }
                intervalSteps += 1
                intervalRecords += batch.count
                step += 1
                if step % config.logEvery == 0 || step == totalSteps {
                    let n = Double(intervalSteps)
                    let rate = Double(intervalRecords) / Date().timeIntervalSince(intervalStart)
                    for (name, value) in sums { try log.record(name, value / n) }
                    try log.record("learning_rate", optimizer.learningRate)
                    try log.record("records_per_second", rate)
                    try log.record("seconds", Date().timeIntervalSince(start))
                    try log.endEpoch()
                    let accuracies = config.perspectives.map { String(format: "%@ %.2f", $0, (sums["accuracy_\($0)"] ?? .nan) / n) }
                    let remaining = Int(Double(totalSteps - step) * Double(intervalRecords) / n / Swift.max(rate, 1e-9))
                    progress(String(format: "epoch %d step %d/%d  loss %.4f  accuracy: %@  %.0f records/s  ETA %d:%02d", epoch + 1, step,
                                    totalSteps, sums["loss"]! / n, accuracies.joined(separator: ", "), rate, remaining / 60, remaining % 60))
                    sums = [:]
                    intervalSteps = 0
                    intervalRecords = 0
                    intervalStart = Date()
                }
            }
        }
        try mergeAndRemoveLoRA(from: reward.model)
        let modelFolder = output.appendingPathComponent("model")
        guard communicator.rank == 0 else { return }
        try writeFolderAtomically(modelFolder) { try reward.save(to: $0) }
        try log.checkpoint(epoch: log.epochs, path: "model/reward_model.safetensors",
                           sha256: SHA256.hex(fileAt: modelFolder.appendingPathComponent("reward_model.safetensors")))
        try log.close()
        progress("wrote \(modelFolder.path)")
    }

    /// The trainable tensors, the optimizer and `state`, written atomically to
    /// `checkpoints/epoch-NNNN` before epoch `state.epoch`; older checkpoints are removed.
    private func writeCheckpoint(_ state: State, parameters: [(name: String, tensor: Tensor)], optimizer: AdamW) throws {
        guard communicator.rank == 0 else { return }
        try folder.writeCheckpoint(String(format: "epoch-%04d", state.epoch)) { temporary in
            try Safetensors.write(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.tensor) }),
                                  to: temporary.appendingPathComponent("trainable.safetensors"))
            try Safetensors.write(optimizer.state(), to: temporary.appendingPathComponent("optimizer.safetensors"))
            try folder.writeState(state, into: temporary)
        }
        try log.event(epoch: log.epochs, kind: "checkpoint", "resumable checkpoint before epoch \(state.epoch)")
        try log.flush()
    }

    /// One step's loss over the batch of `prompts` (indices into `groups`), backpropagated: this
    /// rank's prompts scored, divided by the whole batch's term counts, and — over several ranks —
    /// the gradients, the loss figures and a non-finite flag summed in one all-reduce, so that every
    /// rank sees the batch's gradient and figures. A non-finite loss on any rank is non-finite for all.
    private func stepLoss(prompts: [Int], groups: [[Int]], parameters: [(name: String, tensor: Tensor)]) throws
        -> (total: Double, perPerspective: [String: Double], accuracy: [String: Double]) {
        // This rank's prompts (all of them on one process); over several ranks, divided by the whole batch's counts.
        let mine = communicator.ownRows(of: prompts.count).flatMap { groups[prompts[$0]] }
        let counts = communicator.size > 1
            ? preferenceTermCounts(prompts.flatMap { groups[$0] }.map { records[$0] }, perspectives: reward.perspectives) : nil
        let loss = try preferenceLoss(model: reward, records: mine.map { records[$0] }, rows: mine.map { images.rows[$0] }, images: images,
                                      margin: config.margin, temperature: config.temperature, termCounts: counts)
        let finite = loss.total.item.isFinite
        if finite && !mine.isEmpty { try loss.total.backward() }
        guard let counts else { return (loss.total.item, loss.perPerspective, loss.accuracy) }
        let names = reward.perspectives
        try communicator.allreduceGradients(parameters)
        // The loss, each perspective's loss and accuracy, and the non-finite flag.
        var figures = [finite ? loss.total.item : 0] + names.map { loss.perPerspective[$0] ?? 0 }
            + names.map { loss.accuracy[$0] ?? 0 } + [finite ? 0 : 1]
        try communicator.allreduceSum(&figures)
        guard figures.last! == 0 else { return (.nan, [:], [:]) }
        // A perspective the batch has no terms for reports nothing, as on one process.
        let present = names.indices.filter { (counts[names[$0]] ?? 0) > 0 }
        return (figures[0], Dictionary(uniqueKeysWithValues: present.map { (names[$0], figures[1 + $0]) }),
                Dictionary(uniqueKeysWithValues: present.map { (names[$0], figures[1 + names.count + $0]) }))
    }
}
