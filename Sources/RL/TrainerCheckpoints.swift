import Diffusion
import Engine
import Foundation
import Layers
import Rewards
import RunLog

extension FineTuningTrainer {
    /// What a checkpoint holds besides tensors.
    struct TrainerState: CheckpointState {
        var epoch: Int
        var tracker: PerPromptStatTracker
        var config: FineTuningConfig
        /// The guard's history and β and the learning rate it set (nil without a guard).
        var guardState: GuardState?
    }

    /// What a checkpoint keeps of the guard; the best epoch's weights go to `guard_best.safetensors`.
    struct GuardState: Codable {
        var `guard`: OveroptimizationGuard
        var learningRate: Double
        var best: [String: Tensor]? = nil

        enum CodingKeys: String, CodingKey { case `guard`, learningRate }
    }

    /// Writes `checkpoints/epoch-NNNN` (trainable weights, optimizer, reward statistics, the
    /// objective's state) atomically, records it in the log, and removes older checkpoints.
    func writeCheckpoint() throws {
        guard writes else { return }
        let name = String(format: "epoch-%04d", epoch)
        let objectiveState = try objective.checkpointState()
        let final = try folder.writeCheckpoint(name) { temporary in
            try Safetensors.write(Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.tensor) }),
                                  to: temporary.appendingPathComponent("trainable.safetensors"))
            try Safetensors.write(optimizer.state(), to: temporary.appendingPathComponent("optimizer.safetensors"))
            if !objectiveState.isEmpty { try Safetensors.write(objectiveState, to: temporary.appendingPathComponent("objective.safetensors")) }
            for (index, reward) in refreshable.enumerated() {
                let state = try reward.refreshState()
                if !state.isEmpty { try Safetensors.write(state, to: temporary.appendingPathComponent("reward_refresh_\(index).safetensors")) }
            }
            if let guardBest { try Safetensors.write(guardBest, to: temporary.appendingPathComponent("guard_best.safetensors")) }
            let guardState = config.guard.isActive ? GuardState(guard: overoptimizationGuard, learningRate: optimizer.learningRate) : nil
            try folder.writeState(TrainerState(epoch: epoch, tracker: tracker, config: config, guardState: guardState), into: temporary)
        }
        try log.checkpoint(epoch: epoch, path: "checkpoints/\(name)/trainable.safetensors",
                           sha256: SHA256.hex(fileAt: final.appendingPathComponent("trainable.safetensors")))
        try log.flush()
    }

    /// Puts back the weights, optimizer and objective state of `checkpoint` and returns its state
    /// (epoch, reward statistics); refuses a checkpoint of another config.
    static func restore(from checkpoint: URL, in folder: RunFolder, config: FineTuningConfig, parameters: [(name: String, tensor: Tensor)],
                        optimizer: AdamW, objective: any FineTuningObjective, refreshable: [any RefreshableReward] = []) throws -> TrainerState {
        var state = try folder.readState(TrainerState.self, from: checkpoint, expecting: config)
        let best = checkpoint.appendingPathComponent("guard_best.safetensors")
        if FileManager.default.fileExists(atPath: best.path) { state.guardState?.best = try Safetensors.read(best).tensors }
        let weights = try Safetensors.read(checkpoint.appendingPathComponent("trainable.safetensors")).tensors
        let byName = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.tensor) })
        guard Set(weights.keys) == Set(byName.keys) else { throw FineTuningError("checkpoint \(checkpoint.path) holds other tensors than the model trains") }
        for (name, tensor) in weights { byName[name]!.assign(tensor) }
        try optimizer.loadState(Safetensors.read(checkpoint.appendingPathComponent("optimizer.safetensors")).tensors)
        let objectiveFile = checkpoint.appendingPathComponent("objective.safetensors")
        try objective.restore(FileManager.default.fileExists(atPath: objectiveFile.path) ? Safetensors.read(objectiveFile).tensors : [:])
        for (index, reward) in refreshable.enumerated() {
            let file = checkpoint.appendingPathComponent("reward_refresh_\(index).safetensors")
            if FileManager.default.fileExists(atPath: file.path) { try reward.restoreRefreshState(Safetensors.read(file).tensors) }
        }
        return state
    }

    /// Writes the model as it is now, `epochsDone` epochs in, to `models/epoch-NNNN/`, LoRA merged into a
    /// fresh copy of the base so that the policy keeps training with its adapters; a model
    /// without LoRA (full fine-tuning, a gated adapter) is saved as it is.
    func writeModelSnapshot(epochsDone: Int) throws {
        guard writes else { return }
        let folderURL = output.appendingPathComponent(String(format: "models/epoch-%04d", epochsDone))
        var model = policy
        if policy.config.unetAdapter == nil && config.loraRank > 0 {
            model = try LatentDiffusionModel.load(from: URL(fileURLWithPath: config.model))
            var unused = RandomGenerator(seed: 0)
            let copied = try applyLoRA(to: model.unet, rank: config.loraRank, alpha: config.resolvedLoRAAlpha, using: &unused)
            let trained = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.tensor) })
            for (name, tensor) in copied {
                guard let value = trained[name] else { throw FineTuningError("model snapshot: no trained tensor \(name)") }
                tensor.assign(value)
            }
            try mergeAndRemoveLoRA(from: model.unet)
        }
        try FileManager.default.createDirectory(at: folderURL.deletingLastPathComponent(), withIntermediateDirectories: true)
        try writeFolderAtomically(folderURL) { try model.save(to: $0) }
        try log.checkpoint(epoch: epoch, path: "models/\(folderURL.lastPathComponent)/unet.safetensors",
                           sha256: SHA256.hex(fileAt: folderURL.appendingPathComponent("unet.safetensors")))
    }

    /// Writes the fine-tuned model to `model/` (LoRA merged; a timestep-gated adapter stays apart,
    /// in `unet_lora.safetensors`) and records the files' digests.
    func saveModel() throws {
        guard writes else { return }
        if policy.config.unetAdapter == nil { try mergeAndRemoveLoRA(from: policy.unet) }
        // Written whole or not at all: a failed write (a full disk) leaves model.partial, never a broken model/.
        try writeFolderAtomically(output.appendingPathComponent("model")) { try policy.save(to: $0) }
        var files = ["unet.safetensors"] + (config.trainTextEncoder ? ["text_encoder.safetensors"] : [])
        if policy.config.unetAdapter != nil { files.append("unet_lora.safetensors") }
        for file in files {
            try log.checkpoint(epoch: epoch, path: "model/\(file)", sha256: SHA256.hex(fileAt: output.appendingPathComponent("model/\(file)")))
        }
        try log.event(epoch: epoch, kind: "done", "wrote the fine-tuned model to model/")
        try log.flush()
    }
}
