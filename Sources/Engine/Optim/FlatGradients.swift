/// The gradients of `parameters` as one flat buffer — each parameter's gradient in order (zeros
/// where it has none), then one flag per parameter, 1 where it has a gradient — so that a single
/// all-reduce sums every gradient of several processes (data-parallel training).
public func flatGradients(_ parameters: [(name: String, tensor: Tensor)]) -> [Float] {
    var flat: [Float] = []
    flat.reserveCapacity(parameters.reduce(parameters.count) { $0 + $1.tensor.count })
    for p in parameters {
        if let g = p.tensor.grad { flat += g.floats } else { flat += [Float](repeating: 0, count: p.tensor.count) }
    }
    flat += parameters.map { $0.tensor.grad == nil ? 0 : 1 }
    return flat
}

/// Puts a (summed) `flatGradients` buffer back: each parameter's gradient from its part, or none
/// where no process had one (an optimizer treats a missing gradient and a zero one differently).
public func setFlatGradients(_ flat: [Float], _ parameters: [(name: String, tensor: Tensor)]) throws {
    let total = parameters.reduce(parameters.count) { $0 + $1.tensor.count }
    guard flat.count == total else {
        throw EngineError.shapeMismatch(op: "setFlatGradients", "\(flat.count) values for \(parameters.count) parameters of \(total - parameters.count) values")
    }
    var offset = 0
    let flags = flat.count - parameters.count
    for (i, p) in parameters.enumerated() {
        let n = p.tensor.count
        p.tensor.grad = flat[flags + i] > 0 ? try Tensor(Array(flat[offset ..< offset + n]), shape: p.tensor.shape) : nil
        offset += n
    }
}
