import XCTest
import Engine
@testable import RewardModel

private func values(_ numbers: [Double]) throws -> Tensor { try Tensor(numbers, shape: [numbers.count], dtype: .float64) }

/// The preference losses on hand-computed numbers, and their gradients by finite differences.
final class PreferenceLossTests: XCTestCase {
    func testBradleyTerryByHand() throws {
        // −log σ(1) = log(1 + e⁻¹) = 0.3132617; −log σ(−1) = 1.3132617.
        let plain = try bradleyTerryLoss(chosen: values([1]), rejected: values([0])).item
        XCTAssertEqual(plain, 0.31326168751822286, accuracy: 1e-12)
        // (r_w − r_l − m) / τ = (1 − 0 − 0.5) / 0.5 = 1.
        let margined = try bradleyTerryLoss(chosen: values([1]), rejected: values([0]), margin: 0.5, temperature: 0.5).item
        XCTAssertEqual(margined, 0.31326168751822286, accuracy: 1e-12)
        // (0 − 2) / 2 = −1; the mean of the two cases is (0.3132617 + 1.3132617) / 2.
        let mean = try bradleyTerryLoss(chosen: values([1, 0]), rejected: values([0, 2]), temperature: 1).item
        // Pair 2: (0 − 2) / 1 = −2, −log σ(−2) = 2.1269280.
        XCTAssertEqual(mean, (0.31326168751822286 + 2.1269280110429727) / 2, accuracy: 1e-12)
        let swapped = try bradleyTerryLoss(chosen: values([0]), rejected: values([2]), temperature: 2).item
        XCTAssertEqual(swapped, 1.3132616875182228, accuracy: 1e-12)
        XCTAssertThrowsError(try bradleyTerryLoss(chosen: values([1, 2]), rejected: values([0]))) { error in
            XCTAssertTrue("\(error)".contains("[2]") && "\(error)".contains("[1]"), "\(error)")
        }
        XCTAssertThrowsError(try bradleyTerryLoss(chosen: values([1]), rejected: values([0]), temperature: 0))
    }

    func testBradleyTerryGradient() throws {
        let report = try gradientCheck([values([0.3, -1.2, 2.0]), values([0.1, 0.4, -0.5])]) {
            try bradleyTerryLoss(chosen: $0[0], rejected: $0[1], margin: 0.2, temperature: 0.7, reduction: .none)
        }
        XCTAssertLessThan(report.maxRelativeError, 1e-7, "\(report)")
        // d/dr_w of −log σ(d) is −σ(−d)/τ: at r_w = r_l it is −0.5.
        let chosen = try values([0]), rejected = try values([0])
        chosen.requiresGrad = true
        try bradleyTerryLoss(chosen: chosen, rejected: rejected).backward()
        XCTAssertEqual(chosen.grad!.values[0], -0.5, accuracy: 1e-12)
    }

    func testGeneralPreferenceScoreIsSkewSymmetric() throws {
        let x = try Tensor([1, 2, -0.5, 0.25], shape: [2, 2], dtype: .float64)
        let y = try Tensor([3, 4, 2, 1], shape: [2, 2], dtype: .float64)
        // 1·4 − 2·3 = −2; −0.5·1 − 0.25·2 = −1.
        XCTAssertEqual(try generalPreferenceScore(x, y).values, [-2, -1])
        XCTAssertEqual(try generalPreferenceScore(y, x).values, [2, 1])
        XCTAssertEqual(try generalPreferenceScore(x, x).values, [0, 0])
        // mean(−log σ(−2), −log σ(−1)) = (2.126928 + 1.3132617) / 2.
        XCTAssertEqual(try generalPreferenceLoss(chosen: x, rejected: y).item, (2.1269280110429727 + 1.3132616875182228) / 2,
                       accuracy: 1e-12)
        let report = try gradientCheck([x, y]) { try generalPreferenceLoss(chosen: $0[0], rejected: $0[1], temperature: 0.8) }
        XCTAssertLessThan(report.maxRelativeError, 1e-7, "\(report)")
    }

    func testUnpairedLossByHand() throws {
        // A logit of 0 is 50/50: log 2 for either label; logit 2 for a good image: log(1 + e⁻²).
        XCTAssertEqual(try unpairedPreferenceLoss(rewards: values([0]), good: [true]).item, log(2.0), accuracy: 1e-12)
        XCTAssertEqual(try unpairedPreferenceLoss(rewards: values([2, -2]), good: [true, false]).item,
                       Foundation.log(1 + Foundation.exp(-2.0)), accuracy: 1e-12)
        let report = try gradientCheck([values([0.5, -1, 3])]) { try unpairedPreferenceLoss(rewards: $0[0], good: [true, false, false]) }
        XCTAssertLessThan(report.maxRelativeError, 1e-7, "\(report)")
        XCTAssertThrowsError(try unpairedPreferenceLoss(rewards: values([0, 1]), good: [true]))
    }
}
