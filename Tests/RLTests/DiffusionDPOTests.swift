import Foundation
import XCTest
import Diffusion
import Engine
import Images
import Rewards
@testable import RL

/// A reward that gives sample i of every call the i-th of fixed values (cycling).
struct IndexedReward: RewardFunction {
    var values: [Double]
    var perspectives: [String] { ["indexed"] }
    func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        ["indexed": images.indices.map { values[$0 % values.count] }]
    }
}

/// Online Diffusion-DPO: the pairs, the loss and its gradient by hand, and that an update moves
/// the policy's implicit reward toward the winners.
final class DiffusionDPOTests: XCTestCase {
    /// Every strictly ordered pair within a prompt's images, winner first; ties and other prompts
    /// give none.
    func testPreferencePairsByHand() {
        let pairs = preferencePairs(rewards: [1, 0, 0.5, 0.5, 2, 2], groups: [0, 0, 0, 0, 1, 1])
        XCTAssertEqual(pairs.map { [$0.winner, $0.loser] }, [[0, 1], [0, 2], [0, 3], [2, 1], [3, 1]])
        XCTAssertTrue(preferencePairs(rewards: [1, 2], groups: [0, 1]).isEmpty)
    }

    /// Two pairs at β = 10: margins (0.10 − 0.20) − (0.12 − 0.18) = −0.04 and
    /// (0.30 − 0.25) − (0.28 − 0.26) = 0.03; loss = mean(softplus(10·m)) = (0.513015 + 0.854355)/2;
    /// ∂/∂e_w = β·σ(β m)/P = 2.006560, 2.872215, and the negatives for the losers; the first pair is
    /// already ordered right. The gradient also matches finite differences.
    func testLossAccuracyAndGradientByHand() throws {
        let winners = try Tensor([0.10, 0.30], shape: [2], dtype: .float64), losers = try Tensor([0.20, 0.25], shape: [2], dtype: .float64)
        winners.requiresGrad = true
        losers.requiresGrad = true
        let result = try diffusionDPOLoss(winnerErrors: winners, loserErrors: losers, referenceWinnerErrors: [0.12, 0.28],
                                          referenceLoserErrors: [0.18, 0.26], beta: 10)
        XCTAssertEqual(result.loss.item, (0.513015 + 0.854355) / 2, accuracy: 1e-6)
        XCTAssertEqual(result.accuracy, 0.5)
        try result.loss.backward()
        let expected = [2.006560, 2.872215]
        for i in 0..<2 {
            XCTAssertEqual(winners.grad!.values[i], expected[i], accuracy: 1e-5)
            XCTAssertEqual(losers.grad!.values[i], -expected[i], accuracy: 1e-5)
        }
        func loss(_ w: [Double], _ l: [Double]) throws -> Double {
            try diffusionDPOLoss(winnerErrors: Tensor(w, shape: [2], dtype: .float64), loserErrors: Tensor(l, shape: [2], dtype: .float64),
                                 referenceWinnerErrors: [0.12, 0.28], referenceLoserErrors: [0.18, 0.26], beta: 10).loss.item
        }
        let h = 1e-6
        for i in 0..<2 {
            var up = [0.10, 0.30], down = up
            up[i] += h
            down[i] -= h
            XCTAssertEqual((try loss(up, [0.20, 0.25]) - loss(down, [0.20, 0.25])) / (2 * h), winners.grad!.values[i], accuracy: 1e-6)
        }
        // At the reference every margin is 0: the loss is log 2.
        let same = try diffusionDPOLoss(winnerErrors: Tensor([0.2, 0.3], shape: [2], dtype: .float64),
                                        loserErrors: Tensor([0.4, 0.1], shape: [2], dtype: .float64),
                                        referenceWinnerErrors: [0.2, 0.3], referenceLoserErrors: [0.4, 0.1], beta: 1000)
        XCTAssertEqual(same.loss.item, log(2), accuracy: 1e-6)
        XCTAssertThrowsError(try diffusionDPOLoss(winnerErrors: winners, loserErrors: losers, referenceWinnerErrors: [0.1],
                                                  referenceLoserErrors: [0.1, 0.2], beta: 1)) {
            XCTAssertTrue("\($0)".contains("shape mismatch"), "\($0)")
        }
    }

    func tinyDPOConfig() -> FineTuningConfig {
        var config = FineTuningTrainerTests.tinyConfig()
        config.objective = "diffusionDPO"
        config.diffusionDPO.beta = 100
        config.diffusionDPO.timestepsPerPair = 8
        config.trainBatch = 4
        config.learningRate = 1e-3
        config.weightDecay = 0
        config.evaluation.prompts = 0
        config.epochs = 1
        return config
    }

