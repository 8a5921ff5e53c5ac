import Foundation
import Inputs
import XCTest
import Engine
import Layers
@testable import Diffusion

/// Sampling as a policy on a tiny model: what is recorded, and recomputing it.
final class TrajectoryTests: XCTestCase {
    let prompts = ["a red circle", "two blue squares", "a red circle"]

    /// A tiny model moved off its initialization (so that it draws), 5 DDIM steps, and the
    /// trajectories of `prompts` sampled with the seed after `seed`.
    func sampled(seed: UInt64) throws -> (LatentDiffusionModel, SamplingSettings, Trajectories) {
        var rng = RandomGenerator(seed: seed)
        let model = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: ["a red circle", "two blue squares"]), using: &rng)
        for p in model.unet.namedParameters() { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &rng)) }
        var settings = SamplingSettings()
        settings.steps = 5
        var sampling = RandomGenerator(seed: seed + 1)
        return (model, settings, try model.sampleTrajectories(prompts, settings: settings, using: &sampling))
    }

    func testTrajectoriesRecordEveryStepAndRecomputeTheirLogProbs() throws {
        let (model, sampledWith, trajectories) = try sampled(seed: 5)
        var settings = sampledWith
        var sampling = RandomGenerator(seed: 6)
        XCTAssertEqual(trajectories.latents.count, 6)
        XCTAssertEqual(trajectories.timesteps.last, 1)
        XCTAssertEqual(trajectories.images.count, 3)
        XCTAssertEqual(trajectories.latents[0].shape, [3, 2, 4, 4])
        for s in 0..<5 {
            XCTAssertTrue(trajectories.logProbs[s].values.allSatisfy(\.isFinite), "step \(s)")
            XCTAssertGreaterThan(trajectories.sigmas[s], 0)
            // x_t′ − μ_θ is the σ_t-scaled noise that was drawn: its log-density is the recorded one.
            let byHand = try gaussianLogProb(trajectories.latents[s + 1], mean: trajectories.means[s], sigma: trajectories.sigmas[s])
            XCTAssertEqual(byHand.values, trajectories.logProbs[s].values)
        }
        // Same parameters, same batch: the recomputed step equals the recorded one.
        let context = try model.encodeText(prompts), empty = try model.encodeText(["", "", ""])
        for s in [0, 4] {
            let again = try model.stepLogProb(trajectories, step: s, indices: [0, 1, 2], context: context, empty: empty, settings: settings)
            for (a, b) in zip(again.logProb.values, trajectories.logProbs[s].values) { XCTAssertEqual(a, b, accuracy: 1e-3 * abs(b)) }
        }
        // A subset, recomputed with gradients to the UNet.
        let sub = try model.stepLogProb(trajectories, step: 2, indices: [2], context: model.encodeText(["a red circle"]),
                                        empty: model.encodeText([""]), settings: settings)
        XCTAssertEqual(sub.logProb.values[0], trajectories.logProbs[2].values[2], accuracy: 1e-3 * abs(trajectories.logProbs[2].values[2]))
        try sub.logProb.sum().backward()
        XCTAssertNotNil(model.unet.namedParameters().first { $0.name == "conv_in.weight" }!.tensor.grad)

        let joined = try Trajectories.concatenated([trajectories, trajectories])
        XCTAssertEqual(joined.count, 6)
        XCTAssertEqual(joined.latents[3].shape, [6, 2, 4, 4])

        settings.eta = 0
        XCTAssertThrowsError(try model.sampleTrajectories(prompts, settings: settings, using: &sampling)) {
            XCTAssertTrue("\($0)".contains("η = 0"), "\($0)")
        }
    }
    /// Several steps in one pass give each step what it gives alone — log-probabilities, means and
    /// the gradient of their sum — with the rows of each step at their own timestep.
    func testStepsStackedInOnePassEqualStepsOneByOne() throws {
        let (model, settings, trajectories) = try sampled(seed: 7)
        let indices = [2, 0], steps = [3, 0, 4]
        let context = try model.encodeText(indices.map { prompts[$0] }), empty = try model.encodeText(["", ""])
        let weight = model.unet.namedParameters().first { $0.name == "conv_in.weight" }!.tensor

        var alone: [DDIMStep] = []
        for s in steps {
            let step = try model.stepLogProb(trajectories, step: s, indices: indices, context: context, empty: empty, settings: settings)
            try step.logProb.sum().backward()
            alone.append(step)
        }
        let gradientAlone = weight.grad!.values
        weight.grad = nil
        let stacked = try model.stepLogProbs(trajectories, steps: steps, indices: indices, context: context, empty: empty, settings: settings)
        XCTAssertEqual(stacked.count, 3)
        var total = try stacked[0].logProb.sum()
        for step in stacked.dropFirst() { total = try total + step.logProb.sum() }
        try total.backward()
        for (a, b) in zip(alone, stacked) {
            XCTAssertEqual(a.sigma, b.sigma)
            for (x, y) in zip(a.logProb.values, b.logProb.values) { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x)) }
            for (x, y) in zip(a.mean.values, b.mean.values) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        }
        let scale = gradientAlone.map(abs).max()!
        XCTAssertGreaterThan(scale, 0)
        for (x, y) in zip(gradientAlone, weight.grad!.values) { XCTAssertEqual(x, y, accuracy: 1e-4 * scale) }
        // The steps' rows are told apart: a step's recomputed log-probability is its recorded one.
        for (s, step) in zip(steps, stacked) {
            for (k, i) in indices.enumerated() {
                XCTAssertEqual(step.logProb.values[k], trajectories.logProbs[s].values[i], accuracy: 1e-3 * abs(trajectories.logProbs[s].values[i]))
            }
        }
        XCTAssertThrowsError(try model.stepLogProbs(trajectories, steps: [5], indices: indices, context: context, empty: empty, settings: settings)) {
            XCTAssertTrue("\($0)".contains("step 5 of 5"), "\($0)")
        }
    }
}
