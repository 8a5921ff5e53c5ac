import XCTest
@testable import Engine

/// A Float64 tensor of the given shape with values from N(0, scale²), seeded.
func randomTensor(_ shape: [Int], seed: UInt64, scale: Double = 1, dtype: DType = .float64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return Tensor.randn(shape, std: scale, dtype: dtype, using: &rng)
}

/// The gradient-check bound every differentiable op must meet (Float64, central differences).
let gradientTolerance = 1e-6

/// Asserts that `function`'s gradients with respect to `inputs` pass the finite-difference check.
func assertGradients(_ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
                     _ function: ([Tensor]) throws -> Tensor) {
    do {
        let report = try gradientCheck(inputs, function)
        XCTAssertLessThanOrEqual(report.maxRelativeError, gradientTolerance, "\(report)", file: file, line: line)
    } catch {
        XCTFail("gradient check threw \(error)", file: file, line: line)
    }
}

func assertClose(_ a: [Double], _ b: [Double], tolerance: Double = 1e-9, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "counts differ", file: file, line: line)
    for (i, (x, y)) in zip(a, b).enumerated() where Swift.abs(x - y) > tolerance * Swift.max(1, Swift.abs(y)) {
        XCTFail("element \(i): \(x) vs \(y)", file: file, line: line)
        return
    }
}
