import Engine

extension Communicator {
    /// Sums the parameters' gradients over the ranks, in place, so that every rank steps with the
    /// gradient of the whole batch. A parameter that no rank has a gradient for keeps none (an
    /// optimizer treats a missing gradient and a zero one differently); one that only some ranks
    /// have gets a zero gradient on the others first. Gradients are written in place, as optimizers
    /// and clipping do (`backward` gives every leaf its own copy). Returns the bytes summed.
    @discardableResult
    public func allreduceGradients(_ parameters: [(name: String, tensor: Tensor)]) throws -> Int {
        guard size > 1 else { return 0 }
        var present = parameters.map { $0.tensor.grad == nil ? 0.0 : 1.0 }
        try allreduceSum(&present)
        var buffers: [UnsafeMutableBufferPointer<Float>] = []
        for (parameter, count) in zip(parameters, present) where count > 0 {
            let tensor = parameter.tensor
            guard tensor.dtype == .float32 else {
                throw CommunicatorError("allreduceGradients: \(parameter.name) is \(tensor.dtype), not float32")
            }
            let grad = tensor.grad ?? Tensor(zeros: tensor.shape)
            tensor.grad = grad
            buffers.append(UnsafeMutableBufferPointer(start: grad.storage.pointer(Float.self), count: grad.count))
        }
        try allreduceSum(buffers)
        return buffers.reduce(0) { $0 + $1.count } * MemoryLayout<Float>.size
    }
}
