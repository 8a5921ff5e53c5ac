import Diffusion
import Engine
import Foundation
import Images
import Inputs
import Layers
import RunLog

/// Everything `diffusion-rl pretrain` reads from its config, with defaults that run.
public struct PretrainConfig: Codable, Equatable, Sendable, ValidatedConfig {
    public var model = ModelConfig()
    public var seed: UInt64 = 0
    /// A folder with captions.jsonl and PNGs; empty for the embedded world.
    public var dataFolder = ""
    public var hazardRate = 0.05
    public var vaeSteps = 2000
    public var vaeBatch = 32
    public var vaeLearningRate = 1e-3
    public var vaeBeta = 1e-6
    public var diffusionSteps = 6000
    public var diffusionBatch = 32
    public var diffusionLearningRate = 3e-4
    /// Share of captions replaced by "" so that classifier-free guidance works.
    public var captionDropout = 0.1
    public var warmupSteps = 100
    public var gradientClip = 1.0
    public var logEvery = 50
    /// Steps between resumable checkpoints (a multiple of `logEvery`).
    public var checkpointEvery = 500
    public var threads = 2
    /// A model folder to continue from instead of a fresh model: its VAE (with its latent scale),
    /// tokenizer and architecture are kept and only the text encoder and UNet train, for
    /// `diffusionSteps` more steps (continued pretraining; `vaeSteps` must be 0 and `model` is not
    /// read). Empty: train from scratch.
    public var initialModel = ""
    /// Whether the text encoder trains beside the UNet; false keeps it as it was (with
    /// `initialModel`: a control that tells the UNet's share of what continued pretraining
    /// teaches from the text encoder's, since fine-tuning trains the UNet alone).
    public var trainTextEncoder = true

    public init() {}

    /// Fails with one line naming the first setting that cannot run.
    public func validate() throws {
        func require(_ condition: Bool, _ message: String) throws {
            if !condition { throw DataError(description: message) }
        }
        try require(vaeSteps >= 0 && diffusionSteps >= 0 && vaeSteps + diffusionSteps >= 1, "vaeSteps and diffusionSteps must be ≥ 0, and not both 0")
        try require(vaeBatch >= 1 && diffusionBatch >= 1, "vaeBatch and diffusionBatch must be at least 1")
        try require([vaeLearningRate, diffusionLearningRate].allSatisfy { $0 > 0 && $0.isFinite }, "vaeLearningRate and diffusionLearningRate must be positive")
        try require(vaeBeta >= 0 && vaeBeta.isFinite, "vaeBeta must be a finite number ≥ 0")
        try require(captionDropout >= 0 && captionDropout <= 1 && hazardRate >= 0 && hazardRate <= 1, "captionDropout and hazardRate must be in [0, 1]")
        try require(warmupSteps >= 0 && gradientClip > 0 && gradientClip.isFinite && threads >= 1,
                    "warmupSteps must be ≥ 0, gradientClip positive and threads at least 1")
        try require(checkpointEvery >= 1 && logEvery >= 1 && checkpointEvery % logEvery == 0,
                    "checkpointEvery (\(checkpointEvery)) must be a positive multiple of logEvery (\(logEvery))")
        try require(initialModel.isEmpty || vaeSteps == 0, "initialModel continues a trained model's diffusion part; set vaeSteps to 0")
        if initialModel.isEmpty { try model.validate() }
    }
}

/// Trains the VAE, then the text encoder and UNet on frozen VAE latents, logging to one HDF5
/// file and writing the model folder.
public final class Pretrainer {
    public let config: PretrainConfig
    public let folder: RunFolder
    public var output: URL { folder.url }
    let data: TrainingData
    public private(set) var model: LatentDiffusionModel
    let log: RunLogWriter
    var rng: RandomGenerator
    let start = Date()
    /// Where a resumed run picks up.
    var resumeState: PretrainState?
    var resumeCheckpoint: URL?
    /// For tests: stop (as if killed) before this step of this phase.
    var stopBefore: (phase: String, step: Int)?

