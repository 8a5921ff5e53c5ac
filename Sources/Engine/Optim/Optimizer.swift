import Foundation

/// Optimizers update named parameters in place from their gradients.
public protocol Optimizer: AnyObject {
    /// The learning rate the next `step()` uses (a schedule sets it each step).
    var learningRate: Double { get set }
    /// Steps taken so far.
    var stepCount: Int { get }
    /// Applies one update to every parameter that has a gradient.
    func step() throws
    /// Optimizer state (moments, step count) by name, for checkpoints.
    func state() -> [String: Tensor]
    /// Restores state saved by `state()`; errors name a missing or mismatched tensor.
    func loadState(_ state: [String: Tensor]) throws
}

extension Optimizer {
    /// Clears the gradients of `parameters`.
    public func zeroGrad(_ parameters: [(name: String, tensor: Tensor)]) {
        for p in parameters { p.tensor.grad = nil }
    }
}

/// Scales all gradients so that their global L2 norm is at most `maxNorm`; returns the norm
/// before clipping. A non-finite norm is an error (the caller should skip the batch).
@discardableResult
public func clipGradNorm(_ parameters: [(name: String, tensor: Tensor)], maxNorm: Double) throws -> Double {
    let norm = gradientNorm(parameters)
    guard norm.isFinite else { throw EngineError.nonFinite(what: "gradients (global norm \(norm))") }
    if norm > maxNorm && norm > 0 {
        let factor = maxNorm / norm
        for p in parameters {
            guard let g = p.tensor.grad else { continue }
            switch g.dtype {
            case .float32: g.withMutableValues(Float.self) { v in for i in 0..<g.count { v[i] *= Float(factor) } }
            case .float64: g.withMutableValues(Double.self) { v in for i in 0..<g.count { v[i] *= factor } }
            }
        }
    }
    return norm
}

/// The global L2 norm of the parameters' gradients (parameters without a gradient count as 0);
/// non-finite when any gradient is.
public func gradientNorm(_ parameters: [(name: String, tensor: Tensor)]) -> Double {
    var total = 0.0
    for p in parameters { if let g = p.tensor.grad { total += g.values.reduce(0) { $0 + $1 * $1 } } }
    return total.squareRoot()
}

/// A learning-rate schedule: the factor applied to the base rate at each step.
public enum LearningRateSchedule: Codable, Equatable, Sendable {
    case constant
    /// Linear ramp from 0 to 1 over `warmupSteps`, then constant.
    case linearWarmup(warmupSteps: Int)
    /// Linear warm-up, then cosine decay from 1 to `minFactor` at `totalSteps`.
    case cosine(warmupSteps: Int, totalSteps: Int, minFactor: Double)

    /// The factor at 0-based `step`.
    public func factor(at step: Int) -> Double {
        switch self {
        case .constant:
            return 1
        case let .linearWarmup(warmup):
            return warmup > 0 ? Swift.min(1, Double(step + 1) / Double(warmup)) : 1
        case let .cosine(warmup, total, minFactor):
            if warmup > 0 && step < warmup { return Double(step + 1) / Double(warmup) }
            let span = Swift.max(total - warmup, 1)
            let progress = Swift.min(Double(step - warmup) / Double(span), 1)
            return minFactor + (1 - minFactor) * 0.5 * (1 + Foundation.cos(Double.pi * progress))
        }
    }
}
