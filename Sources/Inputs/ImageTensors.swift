import Engine
import Images

/// Conversions between 8-bit RGB images and [−1, 1] tensors [B, 3, H, W].
public enum ImageTensors {
    /// Images (all one size) as a tensor with values (p / 127.5 − 1).
    public static func tensor(_ images: [RGBImage], dtype: DType = .float32) throws -> Tensor {
        guard let first = images.first else { throw EngineError.invalidArgument(op: "ImageTensors", "no images") }
        let (h, w) = (first.height, first.width)
        var values = [Double](repeating: 0, count: images.count * 3 * h * w)
        for (n, image) in images.enumerated() {
            let rgb = image.rgb()
            guard rgb.width == w && rgb.height == h else {
                throw EngineError.shapeMismatch(op: "ImageTensors", "image \(rgb.width)×\(rgb.height) among \(w)×\(h) images")
            }
            for y in 0..<h { for x in 0..<w { for c in 0..<3 {
                values[((n * 3 + c) * h + y) * w + x] = Double(rgb.pixels[(y * w + x) * 3 + c]) / 127.5 - 1
            } } }
        }
        return try Tensor(values, shape: [images.count, 3, h, w], dtype: dtype)
    }

    /// A tensor [B, 3, H, W] back to images, clamped to [−1, 1] and rounded.
    public static func images(_ tensor: Tensor) throws -> [RGBImage] {
        guard tensor.rank == 4, tensor.shape[1] == 3 else {
            throw EngineError.shapeMismatch(op: "ImageTensors", "tensor \(tensor.shape) is not [B, 3, H, W]")
        }
        let (b, h, w) = (tensor.shape[0], tensor.shape[2], tensor.shape[3])
        let values = tensor.values
        return (0..<b).map { n in
            var pixels = [UInt8](repeating: 0, count: h * w * 3)
            for y in 0..<h { for x in 0..<w { for c in 0..<3 {
                let v = Swift.min(1, Swift.max(-1, values[((n * 3 + c) * h + y) * w + x]))
                pixels[(y * w + x) * 3 + c] = UInt8(((v + 1) * 127.5).rounded())
            } } }
            return RGBImage(width: w, height: h, channels: 3, pixels: pixels)
        }
    }
}
