import Inputs
import XCTest
import Diffusion
import Engine
import Layers
@testable import RewardModel

/// The compact LLaVA-Reward on a tiny config in Float64: gradients of SkipCA and of the whole
/// reward (parameters and image), the EOS read-out under any padding, captioning pretraining.
final class LLaVARewardTests: XCTestCase {
    let tokenizer = Tokenizer(captions: ["a red circle", "two blue squares", "a green triangle left of a red circle"])

    func model(skip: Bool = true, architecture: RewardArchitecture = .llava, captionLikelihood: [String] = [],
               seed: UInt64 = 1) throws -> LLaVAReward {
        var rng = RandomGenerator(seed: seed)
        var config = RewardModelConfig.tiny
        config.skipCrossAttention = skip
        config.architecture = architecture
        config.captionLikelihoodPerspectives = captionLikelihood
        let model = try LLaVAReward(config, vocabularySize: tokenizer.count, dtype: .float64, using: &rng)
        // LayerNorm and RMSNorm start at γ = 1, β = 0; move them so their gradients are general.
        for (name, tensor) in model.namedParameters() where name.contains("norm") {
            tensor.assign(try tensor + Tensor.randn(tensor.shape, std: 0.3, dtype: .float64, using: &rng))
        }
        return model
    }

    func images(_ count: Int, seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return Tensor.uniform([count, 3, 8, 8], low: -1, high: 1, dtype: .float64, using: &rng)
    }

    /// Token ids padded on the right (as the tokenizer does) or on the left.
    func encode(_ prompts: [String], length: Int, left: Bool = false) -> (tokens: [[Int]], valid: [[Bool]]) {
        let encoded = prompts.map { prompt -> (ids: [Int], valid: [Bool]) in
            let (ids, valid) = tokenizer.encode(prompt, length: length)
            guard left else { return (ids, valid) }
            let real = valid.filter { $0 }.count
            return (Array(ids[real...] + ids[..<real]), Array(valid[real...] + valid[..<real]))
        }
        return (encoded.map(\.ids), encoded.map(\.valid))
    }

    func testSkipCrossAttentionGradient() throws {
        var rng = RandomGenerator(seed: 3)
        let skip = SkipCrossAttention(width: 8, heads: 2, dtype: .float64, using: &rng)
        skip.norm.weight.assign(Tensor.uniform([8], low: 0.5, high: 1.5, dtype: .float64, using: &rng))
        XCTAssertEqual(skip.namedParameters().map(\.name),
                       ["cross_attn.to_q.weight", "cross_attn.to_k.weight", "cross_attn.to_v.weight",
                        "cross_attn.to_out.0.weight", "cross_attn.to_out.0.bias", "norm.weight"])
        let hidden = Tensor.randn([2, 1, 8], dtype: .float64, using: &rng), visual = Tensor.randn([2, 4, 8], dtype: .float64, using: &rng)
        let parameters = skip.namedParameters().map(\.tensor)
        let report = try gradientCheck([hidden, visual] + parameters) { try skip($0[0], visual: $0[1]) }
        XCTAssertLessThan(report.maxRelativeError, 1e-6, "\(report)")
        // It is the residual form: with the attention's output projection zeroed, h′ = RMSNorm(h).
        skip.attention.toOut.namedParameters().forEach { $0.tensor.assign(Tensor(zeros: $0.tensor.shape, dtype: .float64)) }
        let expected = try rmsNorm(hidden, weight: skip.norm.weight, eps: skip.norm.eps).values
        for (a, b) in zip(try skip(hidden, visual: visual).values, expected) { XCTAssertEqual(a, b, accuracy: 1e-12) }
    }

    /// Every parameter and the image itself (ReFL backpropagates a reward into the generator).
    func testRewardGradientWithRespectToParametersAndImage() throws {
        for skip in [true, false] {
            let model = try model(skip: skip)
            let (tokens, valid) = encode(["a red circle", "two blue squares"], length: 5)
            let parameters = model.namedParameters().map(\.tensor)
            let report = try gradientCheck([images(2, seed: 4)] + parameters) { try model($0[0], tokens: tokens, valid: valid) }
            XCTAssertLessThan(report.maxRelativeError, 1e-5, "SkipCA \(skip): \(report)")
            XCTAssertTrue(report.relativeErrors.count == parameters.count + 1)
        }
    }

