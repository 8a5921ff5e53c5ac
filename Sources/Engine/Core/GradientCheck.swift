/// Finite-difference checking of gradients, for tests of every differentiable op and layer.
///
/// The function's output is projected on fixed random weights w, L = Σ w ⊙ f(inputs), so every
/// output element's gradient is exercised. Each input element is perturbed by ±h and
/// (L(x + h) − L(x − h)) / 2h compared with the gradient from `backward()`.

/// What a gradient check found for one input.
public struct GradientCheckReport: CustomStringConvertible {
    /// ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖), per input.
    public let relativeErrors: [Double]
    public var maxRelativeError: Double { relativeErrors.max() ?? 0 }
    public var description: String {
        "relative errors " + relativeErrors.map { String(format: "%.2e", $0) }.joined(separator: ", ")
    }
}

import Foundation

/// Checks the gradient of `function` with respect to each of `inputs` (Float64 tensors).
/// `inputs` are marked as requiring gradients; their `grad` is reset.
public func gradientCheck(_ inputs: [Tensor], step h: Double = 1e-6, seed: UInt64 = 7,
                          _ function: ([Tensor]) throws -> Tensor) throws -> GradientCheckReport {
    for input in inputs {
        try checkArgument(input.dtype == .float64, "gradientCheck", "inputs must be float64, got \(input.dtype)")
        input.requiresGrad = true
        input.grad = nil
    }
    let output = try function(inputs)
    var rng = RandomGenerator(seed: seed)
    let weights = Tensor.uniform(output.shape, low: 0.5, high: 1.5, dtype: .float64, using: &rng)
    func loss() throws -> Double {
        try withNoGrad { try (function(inputs) * weights).sum().item }
    }
    try (output * weights).sum().backward()
    var errors: [Double] = []
    for input in inputs {
        let analytic = input.grad?.values ?? [Double](repeating: 0, count: input.count)
        var numeric = [Double](repeating: 0, count: input.count)
        let p = input.storage.pointer(Double.self)
        for i in 0..<input.count {
            let saved = p[i]
            p[i] = saved + h
            let plus = try loss()
            p[i] = saved - h
            let minus = try loss()
            p[i] = saved
            numeric[i] = (plus - minus) / (2 * h)
        }
        let difference = zip(analytic, numeric).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
        let scale = Swift.max(analytic.map { $0 * $0 }.reduce(0, +).squareRoot(),
                              numeric.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12)
        errors.append(difference / scale)
    }
    return GradientCheckReport(relativeErrors: errors)
}