    static let metrics: [MetricSpec] = ["vae_loss", "vae_reconstruction", "vae_kl", "diffusion_loss"].map { MetricSpec($0, better: .lower, kind: .loss) }
        + ["learning_rate", MetricSpec("samples_per_second", better: .higher), MetricSpec("seconds", better: .lower, kind: .duration)]

    /// Prepares a run in `output` (refusing an existing run unless `overwrite`), or with `resume`
    /// continues the run there from its last checkpoint (same config, same result).
    public init(config: PretrainConfig, output: URL, commandLine: String, overwrite: Bool, resume: Bool = false) throws {
        try config.validate()
        self.config = config
        Threads.set(config.threads)
        data = config.dataFolder.isEmpty
            ? WorldTrainingData(seed: config.seed, hazardRate: config.hazardRate, imageSize: config.model.imageSize)
            : try FolderTrainingData(folder: URL(fileURLWithPath: config.dataFolder), imageSize: config.model.imageSize)
        rng = RandomGenerator(seed: config.seed)
        folder = try RunFolder(output, start: RunStart(resume: resume, overwrite: overwrite))
        if resume {
            let checkpoint = folder.latestCheckpoint!
            let state = try folder.readState(PretrainState.self, from: checkpoint, expecting: config)
            model = try LatentDiffusionModel.load(from: checkpoint.appendingPathComponent("model"))
            rng = state.rng
            resumeState = state
            resumeCheckpoint = checkpoint
            log = try RunLogWriter(resuming: folder.logURL, keepingEpochs: state.logEpochs)
            try log.event(epoch: log.epochs, kind: "resume", "resumed at \(state.phase) step \(state.step)")
        } else {
            if config.initialModel.isEmpty {
                model = try LatentDiffusionModel(config: config.model, tokenizer: Tokenizer(captions: data.vocabularyCaptions()), using: &rng)
            } else {
                model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: config.initialModel))
            }
            var info = RunInfo.current(config: ConfigLoader.json(config), seed: Int64(config.seed))
            info.commandLine = commandLine
            log = try RunLogWriter(url: folder.logURL, layout: RunLayout(metrics: Pretrainer.metrics), info: info, overwrite: overwrite)
        }
    }

    /// Runs both phases; `progress` receives one line per logged interval.
    public func run(progress: (String) -> Void) throws {
        if let state = resumeState { progress("resuming at \(state.phase) step \(state.step)") }
        if config.initialModel.isEmpty && (resumeState == nil || resumeState?.phase == "vae") {
            try trainVAE(progress: progress)
            try calibrateScale(progress: progress)
        }
        try trainDiffusion(progress: progress)
        try save(progress: progress)
        try log.close()
    }

    private func trainVAE(progress: (String) -> Void) throws {
        let parameters = model.vae.trainableParameters()
        let optimizer = AdamW(parameters, learningRate: config.vaeLearningRate, weightDecay: 0)
        let schedule = LearningRateSchedule.cosine(warmupSteps: config.warmupSteps, totalSteps: config.vaeSteps, minFactor: 0.1)
        var sums = (0.0, 0.0, 0.0), phaseStart = Date()
        let first = try resumedStep(phase: "vae", optimizer: optimizer)
        for step in first..<config.vaeSteps {
            try stopIfAsked(step: step, phase: "vae")
            try checkpointIfDue(step: step, phase: "vae", optimizer: optimizer)
            optimizer.learningRate = config.vaeLearningRate * schedule.factor(at: step)
            let (images, _) = data.batch(config.vaeBatch, using: &rng)
            model.vae.zeroGrad()
            let loss = try model.vae.loss(ImageTensors.tensor(images), beta: config.vaeBeta, using: &rng)
            try loss.total.backward()
            try clipGradNorm(parameters, maxNorm: config.gradientClip)
            try optimizer.step()
            sums = (sums.0 + loss.total.item, sums.1 + loss.reconstruction.item, sums.2 + loss.kl.item)
            if (step + 1) % config.logEvery == 0 || step == config.vaeSteps - 1 {
                let n = Double((step % config.logEvery) + 1)
                let rate = n * Double(config.vaeBatch) / Date().timeIntervalSince(phaseStart)
                try log.record("vae_loss", sums.0 / n)
                try log.record("vae_reconstruction", sums.1 / n)
                try log.record("vae_kl", sums.2 / n)
                try endInterval(learningRate: optimizer.learningRate, rate: rate)
                progress(String(format: "vae step %d/%d  loss %.5f  reconstruction %.5f  kl %.1f  %.0f images/s  ETA %@", step + 1,
                                config.vaeSteps, sums.0 / n, sums.1 / n, sums.2 / n, rate,
                                eta(remaining: config.vaeSteps - step - 1, perSecond: rate / Double(config.vaeBatch))))
                sums = (0, 0, 0)
                phaseStart = Date()
            }
        }
    }

    /// scale = 1 / std of the VAE's latent means over 512 training images.
    private func calibrateScale(progress: (String) -> Void) throws {
        var values: [Double] = []
        for _ in 0..<16 {
            let (images, _) = data.batch(32, using: &rng)
            values += try withNoGrad { try model.vae.encode(ImageTensors.tensor(images)).mean.values }
        }
        let mean = values.reduce(0, +) / Double(values.count)
        let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
        model.vae.scaleFactor.assign(try Tensor([1 / Swift.max(std, 1e-6)], shape: [1]))
        try log.event(epoch: log.epochs, kind: "info", String(format: "latent scale factor %.5f (latent std %.5f)", 1 / std, std))
        progress(String(format: "latent scale factor %.4f", 1 / std))
    }

    private func trainDiffusion(progress: (String) -> Void) throws {
        model.vae.setTrainable(false)
        if !config.trainTextEncoder { model.textEncoder.setTrainable(false) }
        let parameters = model.unet.trainableParameters() + model.textEncoder.trainableParameters(prefix: "text.")
        let optimizer = AdamW(parameters, learningRate: config.diffusionLearningRate, weightDecay: 0.01)
        let schedule = LearningRateSchedule.cosine(warmupSteps: config.warmupSteps, totalSteps: config.diffusionSteps, minFactor: 0.1)
        let noiseSchedule = model.schedule
        var sum = 0.0, phaseStart = Date()
        let first = try resumedStep(phase: "diffusion", optimizer: optimizer)
        for step in first..<config.diffusionSteps {
            try stopIfAsked(step: step, phase: "diffusion")
            try checkpointIfDue(step: step, phase: "diffusion", optimizer: optimizer)
            optimizer.learningRate = config.diffusionLearningRate * schedule.factor(at: step)
            var (images, captions) = data.batch(config.diffusionBatch, using: &rng)
            captions = captions.map { rng.uniform() < config.captionDropout ? "" : $0 }
            let latents = try model.encodeLatents(images)
            let timesteps = (0..<config.diffusionBatch).map { _ in Int(rng.next() % UInt64(noiseSchedule.trainSteps)) }
            let noise = Tensor.randn(latents.shape, using: &rng)
            let noisy = try noiseSchedule.addNoise(latents, noise: noise, timesteps: timesteps)
            model.unet.zeroGrad()
            model.textEncoder.zeroGrad()
            let (context, mask) = try model.encodeText(captions)
            let prediction = try model.unet(noisy, timesteps: timesteps.map(Double.init), context: context, contextMask: mask)
            let loss = try mseLoss(prediction, noiseSchedule.target(x0: latents, noise: noise, timesteps: timesteps))
            try loss.backward()
            try clipGradNorm(parameters, maxNorm: config.gradientClip)
            try optimizer.step()
            sum += loss.item
            if (step + 1) % config.logEvery == 0 || step == config.diffusionSteps - 1 {
                let n = Double((step % config.logEvery) + 1)
                let rate = n * Double(config.diffusionBatch) / Date().timeIntervalSince(phaseStart)
                try log.record("diffusion_loss", sum / n)
                try endInterval(learningRate: optimizer.learningRate, rate: rate)
                progress(String(format: "diffusion step %d/%d  loss %.5f  %.0f samples/s  ETA %@", step + 1, config.diffusionSteps,
                                sum / n, rate, eta(remaining: config.diffusionSteps - step - 1, perSecond: rate / Double(config.diffusionBatch))))
                sum = 0
                phaseStart = Date()
            }
        }
    }

    private func endInterval(learningRate: Double, rate: Double) throws {
        try log.record("learning_rate", learningRate)
        try log.record("samples_per_second", rate)
        try log.record("seconds", Date().timeIntervalSince(start))
        try log.endEpoch()
    }

    private func save(progress: (String) -> Void) throws {
        let folder = output.appendingPathComponent("model")
        try writeFolderAtomically(folder) { try model.save(to: $0) }
        for file in ["vae.safetensors", "text_encoder.safetensors", "unet.safetensors"] {
            let url = folder.appendingPathComponent(file)
            try log.checkpoint(epoch: log.epochs, path: "model/\(file)", sha256: try SHA256.hex(fileAt: url))
        }
        progress("wrote \(folder.path)")
    }

    /// The step a resumed phase starts at (0 otherwise), with the optimizer's state restored.
    private func resumedStep(phase: String, optimizer: AdamW) throws -> Int {
        guard let state = resumeState, state.phase == phase, let checkpoint = resumeCheckpoint else { return 0 }
        let url = checkpoint.appendingPathComponent("optimizer.safetensors")
        try optimizer.loadState(Safetensors.read(url).tensors)
        resumeState = nil
        return state.step
    }

    /// At every `checkpointEvery` steps (not at 0): the model, the optimizer, the random stream and
    /// the log's epoch count, written atomically to `checkpoints/step-NNNNNNN` (counting VAE steps
    /// first, so names sort in training order); older checkpoints are removed.
    private func checkpointIfDue(step: Int, phase: String, optimizer: AdamW) throws {
        guard step > 0, step % config.checkpointEvery == 0 else { return }
        let overall = phase == "vae" ? step : config.vaeSteps + step
        try folder.writeCheckpoint(String(format: "step-%07d", overall)) { temporary in
            try model.save(to: temporary.appendingPathComponent("model"))
            try Safetensors.write(optimizer.state(), to: temporary.appendingPathComponent("optimizer.safetensors"))
            let state = PretrainState(phase: phase, step: step, rng: rng, logEpochs: log.epochs, config: config)
            try folder.writeState(state, into: temporary)
        }
        try log.event(epoch: log.epochs, kind: "checkpoint", "resumable checkpoint at \(phase) step \(step)")
        try log.flush()
    }

    private func stopIfAsked(step: Int, phase: String) throws {
        if let stop = stopBefore, stop.phase == phase, stop.step == step {
            throw DataError(description: "stopped before \(phase) step \(step) (test)")
        }
        try log.stopIfRequested("at \(phase) step \(step)")
    }

    private func eta(remaining: Int, perSecond: Double) -> String {
        let seconds = Int(Double(remaining) / Swift.max(perSecond, 1e-9))
        return String(format: "%d:%02d", seconds / 60, seconds % 60)
    }
}

/// What a resumable pretraining checkpoint records besides the weights and optimizer.
struct PretrainState: CheckpointState {
    var phase: String
    var step: Int
    var rng: RandomGenerator
    var logEpochs: Int
    var config: PretrainConfig
}
