import Engine

/// A layer or model: it owns named parameters and named submodules. Names are checkpoint keys
/// (diffusers' snake_case, `to_out.0.weight`), so weights load by walking the tree.
public protocol Module: AnyObject {
    /// This module's own parameters, by local name (e.g. `weight`, `bias`).
    var parameters: [(name: String, tensor: Tensor)] { get }
    /// Direct submodules, by local name (e.g. `conv1`, `to_out.0`).
    var children: [(name: String, module: any Module)] { get }
}

extension Module {
    public var parameters: [(name: String, tensor: Tensor)] { [] }
    public var children: [(name: String, module: any Module)] { [] }

    /// Every parameter in the tree under dotted names, in a fixed order.
    public func namedParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var result = parameters.map { (name: prefix + $0.name, tensor: $0.tensor) }
        for child in children {
            result += child.module.namedParameters(prefix: prefix + child.name + ".")
        }
        return result
    }

    /// The parameters that gradients update (those that require a gradient), under `prefix`.
    public func trainableParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        namedParameters(prefix: prefix).filter { $0.tensor.requiresGrad }
    }

    /// Number of scalar parameters.
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

    /// Stops (or restarts) gradients to every parameter in the tree.
    public func setTrainable(_ trainable: Bool) {
        for p in namedParameters() { p.tensor.requiresGrad = trainable }
    }

    /// Clears every parameter's gradient.
    public func zeroGrad() {
        for p in namedParameters() { p.tensor.grad = nil }
    }

    /// Parameters by name, for saving.
    public func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: namedParameters().map { ($0.name, $0.tensor) })
    }

    /// Copies values into the parameters by name (converting dtype). With `strict`, a missing or
    /// unexpected name is an error; a shape mismatch always is. Errors name the tensor.
    public func loadParameters(_ tensors: [String: Tensor], strict: Bool = true) throws {
        let own = namedParameters()
        if strict {
            let names = Set(own.map(\.name))
            if let missing = own.first(where: { tensors[$0.name] == nil }) {
                throw EngineError.checkpoint("missing tensor '\(missing.name)'")
            }
            if let unexpected = tensors.keys.sorted().first(where: { !names.contains($0) }) {
                throw EngineError.checkpoint("unexpected tensor '\(unexpected)'")
            }
        }
        for (name, parameter) in own {
            guard let source = tensors[name] else { continue }
            guard source.shape == parameter.shape else {
                throw EngineError.checkpoint("tensor '\(name)' has shape \(source.shape), the model expects \(parameter.shape)")
            }
            parameter.assign(source)
        }
    }
}

/// Named submodules in a list, keyed "0", "1", … as in PyTorch's `nn.ModuleList`.
public final class ModuleList: Module {
    public var modules: [any Module]
    public init(_ modules: [any Module]) { self.modules = modules }
    public var children: [(name: String, module: any Module)] {
        modules.enumerated().map { (name: String($0.offset), module: $0.element) }
    }
}

extension Tensor {
    /// A trainable parameter drawn uniformly from [−bound, bound] (PyTorch's default layer init).
    public static func parameter(_ shape: [Int], bound: Double, dtype: DType, using rng: inout RandomGenerator) -> Tensor {
        let t = Tensor.uniform(shape, low: -bound, high: bound, dtype: dtype, using: &rng)
        t.requiresGrad = true
        return t
    }

    /// A trainable parameter filled with a constant.
    public static func parameter(_ shape: [Int], value: Double, dtype: DType) -> Tensor {
        let t = Tensor(repeating: value, shape: shape, dtype: dtype)
        t.requiresGrad = true
        return t
    }
}
