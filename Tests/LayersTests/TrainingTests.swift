import Foundation
import XCTest
import Engine
@testable import Layers

/// A two-layer perceptron for the toy tasks.
private final class MLP: Module {
    let fc1: Linear, fc2: Linear
    init(_ sizes: (Int, Int, Int), using rng: inout RandomGenerator) {
        fc1 = Linear(sizes.0, sizes.1, using: &rng)
        fc2 = Linear(sizes.1, sizes.2, using: &rng)
    }
    var children: [(name: String, module: any Module)] { [(name: "fc1", module: fc1), (name: "fc2", module: fc2)] }
    func callAsFunction(_ x: Tensor) throws -> Tensor { try fc2(tanh(fc1(x))) }
}

/// XOR-like task: label = sign(x₀·x₁), 256 points.
private func xorData(seed: UInt64) throws -> (Tensor, [Int]) {
    var rng = RandomGenerator(seed: seed)
    let x = Tensor.randn([256, 2], using: &rng)
    let v = x.values
    return (x, (0..<256).map { v[2 * $0] * v[2 * $0 + 1] > 0 ? 1 : 0 })
}

final class TrainingTests: XCTestCase {
    func testMLPLearnsXOR() throws {
        var rng = RandomGenerator(seed: 1)
        let model = MLP((2, 32, 2), using: &rng)
        let (x, labels) = try xorData(seed: 2)
        let optimizer = AdamW(model.trainableParameters(), learningRate: 0.02, weightDecay: 0)
        let initial = try crossEntropy(logits: model(x), targets: labels).item
        var loss = initial
        for _ in 0..<300 {
            model.zeroGrad()
            let l = try crossEntropy(logits: model(x), targets: labels)
            try l.backward()
            try optimizer.step()
            loss = l.item
        }
        XCTAssertGreaterThan(initial, 0.6)
        XCTAssertLessThan(loss, 0.1, "XOR loss after 300 AdamW steps")
    }

    func testConvNetLearnsBarOrientation() throws {
        var rng = RandomGenerator(seed: 3)
        let model = BarOrientationClassifier(using: &rng)
        let (x, labels) = try BarOrientationTask.make(count: 64, seed: 4)
        let optimizer = AdamW(model.trainableParameters(), learningRate: 0.01, weightDecay: 0)
        var loss = 1.0
        for _ in 0..<150 {
            model.zeroGrad()
            let l = try crossEntropy(logits: model(x), targets: labels)
            try l.backward()
            try clipGradNorm(model.trainableParameters(), maxNorm: 5)
            try optimizer.step()
            loss = l.item
        }
        XCTAssertLessThan(loss, 0.1, "bar-orientation loss after 150 steps")
        let (test, testLabels) = try BarOrientationTask.make(count: 64, seed: 5)
        let predictions = try withNoGrad { try model(test).argmax(axis: 1) }
        let accuracy = Double(zip(predictions, testLabels).filter { $0 == $1 }.count) / 64
        XCTAssertGreaterThan(accuracy, 0.9, "held-out accuracy")
    }

    /// Two runs with one seed (and the same thread count) give bit-identical parameters.
    func testTrainingIsReproducibleFromASeed() throws {
        func train() throws -> [Float] {
            var rng = RandomGenerator(seed: 9)
            let model = BarOrientationClassifier(using: &rng)
            let (x, labels) = try BarOrientationTask.make(count: 16, seed: 10)
            let optimizer = AdamW(model.trainableParameters(), learningRate: 0.01)
            for _ in 0..<5 {
                model.zeroGrad()
                try crossEntropy(logits: model(x), targets: labels).backward()
                try optimizer.step()
            }
            return model.namedParameters().flatMap { $0.tensor.floats }
        }
        XCTAssertEqual(try train(), try train())
    }

    func testCheckpointRoundTripAndMismatchErrors() throws {
        var rng = RandomGenerator(seed: 11)
        let model = BarOrientationClassifier(using: &rng)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("convnet-\(UUID()).safetensors")
        try Safetensors.write(model.stateDict(), to: url)
        let other = BarOrientationClassifier(using: &rng)
        XCTAssertNotEqual(other.conv1.weight.floats, model.conv1.weight.floats)
        try other.loadParameters(try Safetensors.read(url).tensors)
        XCTAssertEqual(other.namedParameters().flatMap { $0.tensor.floats }, model.namedParameters().flatMap { $0.tensor.floats })
        // A checkpoint of another model names the tensor at fault.
        let mlp = MLP((2, 8, 2), using: &rng)
        XCTAssertThrowsError(try mlp.loadParameters(try Safetensors.read(url).tensors)) {
            XCTAssertTrue("\($0)".contains("fc1.weight"), "\($0)")
        }
        var wrongShape = model.stateDict()
        wrongShape["head.weight"] = Tensor(zeros: [3, 8])
        XCTAssertThrowsError(try other.loadParameters(wrongShape)) {
            XCTAssertTrue("\($0)".contains("head.weight") && "\($0)".contains("[3, 8]"), "\($0)")
        }
    }
}
