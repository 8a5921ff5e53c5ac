/// An 8-bit image in row-major order with 1 (gray), 3 (RGB) or 4 (RGBA) interleaved channels.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public var pixels: [UInt8]

    /// A width × height image filled with `fill` (one value per channel).
    public init(width: Int, height: Int, fill: [UInt8]) {
        precondition(width >= 0 && height >= 0 && [1, 3, 4].contains(fill.count), "image \(width)×\(height), fill \(fill)")
        self.width = width
        self.height = height
        channels = fill.count
        pixels = [UInt8](repeating: 0, count: width * height * fill.count)
        for i in 0..<(width * height) { for c in 0..<channels { pixels[i * channels + c] = fill[c] } }
    }

    /// An image over existing pixels; the count must be width · height · channels.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition([1, 3, 4].contains(channels) && pixels.count == width * height * channels,
                      "\(pixels.count) bytes for a \(width)×\(height)×\(channels) image")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// The channels at (x, y).
    public subscript(x: Int, y: Int) -> [UInt8] {
        get { Array(pixels[(y * width + x) * channels ..< (y * width + x + 1) * channels]) }
        set { for c in 0..<channels { pixels[(y * width + x) * channels + c] = newValue[c] } }
    }

    /// The same image as RGB (gray is replicated, alpha is composited over white).
    public func rgb() -> RGBImage {
        if channels == 3 { return self }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            for c in 0..<3 {
                switch channels {
                case 1: out[i * 3 + c] = pixels[i]
                default:
                    let value = Int(pixels[i * 4 + c]), alpha = Int(pixels[i * 4 + 3])
                    out[i * 3 + c] = UInt8((value * alpha + 255 * (255 - alpha) + 127) / 255)
                }
            }
        }
        return RGBImage(width: width, height: height, channels: 3, pixels: out)
    }
}

/// Tiles images (all of one size and channel count) into a grid with `columns` columns and a
/// `gap`-pixel border of `background`.
public func imageGrid(_ images: [RGBImage], columns: Int, gap: Int = 2, background: UInt8 = 255) -> RGBImage {
    guard let first = images.first else { return RGBImage(width: 0, height: 0, channels: 3, pixels: []) }
    let columns = max(1, min(columns, images.count)), rows = (images.count + columns - 1) / columns
    let (w, h, ch) = (first.width, first.height, first.channels)
    var grid = RGBImage(width: columns * (w + gap) + gap, height: rows * (h + gap) + gap,
                        fill: [UInt8](repeating: background, count: ch))
    for (index, image) in images.enumerated() {
        precondition(image.width == w && image.height == h && image.channels == ch, "grid images differ in size")
        let (ox, oy) = (gap + (index % columns) * (w + gap), gap + (index / columns) * (h + gap))
        for y in 0..<h {
            let src = y * w * ch, dst = ((oy + y) * grid.width + ox) * ch
            grid.pixels.replaceSubrange(dst ..< dst + w * ch, with: image.pixels[src ..< src + w * ch])
        }
    }
    return grid
}
