import Distributed
import Engine
import Foundation
import Images
import Inputs
import Layers
import RunLog
import World

/// Everything `diffusion-rl reward pretrain` reads from its config.
public struct CaptionPretrainConfig: Codable, Equatable, Sendable {
    public var model = RewardModelConfig()
    public var seed: UInt64 = 0
    public var steps = 1500
    public var batch = 32
    public var learningRate = 1e-3
    public var warmupSteps = 100
    public var gradientClip = 1.0
    /// Share of the world's training scenes drawn with the hazard mark.
    public var hazardRate = 0.05
    public var logEvery = 50
    /// Steps between resumable checkpoints (a multiple of `logEvery`).
    public var checkpointEvery = 500
    public var threads = 2
    /// A decoder folder (`reward pretrain` output) to continue from instead of a fresh decoder;
    /// its model config and tokenizer then replace `model`. Use another `seed` than the first run's,
    /// or the continuation draws the same scenes again. Empty: a fresh decoder.
    public var initialDecoder = ""

    public init() {}
}

/// Pretrains the multimodal decoder (vision encoder, projector, decoder) by captioning the
/// world's training images — next-token prediction of the caption after the image tokens — so its
/// hidden states know images and text before any preference is seen. Logs to HDF5 and writes
/// the decoder folder (`decoder/`). Every `checkpointEvery` steps a checkpoint (decoder, optimizer,
/// random stream) goes to the run folder, and `resume` continues from it to the same result.
public final class CaptionPretrainer {
    public let config: CaptionPretrainConfig
    public let folder: RunFolder
    public var output: URL { folder.url }
    public let decoder: MultimodalDecoder
    public let tokenizer: Tokenizer
    let log: RunLogWriter
    /// The processes of the run (one without `mpirun`): each step's batch is split among them.
    let communicator: any Communicator
    let world: WorldGenerator
    let renderer: Renderer
    var rng: RandomGenerator
    /// The step to start at and the optimizer state to restore, when resuming.
    var resumeStep = 0
    var resumeOptimizer: [String: Tensor] = [:]
    /// For tests: stop (as if killed) before this step.
    var stopBefore: Int?

    /// What a checkpoint records besides the decoder and the optimizer.
    struct State: CheckpointState {
        var step: Int
        var rng: RandomGenerator
        var logEpochs: Int
        var config: CaptionPretrainConfig
    }

    static let metrics: [MetricSpec] = [MetricSpec("caption_loss", better: .lower, kind: .loss), "learning_rate",
                                        MetricSpec("samples_per_second", better: .higher), MetricSpec("seconds", better: .lower, kind: .duration)]

