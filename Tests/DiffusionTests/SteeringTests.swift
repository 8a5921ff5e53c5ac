import Foundation
import Inputs
import XCTest
import Engine
import Images
@testable import Diffusion

/// Feynman–Kac steering: systematic resampling and the potentials by hand; flat potentials give
/// plain sampling's draws exactly; a sharp potential concentrates the particles and raises the reward.
final class SteeringTests: XCTestCase {
    /// Cumulative weights 0.1, 0.3, 1.0; positions (u + k)/3.
    func testSystematicResamplingByHand() {
        XCTAssertEqual(systematicResampling(weights: [0.1, 0.2, 0.7], offset: 0.5), [1, 2, 2])   // 0.167, 0.5, 0.833
        XCTAssertEqual(systematicResampling(weights: [0.1, 0.2, 0.7], offset: 0), [0, 2, 2])     // 0, 0.333, 0.667
        XCTAssertEqual(systematicResampling(weights: [0.5, 0.5, 0, 0], offset: 0.9), [0, 0, 1, 1])  // 0.225, 0.475, 0.725, 0.975
        XCTAssertEqual(systematicResampling(weights: [0.25, 0.25, 0.25, 0.25], offset: 0.3), [0, 1, 2, 3])
        XCTAssertEqual(systematicResampling(weights: [0, 0, 1], offset: 0.999), [2, 2, 2])
    }

    /// exp(λ(r − r′)) normalized: λ = ln 3 and differences 1, 0 give 3 : 1; the previous reward
    /// cancels what an ancestor already had; non-finite rewards get 0; all non-finite: uniform.
    func testPotentialsByHand() {
        let weights = steeringWeights(rewards: [1, 0], previous: [0, 0], lambda: log(3))
        XCTAssertEqual(weights[0], 0.75, accuracy: 1e-12)
        XCTAssertEqual(weights[1], 0.25, accuracy: 1e-12)
        let difference = steeringWeights(rewards: [1, 1], previous: [1, 0], lambda: log(3))
        XCTAssertEqual(difference[1], 0.75, accuracy: 1e-12, "the particle whose reward rose since the last resampling gains")
        XCTAssertEqual(steeringWeights(rewards: [.nan, 2, 2], previous: [0, 0, 0], lambda: 5), [0, 0.5, 0.5])
        XCTAssertEqual(steeringWeights(rewards: [.nan, .nan], previous: [0, 0], lambda: 5), [0.5, 0.5])
        XCTAssertEqual(steeringWeights(rewards: [3, -2], previous: [0, 0], lambda: 0), [0.5, 0.5])
    }

    func tinyModel() throws -> LatentDiffusionModel {
        var rng = RandomGenerator(seed: 5)
        let model = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: ["a red circle", "two blue squares"]), using: &rng)
        for p in model.unet.namedParameters() { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &rng)) }
        return model
    }

    /// With a constant reward the particles are exactly what `generate` draws for the prompts
    /// repeated K times with the same seed, and each prompt keeps its first particle.
    func testFlatPotentialsGivePlainSampling() throws {
        let model = try tinyModel()
        var settings = SamplingSettings()
        settings.steps = 6
        settings.seed = 9
        var steering = SteeringSettings()
        steering.particles = 3
        steering.every = 2
        let prompts = ["a red circle", "two blue squares"]
        let steered = try model.generateSteered(prompts, settings: settings, steering: steering) { images, _ in images.map { _ in 0.5 } }
        let plain = try model.generate(prompts.flatMap { [String](repeating: $0, count: 3) }, settings: settings)
        XCTAssertEqual(steered.particles, plain)
        XCTAssertEqual(steered.images, [plain[0], plain[3]])
        XCTAssertEqual(steered.resamplings, 2, "after steps 2 and 4 of 6, not after the last")
        XCTAssertEqual(steered.meanSurvivors, 3)
        XCTAssertEqual(steered.rewardEvaluations, 6 * 2 + 6)
    }

    /// A reward on mean brightness with a sharp λ: resampling keeps fewer ancestors than K, and
    /// the kept image is the brightest final particle; the steered particles are brighter on
    /// average than plain sampling's from the same seed.
    func testASharpPotentialConcentratesTheParticles() throws {
        let model = try tinyModel()
        var settings = SamplingSettings()
        settings.steps = 6
        var steering = SteeringSettings()
        steering.particles = 8
        steering.every = 1
        steering.lambda = 200
        let prompts = ["a red circle", "two blue squares"]
        func brightness(_ images: [RGBImage], _ prompts: [String]) -> [Double] {
            images.map { Double($0.pixels.reduce(0) { $0 + Int($1) }) / Double($0.pixels.count * 255) }
        }
        let steered = try model.generateSteered(prompts, settings: settings, steering: steering, reward: brightness)
        XCTAssertLessThan(steered.meanSurvivors, 8)
        for p in 0..<2 {
            XCTAssertEqual(steered.rewards[p], steered.particleRewards[p * 8 ..< p * 8 + 8].max()!)
        }
        let plain = brightness(try model.generate(prompts.flatMap { [String](repeating: $0, count: 8) }, settings: settings), [])
        let steeredMean = steered.particleRewards.reduce(0, +) / 16, plainMean = plain.reduce(0, +) / 16
        XCTAssertGreaterThan(steeredMean, plainMean, "steered \(steered.particleRewards) plain \(plain)")
    }
}
