/// Stochastic gradient descent with optional momentum (PyTorch's form: b ← μb + g, p ← p − lr·b)
/// and decoupled weight decay.
public final class SGD: Optimizer {
    public let parameters: [(name: String, tensor: Tensor)]
    public var learningRate: Double
    public let momentum: Double, weightDecay: Double
    public private(set) var stepCount = 0
    private var buffers: [Tensor]

    public init(_ parameters: [(name: String, tensor: Tensor)], learningRate: Double, momentum: Double = 0,
                weightDecay: Double = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        buffers = parameters.map { Tensor(zeros: $0.tensor.shape, dtype: $0.tensor.dtype) }
    }

    public func step() throws {
        stepCount += 1
        for (index, parameter) in parameters.enumerated() {
            guard let grad = parameter.tensor.grad else { continue }
            switch grad.dtype {
            case .float32: update(Float.self, parameter.tensor, grad, buffers[index])
            case .float64: update(Double.self, parameter.tensor, grad, buffers[index])
            }
        }
    }

    private func update<T: Real>(_: T.Type, _ p: Tensor, _ g: Tensor, _ b: Tensor) {
        let pp = p.storage.pointer(T.self), pg = g.storage.pointer(T.self), pb = b.storage.pointer(T.self)
        let mu = T(momentum), lr = T(learningRate), decay = T(1 - learningRate * weightDecay)
        for i in 0..<p.count {
            pb[i] = mu * pb[i] + pg[i]
            pp[i] = pp[i] * decay - lr * pb[i]
        }
    }

    public func state() -> [String: Tensor] {
        var result: [String: Tensor] = ["step": Tensor(scalar: Double(stepCount), dtype: .float64)]
        for (index, p) in parameters.enumerated() { result[p.name + ".momentum_buffer"] = buffers[index] }
        return result
    }

    public func loadState(_ state: [String: Tensor]) throws {
        guard let step = state["step"], step.count == 1 else { throw EngineError.checkpoint("optimizer state has no 'step'") }
        for (index, p) in parameters.enumerated() {
            guard let source = state[p.name + ".momentum_buffer"], source.shape == buffers[index].shape else {
                throw EngineError.checkpoint("optimizer state is missing or misshapes '\(p.name).momentum_buffer'")
            }
            buffers[index].assign(source)
        }
        stepCount = Int(step.item)
    }
}