    public init(config: CaptionPretrainConfig, output: URL, commandLine: String, overwrite: Bool, resume: Bool = false,
                communicator: any Communicator = SingleProcess()) throws {
        self.communicator = communicator
        guard config.checkpointEvery >= 1, config.logEvery >= 1, config.checkpointEvery % config.logEvery == 0 else {
            throw RunFolderError("checkpointEvery (\(config.checkpointEvery)) must be a positive multiple of logEvery (\(config.logEvery))")
        }
        var config = config
        Threads.set(config.threads)
        world = WorldGenerator(seed: config.seed, hazardRate: config.hazardRate)
        rng = RandomGenerator(seed: config.seed)
        folder = try RunFolder(output, start: RunStart(resume: resume, overwrite: overwrite, writes: communicator.rank == 0))
        let given = config
        if resume {
            guard let checkpoint = folder.latestCheckpoint else { throw RunFolderError("\(output.path) has no checkpoint to resume from") }
            let loaded = try PretrainedDecoder.load(from: checkpoint.appendingPathComponent("decoder"))
            (decoder, tokenizer) = loaded
            // A continued decoder's model config replaced `model` when the run started.
            var resolved = given
            if !given.initialDecoder.isEmpty { resolved.model = loaded.0.config }
            let state = try folder.readState(State.self, from: checkpoint, expecting: resolved)
            config = state.config
            rng = state.rng
            resumeStep = state.step
            resumeOptimizer = try Safetensors.read(checkpoint.appendingPathComponent("optimizer.safetensors")).tensors
            log = communicator.rank > 0 ? RunLogWriter(discarding: RunLayout(metrics: Self.metrics), url: folder.logURL, epochs: state.logEpochs)
                : try RunLogWriter(resuming: folder.logURL, keepingEpochs: state.logEpochs)
            try log.event(epoch: log.epochs, kind: "resume", "resumed at step \(state.step)")
        } else {
            if !config.initialDecoder.isEmpty {
                (decoder, tokenizer) = try PretrainedDecoder.load(from: URL(fileURLWithPath: config.initialDecoder))
                config.model = decoder.config
            } else {
                tokenizer = Tokenizer(captions: world.scenes(.train, count: 20_000).map(\.caption))
                decoder = try MultimodalDecoder(config.model, vocabularySize: tokenizer.count, using: &rng)
            }
            var info = RunInfo.current(config: ConfigLoader.json(config), seed: Int64(config.seed))
            info.commandLine = commandLine
            if communicator.rank > 0 {
                log = RunLogWriter(discarding: RunLayout(metrics: Self.metrics), url: folder.logURL)
            } else {
                log = try RunLogWriter(url: folder.logURL, layout: RunLayout(metrics: Self.metrics), info: info, overwrite: overwrite)
                if communicator.size > 1 { try log.event(epoch: 0, kind: "info", "data-parallel over \(communicator.size) ranks") }
            }
        }
        self.config = config
        renderer = Renderer(size: config.model.imageSize)
    }

    /// Trains for `config.steps` steps; `progress` receives one line per logged interval.
    public func run(progress: (String) -> Void) throws {
        let parameters = decoder.trainableParameters()
        progress("reward pretrain: \(decoder.parameterCount) decoder parameters, vocabulary of \(tokenizer.count), "
                 + "\(config.model.imageTokens) image tokens")
        let optimizer = AdamW(parameters, learningRate: config.learningRate, weightDecay: 0.01)
        if !resumeOptimizer.isEmpty { try optimizer.loadState(resumeOptimizer) }
        let schedule = LearningRateSchedule.cosine(warmupSteps: config.warmupSteps, totalSteps: config.steps, minFactor: 0.1)
        let start = Date()
        var sum = 0.0, intervalStart = Date()
        for step in resumeStep..<config.steps {
            if step == stopBefore { throw RunFolderError("stopped before step \(step) (test)") }
            try StopSignal.agree(communicator.anyRank)
            try log.stopIfRequested("at step \(step)", hint: "resume with --resume")
            if step > resumeStep && step % config.checkpointEvery == 0 { try writeCheckpoint(step: step, optimizer: optimizer) }
            optimizer.learningRate = config.learningRate * schedule.factor(at: step)
            // Every rank draws the whole batch (the same random stream) and trains its rows r, r + N, …
            let scenes = (0..<config.batch).map { _ in world.scene(.train, index: Int(rng.next() % 100_000_000)) }
            let encoded = scenes.map { tokenizer.encode($0.caption, length: config.model.maxTextLength) }
            decoder.zeroGrad()
            let mine = communicator.ownRows(of: scenes.count)
            // The loss is a mean over the batch's caption tokens: a slice's is weighted by its share of them.
            let tokens = { (rows: [Int]) in rows.reduce(0) { $0 + encoded[$1].valid.filter { $0 }.count } }
            var value = 0.0
            if !mine.isEmpty {
                let loss = try decoder.captionLoss(ImageTensors.tensor(mine.map { renderer.render(scenes[$0]) }),
                                                   tokens: mine.map { encoded[$0].ids }, valid: mine.map { encoded[$0].valid })
                let share = Double(tokens(mine)) / Double(tokens(Array(scenes.indices)))
                try (loss * share).backward()
                value = loss.item * share
            }
            if communicator.size > 1 {
                try communicator.allreduceGradients(parameters)
                var values = [value]
                try communicator.allreduceSum(&values)
                value = values[0]
            }
            try clipGradNorm(parameters, maxNorm: config.gradientClip)
            try optimizer.step()
            sum += value
            if (step + 1) % config.logEvery == 0 || step == config.steps - 1 {
                let n = Double(step % config.logEvery + 1)
                let rate = n * Double(config.batch) / Date().timeIntervalSince(intervalStart)
                try log.record("caption_loss", sum / n)
                try log.record("learning_rate", optimizer.learningRate)
                try log.record("samples_per_second", rate)
                try log.record("seconds", Date().timeIntervalSince(start))
                try log.endEpoch()
                let remaining = Int(Double(config.steps - step - 1) * Double(config.batch) / Swift.max(rate, 1e-9))
                progress(String(format: "step %d/%d  caption loss %.4f  %.0f samples/s  ETA %d:%02d", step + 1, config.steps,
                                sum / n, rate, remaining / 60, remaining % 60))
                sum = 0
                intervalStart = Date()
            }
        }
        let decoderFolder = output.appendingPathComponent("decoder")
        guard communicator.rank == 0 else { return }
        try PretrainedDecoder.save(decoder, tokenizer: tokenizer, to: decoderFolder)
        try log.checkpoint(epoch: log.epochs, path: "decoder/decoder.safetensors",
                           sha256: SHA256.hex(fileAt: decoderFolder.appendingPathComponent("decoder.safetensors")))
        try log.close()
        progress("wrote \(decoderFolder.path)")
    }