    /// With the caption-likelihood prior on alignment: that column is the value head's output plus
    /// log p(prompt | image) (the others are unchanged), and the whole is differentiable.
    func testCaptionLikelihoodPriorAddsToItsPerspective() throws {
        let plain = try model(), prior = try model(captionLikelihood: ["alignment"])
        let (tokens, valid) = encode(["a red circle", "two blue squares"], length: 5)
        let pixels = images(2, seed: 4)
        let without = try plain(pixels, tokens: tokens, valid: valid), with = try prior(pixels, tokens: tokens, valid: valid)
        let likelihood = try prior.decoder.captionLogLikelihood(pixels, tokens: tokens, valid: valid)
        let p = prior.config.perspectives.count, column = prior.config.perspectives.firstIndex(of: "alignment")!
        for row in 0..<2 {
            for c in 0..<p {
                let expected = without.values[row * p + c] + (c == column ? likelihood[row] : 0)
                XCTAssertEqual(with.values[row * p + c], expected, accuracy: 1e-9)
            }
        }
        let parameters = prior.namedParameters().map(\.tensor)
        let report = try gradientCheck([pixels] + parameters) { try prior($0[0], tokens: tokens, valid: valid) }
        XCTAssertLessThan(report.maxRelativeError, 1e-5, "\(report)")
        var config = RewardModelConfig.tiny
        config.captionLikelihoodPerspectives = ["beauty"]
        XCTAssertThrowsError(try config.validate())
    }

    /// The CLIP-style baseline: gradients, and a pair's reward does not depend on the rest of the batch.
    func testDualEncoderBaseline() throws {
        let model = try model(architecture: .dualEncoder)
        XCTAssertNil(model.skipCrossAttention)
        XCTAssertTrue(model.namedParameters().contains { $0.name == "text_head.weight" })
        let (tokens, valid) = encode(["a red circle", "two blue squares"], length: 5)
        let report = try gradientCheck([images(2, seed: 4)] + model.namedParameters().map(\.tensor)) { try model($0[0], tokens: tokens, valid: valid) }
        XCTAssertLessThan(report.maxRelativeError, 1e-5, "\(report)")
        let pixels = images(2, seed: 5)
        let swapped = try model(pixels, tokens: [tokens[1], tokens[0]], valid: [valid[1], valid[0]]).values
        let crossed = try model(try pixels.indexSelect(axis: 0, [0, 0]), tokens: [tokens[1], tokens[1]], valid: [valid[1], valid[1]]).values
        XCTAssertEqual(swapped[0], crossed[0], accuracy: 1e-12)
        XCTAssertNotEqual(swapped[0], swapped[2])
    }

    func testRewardIsReadAtEOSWhereverPaddingPutsIt() throws {
        let model = try model()
        let pixels = images(3, seed: 5)
        let prompts = ["a red circle", "two blue squares", "a green triangle"]
        let right = encode(prompts, length: 5)
        let left = encode(prompts, length: 5, left: true)
        let long = encode(prompts, length: 9)   // more padding than the model's text length
        let mixed = (tokens: [right.tokens[0], left.tokens[1], right.tokens[2]], valid: [right.valid[0], left.valid[1], right.valid[2]])
        let reference = try model(pixels, tokens: right.tokens, valid: right.valid).values
        XCTAssertEqual(reference.count, 3 * 2)
        for (name, layout) in [("left", left), ("long", long), ("mixed", mixed)] {
            let rewards = try model(pixels, tokens: layout.tokens, valid: layout.valid).values
            for (a, b) in zip(rewards, reference) { XCTAssertEqual(a, b, accuracy: 1e-12, name) }
        }
        // The EOS index is found, not assumed: image tokens + real tokens − 1 on the right, the last slot on the left.
        let states = try model.decoder(pixels, tokens: left.tokens, valid: left.valid)
        XCTAssertEqual(states.endOfSequence, [4 + 4, 4 + 4, 4 + 4])
        XCTAssertEqual(try model.decoder(pixels, tokens: right.tokens, valid: right.valid).endOfSequence, [4 + 3, 4 + 3, 4 + 3])
        // Reading anywhere else would differ: the state one position before EOS gives other rewards.
        let width = model.config.width, t = states.hidden.shape[1]
        let beforeEOS = try states.hidden.reshaped([3 * t, width]).indexSelect(axis: 0, [t - 2, 2 * t - 2, 3 * t - 2])
        let misread = try model.valueHead(model.skipCrossAttention!(beforeEOS.reshaped([3, 1, width]), visual: states.imageTokens!)
            .reshaped([3, width])).values
        XCTAssertGreaterThan(zip(misread, reference).map { Swift.abs($0 - $1) }.max()!, 1e-3)
        // And a prompt's reward depends on its words and on its image.
        let other = encode(["a red square", "two blue squares", "a green triangle"], length: 5)
        XCTAssertNotEqual(try model(pixels, tokens: other.tokens, valid: other.valid).values[0], reference[0])
        XCTAssertNotEqual(try model(images(3, seed: 6), tokens: right.tokens, valid: right.valid).values[0], reference[0])
    }

