import Foundation
import XCTest
import Engine
@testable import Diffusion

private func random(_ shape: [Int], seed: UInt64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return Tensor.randn(shape, dtype: .float64, using: &rng)
}

final class NoiseScheduleTests: XCTestCase {
    func testSchedulesByHand() {
        var settings = NoiseSchedule.Settings()
        settings.trainSteps = 3
        settings.schedule = .linear
        settings.betaStart = 0.1
        settings.betaEnd = 0.3
        let linear = NoiseSchedule(settings)
        for (a, b) in zip(linear.betas, [0.1, 0.2, 0.3]) { XCTAssertEqual(a, b, accuracy: 1e-15) }
        XCTAssertEqual(linear.alphasCumprod[2], 0.9 * 0.8 * 0.7, accuracy: 1e-15)
        settings.schedule = .scaledLinear
        settings.betaStart = 0.01
        settings.betaEnd = 0.09
        let scaled = NoiseSchedule(settings)   // √β: 0.1, 0.2, 0.3
        for (a, b) in zip(scaled.betas, [0.01, 0.04, 0.09]) { XCTAssertEqual(a, b, accuracy: 1e-15) }
        let sd = NoiseSchedule()
        XCTAssertEqual(sd.betas.count, 1000)
        XCTAssertEqual(sd.betas.first!, 0.00085, accuracy: 1e-12)
        XCTAssertEqual(sd.betas.last!, 0.012, accuracy: 1e-12)
        settings.trainSteps = 1000
        settings.schedule = .cosine
        let cosine = NoiseSchedule(settings)
        XCTAssertTrue(cosine.betas.allSatisfy { $0 > 0 && $0 <= 0.999 })
        XCTAssertLessThan(cosine.alphasCumprod.last!, 1e-4)
    }

    func testAddNoiseAndVelocityTarget() throws {
        let schedule = NoiseSchedule()
        let x0 = random([2, 3], seed: 1), noise = random([2, 3], seed: 2)
        let noisy = try schedule.addNoise(x0, noise: noise, timesteps: [10, 900])
        for b in 0..<2 { for i in 0..<3 {
            let a = schedule.alphasCumprod[[10, 900][b]]
            XCTAssertEqual(noisy[b, i], a.squareRoot() * x0[b, i] + (1 - a).squareRoot() * noise[b, i], accuracy: 1e-12)
        } }
        var settings = NoiseSchedule.Settings()
        settings.prediction = .vPrediction
        let v = try NoiseSchedule(settings).target(x0: x0, noise: noise, timesteps: [10, 900])
        let a = schedule.alphasCumprod[900]
        XCTAssertEqual(v[1, 2], a.squareRoot() * noise[1, 2] - (1 - a).squareRoot() * x0[1, 2], accuracy: 1e-12)
        XCTAssertThrowsError(try schedule.addNoise(x0, noise: noise, timesteps: [1000, 0]))
        XCTAssertThrowsError(try schedule.addNoise(x0, noise: noise, timesteps: [1]))
    }
}

final class DDIMPolicyTests: XCTestCase {
    let schedule = NoiseSchedule()

    func testTimestepsEndAtOne() throws {
        let ddim = try DDIMScheduler(schedule: schedule, stepCount: 20, eta: 1)
        XCTAssertEqual(ddim.timesteps.first, 951)
        XCTAssertEqual(ddim.timesteps.last, 1)
        XCTAssertEqual(ddim.previousTimestep(1), -49)
        XCTAssertEqual(ddim.alphaProducts(1).previous, schedule.alphasCumprod[0])
        XCTAssertThrowsError(try DDIMScheduler(schedule: schedule, stepCount: 1000, eta: 1))   // 1000 is out of range
        XCTAssertThrowsError(try DDIMScheduler(schedule: schedule, stepCount: 20, eta: -1))
    }

    /// σ_t > 0 at every step including the last, and log π is finite there.
    func testLogProbIsFiniteAtEveryStepIncludingTheLast() throws {
        let ddim = try DDIMScheduler(schedule: schedule, stepCount: 20, eta: 1)
        var rng = RandomGenerator(seed: 3)
        var x = random([2, 4, 2, 2], seed: 4)
        for t in ddim.timesteps {
            XCTAssertGreaterThan(ddim.sigma(t), 0, "t = \(t)")
            let step = try ddim.step(modelOutput: random([2, 4, 2, 2], seed: UInt64(t)) * 0.5, timestep: t, sample: x, using: &rng,
                                     requireDensity: true)
            XCTAssertTrue(step.logProb.isFinite, "t = \(t)")
            x = step.previousSample
        }
        // The last step's σ is small but positive (DESIGN.md: about 0.01–0.04 for 20 steps).
        XCTAssertGreaterThan(ddim.sigma(1), 0.005)
        XCTAssertLessThan(ddim.sigma(1), 0.05)
        // With steps_offset = 0 the last step is deterministic: refused as a policy.
        let offsetZero = try DDIMScheduler(schedule: schedule, stepCount: 20, eta: 1, stepsOffset: 0)
        XCTAssertEqual(offsetZero.sigma(0), 0)
        XCTAssertThrowsError(try offsetZero.step(modelOutput: x, timestep: 0, sample: x, using: &rng, requireDensity: true))
    }