    /// After an update on pairs (0 over 1, 2 over 3), the policy denoises each winner better than
    /// the loser relative to the reference, on noise it was not trained on: the implicit reward
    /// margin is negative.
    func testAnUpdateFavorsTheWinners() throws {
        var config = tinyDPOConfig()
        config.rewards = RewardComposition(weights: ["fixed": 1])
        let trainer = try FineTuningTrainer.scratch(config, label: "dpo")
        var rng = trainer.epochRNG(0)
        let (groups, _, trajectories) = try trainer.sampleEpoch(using: &rng)
        XCTAssertEqual(groups, [groups[0], groups[0], groups[2], groups[2]])
        let figures = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], rewards: [1, 0, 0, 1], groups: groups, rng: &rng)
        XCTAssertEqual(figures["effective_samples"]!, 2)
        XCTAssertTrue(figures["loss"]!.isFinite && figures["grad_norm"]! > 0)
        let x0 = trajectories.latents.last!
        func errors(_ model: LatentDiffusionModel) throws -> [Double] {
            var fixed = RandomGenerator(seed: 5)
            let members = (0..<64).map { $0 % 4 }
            let timesteps = try model.drawTimesteps(members.count, using: &fixed)
            let noise = Tensor.randn([members.count] + Array(x0.shape.dropFirst()), using: &fixed)
            let values = try withNoGrad {
                try model.denoisingErrors(x0: x0.indexSelect(axis: 0, members), captions: members.map { trajectories.prompts[$0] },
                                          timesteps: timesteps, noise: noise, guidance: 1).values
            }
            var mean = [Double](repeating: 0, count: 4)
            for (k, i) in members.enumerated() { mean[i] += values[k] / 16 }
            return mean
        }
        let mine = try errors(trainer.policy), theirs = try errors(trainer.reference)
        let relative = zip(mine, theirs).map { $0 - $1 }
        let margins = [relative[0] - relative[1], relative[3] - relative[2]]
        XCTAssertLessThan(margins[0] + margins[1], 0, "winner − loser error change relative to the reference: \(margins)")
    }

    /// `guided` compares the sampler's guided predictions: at guidance 1 that is the conditional
    /// branch, so the update is the same bit for bit; at guidance 5 it is another update.
    func testGuidedComparesTheSamplersPrediction() throws {
        for guidance in [1.0, 5.0] {
            var weights: [[[Double]]] = []
            for guided in [false, true] {
                var config = tinyDPOConfig()
                config.rewards = RewardComposition(weights: ["fixed": 1])
                config.sampling.guidance = guidance
                config.diffusionDPO.guided = guided
                config.diffusionDPO.timestepsPerPair = 2
                let trainer = try FineTuningTrainer.scratch(config, label: "dpo")
                var rng = trainer.epochRNG(0)
                let (groups, _, trajectories) = try trainer.sampleEpoch(using: &rng)
                _ = try trainer.trainObjective(trajectories, indices: [0, 1, 2, 3], rewards: [1, 0, 0, 1], groups: groups, rng: &rng)
                weights.append(trainer.parameters.map(\.tensor.values))
            }
            if guidance == 1 { XCTAssertEqual(weights[0], weights[1]) } else { XCTAssertNotEqual(weights[0], weights[1]) }
        }
    }

    /// A prompt whose images all score alike gives no pair, and the parameters stay put; one image
    /// per prompt cannot form pairs and is refused.
    func testTiesDoNotMoveTheParametersAndSingleImagesAreRefused() throws {
        var config = tinyDPOConfig()
        config.epochs = 2
        config.rewards = RewardComposition(weights: ["fixed": 1])
        let trainer = try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("dpo-\(UUID())"),
                                      commandLine: "test", rewardFunctions: [FixedReward(value: 0.3)])
        let before = trainer.parameters.map(\.tensor.values)
        try trainer.run()
        XCTAssertEqual(trainer.parameters.map(\.tensor.values), before)
        var single = config
        single.imagesPerPrompt = 1
        XCTAssertThrowsError(try single.validate()) { XCTAssertTrue("\($0)".contains("imagesPerPrompt"), "\($0)") }
        var bad = config
        bad.diffusionDPO.beta = 0
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("beta"), "\($0)") }
    }

    /// A run with the DPO loss logs its pair figures and writes a model, end to end.
    func testRunLogsPairsAndWritesTheModel() throws {
        var config = tinyDPOConfig()
        config.rewards = RewardComposition(weights: ["indexed": 1])
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("dpo-run-\(UUID())")
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test", rewardFunctions: [IndexedReward(values: [1, 0, 0.5, 0.5])])
        var summaries: [EpochSummary] = []
        try trainer.run(epochDone: { summaries.append($0) })
        try trainer.close()
        XCTAssertEqual(summaries.first?.training["effective_samples"], 1, "images 0/1 form a pair, 2/3 tie")
        XCTAssertTrue(trainer.line(summaries[0]).contains("pairs 1"))
        XCTAssertNoThrow(try LatentDiffusionModel.load(from: output.appendingPathComponent("model")))
    }
}