    func testBadInputIsRefused() throws {
        let model = try model()
        let (tokens, valid) = encode(["a red circle"], length: 5)
        XCTAssertThrowsError(try model(images(2, seed: 7), tokens: tokens, valid: valid)) { error in
            XCTAssertTrue("\(error)".contains("[2, 3, 8, 8]"), "\(error)")
        }
        XCTAssertThrowsError(try model(images(1, seed: 7), tokens: [[3, 4, 0, 0, 0]], valid: [[true, true, false, false, false]])) { error in
            XCTAssertTrue("\(error)".contains("EOS"), "\(error)")
        }
        XCTAssertThrowsError(try model(Tensor(zeros: [1, 3, 16, 16], dtype: .float64), tokens: tokens, valid: valid))
        XCTAssertThrowsError(try model.column(model(images(1, seed: 7), tokens: tokens, valid: valid), "overall"))
        var config = RewardModelConfig.tiny
        config.patchSize = 3
        var rng = RandomGenerator(seed: 1)
        XCTAssertThrowsError(try LLaVAReward(config, vocabularySize: 10, using: &rng))
    }

    /// Captioning pretraining learns: a tiny decoder overfits two captioned images.
    func testCaptioningLossFallsWhenTrained() throws {
        var rng = RandomGenerator(seed: 8)
        let decoder = try MultimodalDecoder(.tiny, vocabularySize: tokenizer.count, using: &rng)
        let pixels = Tensor.uniform([2, 3, 8, 8], low: -1, high: 1, using: &rng)
        let (tokens, valid) = encode(["a red circle", "two blue squares"], length: 5)
        let optimizer = AdamW(decoder.trainableParameters(), learningRate: 0.01)
        let first = try decoder.captionLoss(pixels, tokens: tokens, valid: valid).item
        XCTAssertEqual(first, Foundation.log(Double(tokenizer.count)), accuracy: 0.5, "near uniform at start")
        for _ in 0..<60 {
            decoder.zeroGrad()
            try decoder.captionLoss(pixels, tokens: tokens, valid: valid).backward()
            try optimizer.step()
        }
        XCTAssertLessThan(try decoder.captionLoss(pixels, tokens: tokens, valid: valid).item, 0.2 * first)
        // After training, each image's own caption is the likelier one (the zero-shot alignment score).
        let own = try decoder.captionLogLikelihood(pixels, tokens: tokens, valid: valid)
        let swapped = try decoder.captionLogLikelihood(pixels, tokens: [tokens[1], tokens[0]], valid: [valid[1], valid[0]])
        XCTAssertGreaterThan(own[0], swapped[0])
        XCTAssertGreaterThan(own[1], swapped[1])
    }

    /// The per-sample caption log-likelihood is the captioning loss taken apart: minus its sum
    /// over samples, divided by the valid tokens, is the loss; each sample's value depends only on
    /// its own image and caption.
    func testCaptionLogLikelihoodAgreesWithTheCaptioningLoss() throws {
        var rng = RandomGenerator(seed: 9)
        let decoder = try MultimodalDecoder(.tiny, vocabularySize: tokenizer.count, using: &rng)
        let pixels = Tensor.uniform([3, 3, 8, 8], low: -1, high: 1, using: &rng)
        let (tokens, valid) = encode(["a red circle", "two blue squares", "a green triangle"], length: 5)
        let likelihood = try decoder.captionLogLikelihood(pixels, tokens: tokens, valid: valid)
        let loss = try decoder.captionLoss(pixels, tokens: tokens, valid: valid).item
        let validTokens = Double(valid.joined().filter { $0 }.count)
        XCTAssertEqual(-likelihood.reduce(0, +) / validTokens, loss, accuracy: 1e-4)
        XCTAssertTrue(likelihood.allSatisfy { $0 < 0 })
        let alone = try decoder.captionLogLikelihood(pixels.slice(axis: 0, 1..<2), tokens: [tokens[1]], valid: [valid[1]])
        XCTAssertEqual(alone[0], likelihood[1], accuracy: 1e-4)
    }
}
