import Engine
import Layers

/// A small ViT: non-overlapping p×p patches, a linear patch embedding plus learned positions,
/// pre-LN transformer layers, a final LayerNorm. Differentiable with respect to the image, so a
/// reward built on it can be backpropagated into a generator (ReFL).
public final class VisionEncoder: Module {
    public let imageSize: Int, patchSize: Int
    let patchEmbedding: Linear, positionEmbedding: Tensor
    let layers: [TransformerLayer]
    let finalNorm: LayerNorm

    public init(imageSize: Int, patchSize: Int, width: Int, layers: Int, heads: Int, dtype: DType = .float32,
                using rng: inout RandomGenerator) {
        self.imageSize = imageSize
        self.patchSize = patchSize
        patchEmbedding = Linear(3 * patchSize * patchSize, width, dtype: dtype, using: &rng)
        let tokens = (imageSize / patchSize) * (imageSize / patchSize)
        positionEmbedding = Tensor.randn([tokens, width], std: 0.02, dtype: dtype, using: &rng)
        positionEmbedding.requiresGrad = true
        self.layers = (0..<layers).map { _ in TransformerLayer(width, heads: heads, dtype: dtype, using: &rng) }
        finalNorm = LayerNorm(width, dtype: dtype)
    }

    public var parameters: [(name: String, tensor: Tensor)] { [("position_embedding", positionEmbedding)] }
    public var children: [(name: String, module: any Module)] {
        [("patch_embedding", patchEmbedding as any Module)]
            + layers.enumerated().map { ("layers.\($0.offset)", $0.element as any Module) } + [("final_layer_norm", finalNorm)]
    }

    /// Image tokens [B, (S/p)², width] for images [B, 3, S, S] with values in [−1, 1].
    public func callAsFunction(_ images: Tensor) throws -> Tensor {
        try checkShape(images.rank == 4 && images.shape[1] == 3 && images.shape[2] == imageSize && images.shape[3] == imageSize,
                       "VisionEncoder", "images \(describe(images.shape)) for [B, 3, \(imageSize), \(imageSize)]")
        var h = try patchEmbedding(patches(images)) + positionEmbedding
        for layer in layers { h = try layer(h) }
        return try finalNorm(h)
    }

    /// [B, 3, S, S] → [B, (S/p)², 3·p·p], patches in row-major order, each flattened channel-first.
    func patches(_ images: Tensor) throws -> Tensor {
        let (b, p, g) = (images.shape[0], patchSize, imageSize / patchSize)
        return try images.reshaped([b, 3, g, p, g, p]).permuted([0, 2, 4, 1, 3, 5]).reshaped([b, g * g, 3 * p * p])
    }
}
