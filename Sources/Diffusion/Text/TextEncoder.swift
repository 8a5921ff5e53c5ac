import Engine
import Layers

/// The text encoder's shape.
public struct TextEncoderConfig: Codable, Equatable, Sendable {
    public var width = 64
    public var layers = 2
    public var heads = 4
    public var maxLength = 16

    public init() {}

    public static var tiny: TextEncoderConfig {
        var config = TextEncoderConfig()
        config.width = 8
        config.layers = 1
        config.heads = 2
        config.maxLength = 5
        return config
    }
}

/// A small transformer over caption tokens: token + position embeddings, encoder layers that do
/// not attend to padding, a final LayerNorm. Its output [B, L, width] is the UNet's context.
public final class TextEncoder: Module {
    public let config: TextEncoderConfig
    let tokenEmbedding: Embedding, positionEmbedding: Tensor
    let layers: [TransformerLayer]
    let finalNorm: LayerNorm

    public init(_ config: TextEncoderConfig = TextEncoderConfig(), vocabularySize: Int, dtype: DType = .float32,
                using rng: inout RandomGenerator) {
        self.config = config
        tokenEmbedding = Embedding(vocabularySize, config.width, dtype: dtype, using: &rng)
        tokenEmbedding.weight.assign(tokenEmbedding.weight * 0.02)
        positionEmbedding = Tensor.randn([config.maxLength, config.width], std: 0.02, dtype: dtype, using: &rng)
        positionEmbedding.requiresGrad = true
        layers = (0..<config.layers).map { _ in TransformerLayer(config.width, heads: config.heads, dtype: dtype, using: &rng) }
        finalNorm = LayerNorm(config.width, dtype: dtype)
    }

    public var parameters: [(name: String, tensor: Tensor)] { [("position_embedding.weight", positionEmbedding)] }
    public var children: [(name: String, module: any Module)] {
        [("token_embedding", tokenEmbedding as any Module)] + layers.enumerated().map { ("layers.\($0.offset)", $0.element as any Module) }
            + [("final_layer_norm", finalNorm)]
    }

    /// Hidden states [B, L, width] for token ids [B][L] (L = maxLength) and their validity masks.
    public func callAsFunction(_ tokens: [[Int]], valid: [[Bool]]) throws -> Tensor {
        let length = config.maxLength
        guard !tokens.isEmpty, tokens.allSatisfy({ $0.count == length }), valid.count == tokens.count,
              valid.allSatisfy({ $0.count == length }) else {
            throw EngineError.shapeMismatch(op: "TextEncoder", "\(tokens.count) captions of \(tokens.first?.count ?? 0) tokens for length \(length)")
        }
        var h = try tokenEmbedding(tokens.flatMap { $0 }, shape: [tokens.count, length]) + positionEmbedding
        let mask = AttentionMask(keyValid: valid)
        for layer in layers { h = try layer(h, mask: mask) }
        return try finalNorm(h)
    }
}
