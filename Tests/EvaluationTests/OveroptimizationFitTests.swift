import Foundation
import XCTest
import Engine
import Statistics

/// The best-of-N KL bound by hand, and Gao et al.'s curves fitted back from points they generate.
final class OveroptimizationFitTests: XCTestCase {
    func testBestOfNKLBoundByHand() {
        XCTAssertEqual(bestOfNKLBound(1), 0)
        XCTAssertEqual(bestOfNKLBound(2), log(2) - 0.5, accuracy: 1e-15)          // 0.19315
        XCTAssertEqual(bestOfNKLBound(8), 2.0794415416798357 - 0.875, accuracy: 1e-12)
        XCTAssertEqual(bestOfNKLBound(64), log(64) - 63.0 / 64, accuracy: 1e-12)
        let bounds = (1...64).map(bestOfNKLBound)
        XCTAssertTrue(zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "grows with N")
        XCTAssertTrue((1...64).allSatisfy { bestOfNKLBound($0) <= log(Double($0)) })
    }

    func testFitsRecoverKnownCoefficients() throws {
        let distances = [0.2, 0.5, 0.8, 1.0, 1.4, 1.9, 2.5, 3.0]
        for (form, alpha, beta) in [(OveroptimizationFit.Form.bestOfN, 0.3, 0.05), (.reinforcementLearning, 0.1, 0.02)] {
            let truth = OveroptimizationFit(form: form, alpha: alpha, beta: beta, rSquared: nil)
            let gains = distances.map { truth.gain(at: $0) }
            let fit = try XCTUnwrap(OveroptimizationFit.fit(form, distances: distances, gains: gains))
            XCTAssertEqual(fit.alpha, alpha, accuracy: 1e-10, "\(form)")
            XCTAssertEqual(fit.beta, beta, accuracy: 1e-10, "\(form)")
            XCTAssertEqual(try XCTUnwrap(fit.rSquared), 1, accuracy: 1e-10)
            // With noise of s.d. 0.005 the coefficients stay close and R² below 1.
            var rng = RandomGenerator(seed: 4)
            let noisy = gains.map { $0 + 0.005 * rng.normal() }
            let rough = try XCTUnwrap(OveroptimizationFit.fit(form, distances: distances, gains: noisy))
            XCTAssertEqual(rough.alpha, alpha, accuracy: 0.02, "\(form)")
            XCTAssertEqual(rough.beta, beta, accuracy: 0.02, "\(form)")
            XCTAssertLessThan(try XCTUnwrap(rough.rSquared), 1)
        }
        // The best-of-N curve peaks at d* = α / 2β: gold gain rises, then falls.
        let curve = OveroptimizationFit(form: .bestOfN, alpha: 0.3, beta: 0.05, rSquared: nil)
        XCTAssertGreaterThan(curve.gain(at: 3), curve.gain(at: 2))
        XCTAssertGreaterThan(curve.gain(at: 3), curve.gain(at: 4))
    }

    func testTooFewOrCollinearPointsGiveNoFit() {
        XCTAssertNil(OveroptimizationFit.fit(.bestOfN, distances: [1], gains: [0.2]))
        XCTAssertNil(OveroptimizationFit.fit(.bestOfN, distances: [0, 1], gains: [0, 0.2]), "d = 0 carries no information")
        // log 1 = 0 makes the RL columns d and d·log d collinear when every d is 1.
        XCTAssertNil(OveroptimizationFit.fit(.reinforcementLearning, distances: [1, 1, 1], gains: [0.1, 0.2, 0.15]))
        let two = OveroptimizationFit.fit(.bestOfN, distances: [1, 2], gains: [0.25, 0.4])
        XCTAssertNotNil(two)
        XCTAssertNil(two?.rSquared, "two points, two coefficients: nothing left to explain")
    }
}
