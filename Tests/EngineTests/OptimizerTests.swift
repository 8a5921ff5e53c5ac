import XCTest
@testable import Engine

final class OptimizerTests: XCTestCase {
    /// One AdamW step by hand: p = 1, g = 0.5, lr = 0.1, λ = 0.01.
    /// m = 0.05, v = 0.00025, m̂ = 0.5, v̂ = 0.25, so p = 1·(1 − 0.001) − 0.1·0.5/(0.5 + 1e-8).
    func testAdamWMatchesAHandComputedStep() throws {
        let p = try Tensor([1], shape: [1], dtype: .float64)
        p.requiresGrad = true
        p.grad = try Tensor([0.5], shape: [1], dtype: .float64)
        let optimizer = AdamW([(name: "p", tensor: p)], learningRate: 0.1, weightDecay: 0.01)
        try optimizer.step()
        XCTAssertEqual(p.values[0], 0.999 - 0.1 * 0.5 / (0.5 + 1e-8), accuracy: 1e-15)
        // Second step with g = −0.5: m = 0.9·0.05 − 0.05 = −0.005, v = 0.999·0.00025 + 0.00025.
        p.grad = try Tensor([-0.5], shape: [1], dtype: .float64)
        let before = p.values[0]
        try optimizer.step()
        let m = -0.005 / (1 - 0.81), v = (0.999 * 0.00025 + 0.00025) / (1 - 0.999 * 0.999)
        XCTAssertEqual(p.values[0], before * 0.999 - 0.1 * m / (v.squareRoot() + 1e-8), accuracy: 1e-14)
    }

    func testSGDWithMomentumByHand() throws {
        let p = try Tensor([2], shape: [1], dtype: .float64)
        p.grad = try Tensor([1], shape: [1], dtype: .float64)
        let optimizer = SGD([(name: "p", tensor: p)], learningRate: 0.1, momentum: 0.9)
        try optimizer.step()
        try optimizer.step()
        // b = 1 then 1.9; p = 2 − 0.1 − 0.19
        XCTAssertEqual(p.values[0], 1.71, accuracy: 1e-14)
    }

    func testGradientClippingScalesToTheMaximumNorm() throws {
        let a = Tensor(zeros: [2], dtype: .float64), b = Tensor(zeros: [1], dtype: .float64)
        a.grad = try Tensor([3, 0], shape: [2], dtype: .float64)
        b.grad = try Tensor([4], shape: [1], dtype: .float64)
        let norm = try clipGradNorm([(name: "a", tensor: a), (name: "b", tensor: b)], maxNorm: 1)
        XCTAssertEqual(norm, 5)
        XCTAssertEqual(a.grad!.values[0], 0.6, accuracy: 1e-15)
        XCTAssertEqual(b.grad!.values[0], 0.8, accuracy: 1e-15)
        b.grad = try Tensor([.nan], shape: [1], dtype: .float64)
        XCTAssertThrowsError(try clipGradNorm([(name: "b", tensor: b)], maxNorm: 1))
    }

    func testLearningRateSchedules() {
        XCTAssertEqual(LearningRateSchedule.constant.factor(at: 100), 1)
        XCTAssertEqual(LearningRateSchedule.linearWarmup(warmupSteps: 4).factor(at: 0), 0.25)
        XCTAssertEqual(LearningRateSchedule.linearWarmup(warmupSteps: 4).factor(at: 10), 1)
        let cosine = LearningRateSchedule.cosine(warmupSteps: 2, totalSteps: 12, minFactor: 0.1)
        XCTAssertEqual(cosine.factor(at: 0), 0.5)
        XCTAssertEqual(cosine.factor(at: 2), 1, accuracy: 1e-12)
        XCTAssertEqual(cosine.factor(at: 7), 0.55, accuracy: 1e-12)
        XCTAssertEqual(cosine.factor(at: 12), 0.1, accuracy: 1e-12)
    }

    /// Saving and restoring optimizer state mid-run continues exactly as an uninterrupted run.
    func testOptimizerStateRoundTripContinuesIdentically() throws {
        func run(restartAfter: Int?) throws -> [Double] {
            let p = try Tensor([1, -2, 3], shape: [3])
            var optimizer = AdamW([(name: "p", tensor: p)], learningRate: 0.05)
            for step in 0..<6 {
                if step == restartAfter {
                    let url = FileManager.default.temporaryDirectory.appendingPathComponent("adam-\(UUID()).safetensors")
                    try Safetensors.write(optimizer.state(), to: url)
                    let saved = p.copy()
                    optimizer = AdamW([(name: "p", tensor: saved)], learningRate: 0.05)
                    try optimizer.loadState(try Safetensors.read(url).tensors)
                    p.assign(saved)
                    optimizer = AdamW([(name: "p", tensor: p)], learningRate: 0.05)
                    try optimizer.loadState(try Safetensors.read(url).tensors)
                }
                p.grad = try Tensor(p.values.map { 2 * $0 + 1 }, shape: [3])
                try optimizer.step()
            }
            return p.values
        }
        XCTAssertEqual(try run(restartAfter: nil), try run(restartAfter: 3))
    }
}

final class ConfigLoaderTests: XCTestCase {
    struct Inner: Codable, Equatable { var width = 64; var names = ["a"] }
    struct Settings: Codable, Equatable { var rate = 0.1; var steps = 10; var inner = Inner() }

    func testDefaultsFillWhatTheJSONLeavesOut() throws {
        let s = try ConfigLoader.decode(Settings.self, from: Data(#"{"steps": 3, "inner": {"width": 8}}"#.utf8), defaults: Settings())
        XCTAssertEqual(s, Settings(rate: 0.1, steps: 3, inner: Inner(width: 8, names: ["a"])))
        XCTAssertEqual(try ConfigLoader.decode(Settings.self, from: Data("{}".utf8), defaults: Settings()), Settings())
    }

    func testUnknownKeysWrongTypesAndMalformedJSONAreErrors() {
        XCTAssertThrowsError(try ConfigLoader.decode(Settings.self, from: Data(#"{"inner": {"widht": 8}}"#.utf8), defaults: Settings())) {
            XCTAssertTrue("\($0)".contains("unknown key 'inner.widht'"), "\($0)")
        }
        XCTAssertThrowsError(try ConfigLoader.decode(Settings.self, from: Data(#"{"steps": "many"}"#.utf8), defaults: Settings())) {
            XCTAssertTrue("\($0)".contains("steps"), "\($0)")
        }
        XCTAssertThrowsError(try ConfigLoader.decode(Settings.self, from: Data(#"{"steps": 3"#.utf8), defaults: Settings())) {
            XCTAssertTrue("\($0)".contains("malformed JSON"), "\($0)")
        }
        XCTAssertThrowsError(try ConfigLoader.load(Settings.self, from: URL(fileURLWithPath: "/nonexistent.json"), defaults: Settings()))
    }
}