    /// The recorded log-probability equals the Gaussian density written out by hand.
    func testLogProbEqualsTheGaussianDensityByHand() throws {
        let ddim = try DDIMScheduler(schedule: schedule, stepCount: 10, eta: 0.7)
        let t = ddim.timesteps[3]
        let x = random([1, 3], seed: 5), epsilon = random([1, 3], seed: 6)
        var rng = RandomGenerator(seed: 7)
        let step = try ddim.step(modelOutput: epsilon, timestep: t, sample: x, using: &rng)
        let (a, ap) = (schedule.alphasCumprod[t], schedule.alphasCumprod[t - 100])
        let sigma = 0.7 * ((1 - ap) / (1 - a) * (1 - a / ap)).squareRoot()
        XCTAssertEqual(step.sigma, sigma, accuracy: 1e-15)
        var expected = 0.0
        for i in 0..<3 {
            let x0 = (x[0, i] - (1 - a).squareRoot() * epsilon[0, i]) / a.squareRoot()
            let mu = ap.squareRoot() * x0 + (1 - ap - sigma * sigma).squareRoot() * epsilon[0, i]
            XCTAssertEqual(step.mean[0, i], mu, accuracy: 1e-12)
            let d = step.previousSample[0, i] - mu
            expected += -d * d / (2 * sigma * sigma) - log(sigma) - 0.5 * log(2 * Double.pi)
        }
        XCTAssertEqual(step.logProb.item, expected, accuracy: 1e-10)
    }

    /// η = 0 is deterministic: the same step twice, whatever the generator.
    func testEtaZeroIsDeterministicAndNoPolicy() throws {
        let ddim = try DDIMScheduler(schedule: schedule, stepCount: 20, eta: 0)
        let x = random([2, 3], seed: 8), e = random([2, 3], seed: 9)
        var r1 = RandomGenerator(seed: 1), r2 = RandomGenerator(seed: 2)
        let s1 = try ddim.step(modelOutput: e, timestep: 501, sample: x, using: &r1)
        let s2 = try ddim.step(modelOutput: e, timestep: 501, sample: x, using: &r2)
        XCTAssertEqual(s1.previousSample.values, s2.previousSample.values)
        XCTAssertThrowsError(try ddim.step(modelOutput: e, timestep: 501, sample: x, using: &r1, requireDensity: true)) {
            XCTAssertTrue("\($0)".contains("not a stochastic policy"), "\($0)")
        }
    }

    /// DDIM over every training step with η = 1 is DDPM: σ_t² is the posterior variance
    /// β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t, and μ the posterior mean of q(x_{t−1} | x_t, x̂₀).
    func testFullStepDDIMWithEtaOneIsDDPM() throws {
        let ddim = try DDIMScheduler(schedule: schedule, stepCount: 1000, eta: 1, stepsOffset: 0)
        let x = random([1, 4], seed: 10), e = random([1, 4], seed: 11)
        var rng = RandomGenerator(seed: 12)
        for t in [1, 2, 10, 250, 500, 999] {
            let (a, ap, beta) = (schedule.alphasCumprod[t], schedule.alphasCumprod[t - 1], schedule.betas[t])
            let posteriorVariance = (1 - ap) / (1 - a) * beta
            XCTAssertEqual(ddim.sigma(t) * ddim.sigma(t), posteriorVariance, accuracy: 1e-15 + 1e-9 * posteriorVariance)
            let step = try ddim.step(modelOutput: e, timestep: t, sample: x, using: &rng)
            for i in 0..<4 {
                let x0 = step.predictedOriginal[0, i]
                let posteriorMean = ap.squareRoot() * beta / (1 - a) * x0 + (1 - beta).squareRoot() * (1 - ap) / (1 - a) * x[0, i]
                XCTAssertEqual(step.mean[0, i], posteriorMean, accuracy: 1e-9)
            }
        }
    }

    /// Recomputing the log-probability of a stored step with the same model output gives the
    /// recorded value; its gradient with respect to the model output passes a finite-difference check.
    func testRecomputedLogProbMatchesAndHasTheRightGradient() throws {
        let ddim = try DDIMScheduler(schedule: schedule, stepCount: 20, eta: 1)
        let x = random([2, 2, 2, 2], seed: 13), e = random([2, 2, 2, 2], seed: 14)
        var rng = RandomGenerator(seed: 15)
        for t in [ddim.timesteps[0], ddim.timesteps[10], 1] {
            let recorded = try ddim.step(modelOutput: e, timestep: t, sample: x, using: &rng)
            let again = try ddim.step(modelOutput: e, timestep: t, sample: x, previousSample: recorded.previousSample, using: &rng)
            XCTAssertEqual(again.logProb.values, recorded.logProb.values)
            let report = try gradientCheck([e.copy()]) { inputs in
                try ddim.step(modelOutput: inputs[0], timestep: t, sample: x, previousSample: recorded.previousSample, using: &rng).logProb
            }
            XCTAssertLessThanOrEqual(report.maxRelativeError, 1e-6, "t = \(t): \(report)")
        }
    }

    func testClassifierFreeGuidanceByHand() throws {
        let u = try Tensor([1, 2], shape: [2], dtype: .float64), c = try Tensor([3, 1], shape: [2], dtype: .float64)
        XCTAssertEqual(try classifierFreeGuidance(unconditional: u, conditional: c, scale: 5).values, [11, -3])
        XCTAssertEqual(try classifierFreeGuidance(unconditional: u, conditional: c, scale: 1).values, c.values)
    }
}
