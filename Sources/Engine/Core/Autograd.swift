import Foundation
/// Reverse-mode automatic differentiation: each recorded op keeps its inputs and a closure that
/// maps the gradient of its output to gradients of its inputs; `backward()` walks the graph in
/// reverse topological order and accumulates gradients into the leaves.

/// Whether ops are recorded. Sampling runs inside `withNoGrad`, which records nothing and keeps no
/// memory alive for a backward pass.
public enum GradMode {
    /// Read on every op from the thread that runs the model (per thread: `ThreadState`); kernels'
    /// worker threads never touch it.
    static var enabled: Bool {
        @inline(__always) get { ThreadState.current.gradEnabled }
        set { ThreadState.current.gradEnabled = newValue }
    }

    public static var isEnabled: Bool { enabled }
}

/// Runs `body` with op recording switched off (restored afterwards, also on throw).
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    let saved = GradMode.enabled
    GradMode.enabled = false
    defer { GradMode.enabled = saved }
    return try body()
}

/// One recorded op: its inputs and its backward. `backward` receives the gradient of the
/// output and returns one gradient (or nil) per input, each of the input's shape.
final class GradNode {
    let name: String
    let inputs: [Tensor]
    let backward: (Tensor) throws -> [Tensor?]

    init(name: String, inputs: [Tensor], backward: @escaping (Tensor) throws -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

extension Tensor {
    /// Records `output` as produced by an op from `inputs`, if recording is on and any input
    /// requires a gradient. Returns `output`. The backward closure is only created when needed.
    @inline(__always)
    @discardableResult
    static func record(_ output: Tensor, _ name: String, _ inputs: [Tensor],
                       _ backward: @autoclosure () -> (Tensor) throws -> [Tensor?]) -> Tensor {
        if OpProfiler.enabled && !OpProfiler.inBackward { OpProfiler.charge(name, pass: "forward", since: OpProfiler.stamp) }
        guard GradMode.enabled, inputs.contains(where: { $0.requiresGrad }) else { return output }
        output.requiresGrad = true
        output.gradNode = GradNode(name: name, inputs: inputs, backward: backward())
        return output
    }

    /// Whether an op recorded now would be differentiated (used to skip caching for backward).
    static func recording(_ inputs: Tensor...) -> Bool {
        GradMode.enabled && inputs.contains(where: { $0.requiresGrad })
    }

    /// The same values, cut from the autodiff graph.
    public func detach() -> Tensor {
        Tensor(shape: shape, storage: storage)
    }

    /// Back-propagates from this tensor. A scalar needs no seed; for any other tensor (a loss per
    /// sample, say) pass `gradient`, the vector in the vector–Jacobian product, of this shape.
    /// Gradients add into the `grad` of every leaf that requires one (so calls accumulate);
    /// the graph is released unless `retainGraph`.
    public func backward(gradient: Tensor? = nil, retainGraph: Bool = false) throws {
        try checkArgument(requiresGrad, "backward", "tensor of shape \(describe(shape)) does not require a gradient")
        let seed: Tensor
        if let gradient {
            try checkShape(gradient.shape == shape && gradient.dtype == dtype, "backward",
                           "gradient \(describe(gradient.shape)) \(gradient.dtype) for tensor \(describe(shape)) \(dtype)")
            seed = gradient
        } else {
            try checkArgument(count == 1, "backward",
                              "a tensor of shape \(describe(shape)) needs an explicit gradient")
            seed = Tensor(repeating: 1, shape: shape, dtype: dtype)
        }
        guard isFinite else {
            throw EngineError.nonFinite(what: "the \(describe(shape)) tensor that backward() started from (a loss?)")
        }
        let order = topologicalOrder()
        OpProfiler.inBackward = true
        defer {
            OpProfiler.inBackward = false
            if OpProfiler.enabled { OpProfiler.stamp = DispatchTime.now().uptimeNanoseconds }
        }
        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        try withNoGrad {
            for tensor in order.reversed() {
                guard let g = grads.removeValue(forKey: ObjectIdentifier(tensor)) else { continue }
                guard let node = tensor.gradNode else {
                    if tensor.requiresGrad {
                        if let existing = tensor.grad {
                            tensor.grad = try existing + g
                        } else {
                            // A copy: the same gradient tensor may reach several leaves, and
                            // optimizers and clipping change `grad` in place.
                            tensor.grad = g.copy()
                        }
                    }
                    continue
                }
                let started = OpProfiler.enabled ? DispatchTime.now().uptimeNanoseconds : 0
                let inputGrads = try node.backward(g)
                for (input, inputGrad) in zip(node.inputs, inputGrads) {
                    guard input.requiresGrad, let inputGrad else { continue }
                    assert(inputGrad.shape == input.shape,
                           "\(node.name) backward gave \(describe(inputGrad.shape)) for input \(describe(input.shape))")
                    let key = ObjectIdentifier(input)
                    if let existing = grads[key] { grads[key] = try existing + inputGrad } else { grads[key] = inputGrad }
                }
                if !retainGraph { tensor.gradNode = nil }
                // The node's backward and the accumulation of its input gradients.
                if OpProfiler.enabled { OpProfiler.charge(node.name, pass: "backward", since: started) }
            }
        }
    }

    /// Tensors reachable from this one through recorded ops, inputs before outputs.
    private func topologicalOrder() -> [Tensor] {
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        // Iterative depth-first search: deep models would overflow the stack recursively.
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (tensor, expanded) = stack.popLast() {
            if expanded { order.append(tensor); continue }
            guard visited.insert(ObjectIdentifier(tensor)).inserted else { continue }
            stack.append((tensor, true))
            if let node = tensor.gradNode {
                for input in node.inputs where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                    stack.append((input, false))
                }
            }
        }
        return order
    }

    /// Defines a differentiable op from a forward result and a backward closure, for ops the engine
    /// does not have. `backward` maps the output's gradient to one gradient per input.
    public static func custom(_ name: String, inputs: [Tensor], output: Tensor,
                              backward: @escaping (Tensor) throws -> [Tensor?]) -> Tensor {
        record(output, name, inputs, backward)
    }
}
