import Foundation

/// Adam with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW`:
///     p ← p − lr·λ·p
///     m ← β₁m + (1 − β₁)g,   v ← β₂v + (1 − β₂)g²
///     p ← p − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
public final class AdamW: Optimizer {
    public let parameters: [(name: String, tensor: Tensor)]
    public var learningRate: Double
    public let beta1: Double, beta2: Double, eps: Double, weightDecay: Double
    public private(set) var stepCount = 0
    private var firstMoments: [Tensor]
    private var secondMoments: [Tensor]

    public init(_ parameters: [(name: String, tensor: Tensor)], learningRate: Double = 1e-3, beta1: Double = 0.9,
                beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0.01) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        firstMoments = parameters.map { Tensor(zeros: $0.tensor.shape, dtype: $0.tensor.dtype) }
        secondMoments = parameters.map { Tensor(zeros: $0.tensor.shape, dtype: $0.tensor.dtype) }
    }

    public func step() throws {
        stepCount += 1
        let correction1 = 1 - pow(beta1, Double(stepCount)), correction2 = 1 - pow(beta2, Double(stepCount))
        for (index, parameter) in parameters.enumerated() {
            guard let grad = parameter.tensor.grad else { continue }
            switch grad.dtype {
            case .float32: update(Float.self, parameter.tensor, grad, firstMoments[index], secondMoments[index], correction1, correction2)
            case .float64: update(Double.self, parameter.tensor, grad, firstMoments[index], secondMoments[index], correction1, correction2)
            }
        }
    }

    private func update<T: Real>(_: T.Type, _ p: Tensor, _ g: Tensor, _ m: Tensor, _ v: Tensor,
                                 _ correction1: Double, _ correction2: Double) {
        let pp = p.storage.pointer(T.self), pg = g.storage.pointer(T.self)
        let pm = m.storage.pointer(T.self), pv = v.storage.pointer(T.self)
        let decay = T(1 - learningRate * weightDecay), b1 = T(beta1), b2 = T(beta2)
        let stepSize = T(learningRate / correction1), rootCorrection2 = T(correction2.squareRoot()), e = T(eps)
        for i in 0..<p.count {
            pm[i] = b1 * pm[i] + (1 - b1) * pg[i]
            pv[i] = b2 * pv[i] + (1 - b2) * pg[i] * pg[i]
            pp[i] = pp[i] * decay - stepSize * pm[i] / (pv[i].squareRoot() / rootCorrection2 + e)
        }
    }

    public func state() -> [String: Tensor] {
        var result: [String: Tensor] = ["step": Tensor(scalar: Double(stepCount), dtype: .float64)]
        for (index, p) in parameters.enumerated() {
            result[p.name + ".exp_avg"] = firstMoments[index]
            result[p.name + ".exp_avg_sq"] = secondMoments[index]
        }
        return result
    }

    public func loadState(_ state: [String: Tensor]) throws {
        guard let step = state["step"], step.count == 1 else { throw EngineError.checkpoint("optimizer state has no 'step'") }
        for (index, p) in parameters.enumerated() {
            for (suffix, target) in [(".exp_avg", firstMoments[index]), (".exp_avg_sq", secondMoments[index])] {
                guard let source = state[p.name + suffix] else {
                    throw EngineError.checkpoint("optimizer state is missing '\(p.name + suffix)'")
                }
                guard source.shape == target.shape else {
                    throw EngineError.checkpoint("optimizer tensor '\(p.name + suffix)' has shape \(source.shape), expected \(target.shape)")
                }
                target.assign(source)
            }
        }
        stepCount = Int(step.item)
    }
}