    /// The decoder, the optimizer, the random stream and the log's length before `step`, written
    /// atomically to `checkpoints/step-NNNNNNN`; older checkpoints are removed.
    private func writeCheckpoint(step: Int, optimizer: AdamW) throws {
        guard communicator.rank == 0 else { return }
        try folder.writeCheckpoint(String(format: "step-%07d", step)) { temporary in
            try PretrainedDecoder.save(decoder, tokenizer: tokenizer, to: temporary.appendingPathComponent("decoder"))
            try Safetensors.write(optimizer.state(), to: temporary.appendingPathComponent("optimizer.safetensors"))
            try folder.writeState(State(step: step, rng: rng, logEpochs: log.epochs, config: config), into: temporary)
        }
        try log.event(epoch: log.epochs, kind: "checkpoint", "resumable checkpoint at step \(step)")
        try log.flush()
    }

    /// Greedy captions for images, for a quick look at what the decoder learned.
    public static func caption(_ decoder: MultimodalDecoder, tokenizer: Tokenizer, images: Tensor) throws -> [String] {
        let b = images.shape[0], length = decoder.config.maxTextLength
        var tokens = [[Int]](repeating: [Int](repeating: Tokenizer.pad, count: length), count: b)
        var done = [Bool](repeating: false, count: b)
        try withNoGrad {
            for position in 0..<(length - 1) where !done.allSatisfy({ $0 }) {
                // Each row ends its real tokens with EOS so the decoder accepts it; position `position` predicts the next word.
                var ids = tokens, valid = [[Bool]](repeating: [Bool](repeating: false, count: length), count: b)
                for row in 0..<b {
                    ids[row][position] = Tokenizer.endOfSequence
                    for j in 0...position { valid[row][j] = true }
                }
                let states = try decoder(images, tokens: ids, valid: valid)
                let rows = (0..<b).map { $0 * states.hidden.shape[1] + decoder.config.imageTokens + position - 1 }
                let logits = try decoder.languageModelHead(states.hidden.reshaped([-1, decoder.config.width]).indexSelect(axis: 0, rows))
                let next = try logits.argmax(axis: 1)
                for row in 0..<b where !done[row] {
                    if next[row] == Tokenizer.endOfSequence { done[row] = true } else { tokens[row][position] = next[row] }
                }
            }
        }
        return tokens.map { tokenizer.decode($0) }
    }
}
