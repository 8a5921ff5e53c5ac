import XCTest
@testable import Evaluation

/// Standard errors clustered by prompt, and paired differences, against hand computations.
final class ClusteredErrorTests: XCTestCase {
    /// Three prompts × two images: 1, 1 | 0, 0 | 1, 0. Mean 0.5; residual sums per prompt
    /// 1, −1, 0; SE² = 3/2 · (1 + 1 + 0) / 6² = 1/12. The same as the SE of the prompt means
    /// (1, 0, 0.5): their sample variance 0.25 over 3.
    func testClusteredStandardErrorByHand() {
        let e = GoldEvaluation.Estimate([1, 1, 0, 0, 1, 0], clusters: [0, 0, 1, 1, 2, 2])
        XCTAssertEqual(e.mean, 0.5)
        XCTAssertEqual(e.standardError, (1.0 / 12).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(e.clusters, 3)
        XCTAssertEqual(e.count, 6)
        // Unclustered, the same six values: s = √(0.3), SE = √(0.3 / 6) — smaller, as the images
        // of a prompt agree with each other.
        let naive = GoldEvaluation.Estimate([1, 1, 0, 0, 1, 0])
        XCTAssertEqual(naive.standardError, (0.3 / 6).squareRoot(), accuracy: 1e-12)
        XCTAssertLessThan(naive.standardError, e.standardError)
    }

    /// Unequal clusters: values 2, 4 | 3 | 7, mean 4; residual sums −2, −1, 3; SE² = 3/2 · 14 / 16.
    func testUnequalClustersByHand() {
        let e = GoldEvaluation.Estimate([2, 4, 3, 7], clusters: [5, 5, 9, 1])
        XCTAssertEqual(e.mean, 4)
        XCTAssertEqual(e.standardError, (1.5 * 14 / 16).squareRoot(), accuracy: 1e-12)
    }

    /// Paired b − a: per-image differences (1, 0 | 0, −1 | 1, 1), mean 1/3; per prompt the
    /// residual sums 1 − 2/3, −1 − 2/3, 2 − 2/3 = 1/3, −5/3, 4/3; SE² = 3/2 · (1/9 + 25/9 + 16/9) / 36.
    func testPairedDifferenceByHand() {
        let a: [Double] = [0, 1, 1, 1, 0, 0], b: [Double] = [1, 1, 1, 0, 1, 1]
        let d = GoldEvaluation.Estimate.paired(b, a, clusters: [0, 0, 1, 1, 2, 2])
        XCTAssertEqual(d.mean, 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(d.standardError, (1.5 * (42.0 / 9) / 36).squareRoot(), accuracy: 1e-12)
    }

    /// A single cluster has no spread to estimate from: SE 0, not NaN; no values: NaN.
    func testDegenerateCases() {
        XCTAssertEqual(GoldEvaluation.Estimate([1, 0, 1], clusters: [3, 3, 3]).standardError, 0)
        XCTAssertTrue(GoldEvaluation.Estimate([]).mean.isNaN)
    }
}
