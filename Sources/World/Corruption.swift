import Engine
import Images

/// Image corruptions for testing the judge's robustness: pixel noise and blur, standing in for
/// what a generative model's decoder does to flat shapes.
public enum Corruption {
    /// Adds N(0, σ²) to every channel (σ in 0–255 units), clamped to [0, 255].
    public static func gaussianNoise(_ image: RGBImage, sigma: Double, using rng: inout RandomGenerator) -> RGBImage {
        guard sigma > 0 else { return image }
        var out = image
        for i in out.pixels.indices {
            out.pixels[i] = UInt8(Swift.min(255, Swift.max(0, (Double(image.pixels[i]) + sigma * rng.normal()).rounded())))
        }
        return out
    }

    /// Separable Gaussian blur with standard deviation σ pixels (kernel radius ⌈3σ⌉, edges clamped).
    public static func gaussianBlur(_ image: RGBImage, sigma: Double) -> RGBImage {
        guard sigma > 0 else { return image }
        let radius = Int((3 * sigma).rounded(.up))
        var weights = (-radius...radius).map { Double.exp(-Double($0 * $0) / (2 * sigma * sigma)) }
        let total = weights.reduce(0, +)
        weights = weights.map { $0 / total }
        let (w, h, c) = (image.width, image.height, image.channels)
        func pass(_ source: [Double], horizontal: Bool) -> [Double] {
            var result = [Double](repeating: 0, count: source.count)
            for y in 0..<h { for x in 0..<w { for ch in 0..<c {
                var sum = 0.0
                for k in -radius...radius {
                    let (sx, sy) = horizontal ? (Swift.min(w - 1, Swift.max(0, x + k)), y) : (x, Swift.min(h - 1, Swift.max(0, y + k)))
                    sum += weights[k + radius] * source[(sy * w + sx) * c + ch]
                }
                result[(y * w + x) * c + ch] = sum
            } } }
            return result
        }
        let blurred = pass(pass(image.pixels.map(Double.init), horizontal: true), horizontal: false)
        return RGBImage(width: w, height: h, channels: c, pixels: blurred.map { UInt8(Swift.min(255, Swift.max(0, $0.rounded()))) })
    }
}

import Foundation
private extension Double {
    static func exp(_ x: Double) -> Double { Foundation.exp(x) }
}
