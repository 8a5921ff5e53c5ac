import XCTest
@testable import Engine

final class AutogradTests: XCTestCase {
    func testGradientsAccumulateAcrossBackwardCalls() throws {
        let w = try Tensor([1, 2], shape: [2], dtype: .float64)
        w.requiresGrad = true
        try (w * 3).sum().backward()
        try (w * 3).sum().backward()
        XCTAssertEqual(w.grad?.values, [6, 6])
    }

    func testSharedSubexpressionGetsBothGradients() throws {
        let x = try Tensor([2], shape: [1], dtype: .float64)
        x.requiresGrad = true
        let y = try x * x + x   // dy/dx = 2x + 1 = 5
        try y.sum().backward()
        XCTAssertEqual(x.grad?.values, [5])
    }

    func testNoGradRecordsNothing() throws {
        let w = try Tensor([1, 2], shape: [2])
        w.requiresGrad = true
        let y = try withNoGrad { try (w * 2).sum() }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertTrue(y.isLeaf)
        XCTAssertThrowsError(try y.backward())
        XCTAssertTrue(GradMode.isEnabled)
    }

    func testDetachStopsGradient() throws {
        let x = try Tensor([3], shape: [1], dtype: .float64)
        x.requiresGrad = true
        try (x * x.detach()).sum().backward()
        XCTAssertEqual(x.grad?.values, [3])
    }

    /// A per-sample loss vector back-propagated with a seed weights each sample's gradient.
    func testPerSampleLossVectorWithSeed() throws {
        let x = try Tensor([1, 2, 3], shape: [3], dtype: .float64)
        x.requiresGrad = true
        let perSample = square(x)
        try perSample.backward(gradient: try Tensor([1, 0, -1], shape: [3], dtype: .float64))
        XCTAssertEqual(x.grad?.values, [2, 0, -6])
    }

    func testNaNLossIsAClearError() throws {
        let x = try Tensor([-1], shape: [1])
        x.requiresGrad = true
        let loss = try log(x).sum()
        XCTAssertThrowsError(try loss.backward()) { error in
            XCTAssertTrue("\(error)".contains("non-finite"), "\(error)")
        }
    }

    func testShapeMismatchesThrowNamingBothShapes() throws {
        let a = Tensor(zeros: [2, 3]), b = Tensor(zeros: [4, 5])
        XCTAssertThrowsError(try a + b) { XCTAssertTrue("\($0)".contains("[2, 3]") && "\($0)".contains("[4, 5]"), "\($0)") }
        XCTAssertThrowsError(try matmul(a, b)) { XCTAssertTrue("\($0)".contains("[2, 3]") && "\($0)".contains("[4, 5]"), "\($0)") }
        XCTAssertThrowsError(try conv2d(Tensor(zeros: [1, 3, 4, 4]), weight: Tensor(zeros: [2, 2, 3, 3]), bias: nil))
        XCTAssertThrowsError(try a.reshaped([4, 2]))
        XCTAssertThrowsError(try Tensor([1, 2, 3], shape: [2, 2]))
        XCTAssertThrowsError(try groupNorm(Tensor(zeros: [1, 6, 2, 2]), groups: 4, weight: nil, bias: nil))
        XCTAssertThrowsError(try mseLoss(a, Tensor(zeros: [3, 2])))
    }

    func testTwoModelsSideBySideKeepSeparateGradients() throws {
        // A policy and a frozen reference built from the same weights.
        let policy = randomTensor([3, 3], seed: 1, dtype: .float32)
        let reference = policy.copy()
        policy.requiresGrad = true
        let x = randomTensor([2, 3], seed: 2, dtype: .float32)
        let kl = try square(matmul(x, policy) - matmul(x, reference)).sum()
        try kl.backward()
        XCTAssertNil(reference.grad)
        XCTAssertEqual(policy.grad?.values.allSatisfy { $0 == 0 }, true)
    }

    func testRandomGeneratorIsReproducibleAndRoughlyNormal() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42)
        let x = Tensor.randn([10_000], using: &a), y = Tensor.randn([10_000], using: &b)
        XCTAssertEqual(x.values, y.values)
        let mean = x.values.reduce(0, +) / 10_000
        let variance = x.values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 10_000
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
        var c = RandomGenerator(seed: 43)
        XCTAssertNotEqual(Tensor.randn([4], using: &c).values, Array(x.values.prefix(4)))
    }
}
