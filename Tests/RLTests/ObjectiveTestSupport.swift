import Foundation
import Diffusion
import Engine
@testable import RL

extension FineTuningTrainer {
    /// A trainer of `config` in a fresh scratch folder ("`label`-UUID") whose one reward function,
    /// `fixed`, scores every image 0: for tests that give the objective its inputs by hand.
    static func scratch(_ config: FineTuningConfig, label: String) throws -> FineTuningTrainer {
        try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID())"),
                              commandLine: "test", rewardFunctions: [FixedReward(value: 0)])
    }

    /// The trainer's objective on chosen samples of `trajectories`, with the given advantages,
    /// rewards and groups (zeros and one group each where not given).
    func trainObjective(_ trajectories: Trajectories, indices: [Int], advantages: [Double]? = nil, rewards: [Double]? = nil,
                        groups: [Int]? = nil, rng: inout RandomGenerator) throws -> [String: Double] {
        let n = trajectories.count
        let samples = EpochSamples(trajectories: trajectories, groups: groups ?? (0..<n).map { $0 }, promptIndices: (0..<n).map { $0 % promptPool.count },
                                   usable: indices, rewards: rewards ?? [Double](repeating: 0, count: n),
                                   advantages: advantages ?? [Double](repeating: 0, count: n))
        return try objective.train(samples, trainer: self, rng: &rng)
    }

    /// ReFL's loss on a batch with the given differentiable sources.
    func reflLoss(_ trajectories: Trajectories, batch: [Int], sources: [DifferentiableSource], beta: Double = 0) throws -> Tensor {
        try ReFLObjective(config: config).loss(trajectories, batch: batch, sources: sources, policy: policy, reference: reference, beta: beta)
    }

    /// Each of the first four samples' denoising loss on its final latent, at guidance `guidance`,
    /// over 16 noise draws that are the same before and after an update.
    func perSampleDenoisingLoss(_ trajectories: Trajectories, guidance: Double) throws -> [Double] {
        let x0 = trajectories.latents.last!
        return try (0..<4).map { i in
            var fixed = RandomGenerator(seed: 77)
            let repeated = [Int](repeating: i, count: 16)
            return try withNoGrad {
                try policy.weightedDenoisingLoss(x0: x0.indexSelect(axis: 0, repeated), captions: repeated.map { trajectories.prompts[$0] },
                                                 weights: [Double](repeating: 1.0 / 16, count: 16), guidance: guidance, using: &fixed).item
            }
        }
    }
}
