import Foundation
import Inputs
import XCTest
import Engine
import Images
import Layers
@testable import Diffusion

final class AutoencoderTests: XCTestCase {
    func testDefaultShapes() throws {
        var rng = RandomGenerator(seed: 1)
        let vae = AutoencoderKL(using: &rng)
        let images = Tensor.uniform([2, 3, 32, 32], low: -1, high: 1, using: &rng)
        let (mean, logVariance) = try withNoGrad { try vae.encode(images) }
        XCTAssertEqual(mean.shape, [2, 4, 8, 8])
        XCTAssertEqual(logVariance.shape, [2, 4, 8, 8])
        XCTAssertEqual(try withNoGrad { try vae.decode(mean) }.shape, [2, 3, 32, 32])
        XCTAssertThrowsError(try vae.encode(Tensor(zeros: [1, 3, 30, 30]))) { XCTAssertTrue("\($0)".contains("[1, 3, 30, 30]")) }
        XCTAssertTrue(vae.namedParameters().contains { $0.name == "scale_factor" })
        XCTAssertFalse(vae.trainableParameters().contains { $0.name == "scale_factor" })
    }

    /// KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²), summed per sample.
    func testKLByHand() throws {
        let mean = try Tensor([1, 0, 0.5, -2], shape: [2, 2], dtype: .float64)
        let logVariance = try Tensor([0, log(4.0), 0, 0], shape: [2, 2], dtype: .float64)
        let kl = try AutoencoderKL.klDivergence(mean: mean, logVariance: logVariance).values
        XCTAssertEqual(kl[0], 0.5 * 1 + 0.5 * (4 - 1 - log(4.0)), accuracy: 1e-12)
        XCTAssertEqual(kl[1], 0.5 * 0.25 + 0.5 * 4, accuracy: 1e-12)
    }

    func testTinyVAEGradients() throws {
        var rng = RandomGenerator(seed: 2)
        let vae = AutoencoderKL(.tiny, dtype: .float64, using: &rng)
        let images = Tensor.uniform([2, 3, 4, 4], low: -1, high: 1, dtype: .float64, using: &rng)
        let picked = vae.trainableParameters().filter { $0.name.contains("conv_out") || $0.name.hasSuffix("norm1.weight") }.map(\.tensor)
        let report = try gradientCheck([images] + picked) { inputs in
            let (mean, logVariance) = try vae.encode(inputs[0])
            return try concat([vae.decode(mean), vae.decode(logVariance * 0.1)], axis: 1)
        }
        XCTAssertLessThanOrEqual(report.maxRelativeError, 1e-6, "\(report)")
        // A few AdamW steps lower the loss on a fixed batch.
        let optimizer = AdamW(vae.trainableParameters(), learningRate: 1e-2, weightDecay: 0)
        var first = 0.0, last = 0.0
        for step in 0..<30 {
            vae.zeroGrad()
            var stepRng = RandomGenerator(seed: 9)
            let loss = try vae.loss(images, beta: 1e-3, using: &stepRng)
            try loss.total.backward()
            try optimizer.step()
            if step == 0 { first = loss.total.item }
            last = loss.total.item
        }
        XCTAssertLessThan(last, first * 0.7)
    }

    func testImageTensorRoundTrip() throws {
        let image = RGBImage(width: 3, height: 2, channels: 3, pixels: (0..<18).map { UInt8($0 * 14) })
        let tensor = try ImageTensors.tensor([image, image])
        XCTAssertEqual(tensor.shape, [2, 3, 2, 3])
        XCTAssertEqual(tensor[0, 0, 0, 0], -1, accuracy: 1e-6)
        XCTAssertEqual(try ImageTensors.images(tensor), [image, image])
    }
}

final class TextTests: XCTestCase {
    func testTokenizerEncodesPadsAndReportsUnknownWordsOnce() throws {
        let tokenizer = Tokenizer(captions: ["a red circle", "two blue squares"])
        XCTAssertEqual(tokenizer.vocabulary, ["<pad>", "<unk>", "<eos>", "a", "blue", "circle", "red", "squares", "two"])
        var reported: [String] = []
        let (ids, valid) = tokenizer.encode("A red hexagon", length: 6) { reported.append($0) }
        XCTAssertEqual(ids, [3, 6, 1, 2, 0, 0])
        XCTAssertEqual(valid, [true, true, true, true, false, false])
        _ = tokenizer.encode("a hexagon", length: 6) { reported.append($0) }
        XCTAssertEqual(reported, ["hexagon"])
        XCTAssertEqual(tokenizer.decode(ids), "a red <unk>")
        // Too long: cut, EOS kept.
        XCTAssertEqual(tokenizer.encode("two blue squares two blue", length: 3).ids, [8, 4, 2])
        let data = try JSONEncoder().encode(tokenizer)
        XCTAssertEqual(try JSONDecoder().decode(Tokenizer.self, from: data).vocabulary, tokenizer.vocabulary)
        XCTAssertThrowsError(try JSONDecoder().decode(Tokenizer.self, from: Data(#"{"vocabulary": ["a"]}"#.utf8)))
    }

    /// Padding does not change the hidden states of real tokens, and gradients pass the check.
    func testTextEncoderIgnoresPaddingAndHasCorrectGradients() throws {
        var rng = RandomGenerator(seed: 3)
        let encoder = TextEncoder(.tiny, vocabularySize: 9, dtype: .float64, using: &rng)
        let a = try encoder([[3, 6, 2, 0, 0]], valid: [[true, true, true, false, false]])
        let b = try encoder([[3, 6, 2, 7, 5]], valid: [[true, true, true, false, false]])
        for position in 0..<3 { for d in 0..<8 { XCTAssertEqual(a[0, position, d], b[0, position, d], accuracy: 1e-12) } }
        let parameters = encoder.trainableParameters().filter { $0.name.contains("fc2") || $0.name.contains("position") }.map(\.tensor)
        let report = try gradientCheck(parameters) { _ in
            try encoder([[3, 6, 2, 0, 0], [8, 4, 7, 2, 0]], valid: [[true, true, true, false, false], [true, true, true, true, false]])
        }
        XCTAssertLessThanOrEqual(report.maxRelativeError, 1e-6, "\(report)")
        XCTAssertThrowsError(try encoder([[1, 2]], valid: [[true, true]]))
    }
}
