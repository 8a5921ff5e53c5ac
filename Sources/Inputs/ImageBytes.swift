import Engine
import Images

extension ByteWriter {
    /// An image: width, height, channels and its pixels.
    public mutating func put(_ image: RGBImage) {
        put(image.width)
        put(image.height)
        put(image.channels)
        put(bytes: image.pixels)
    }
}

extension ByteReader {
    /// An image `ByteWriter.put(_:)` wrote; fails on one whose pixels do not match its size.
    public mutating func image() throws -> RGBImage {
        let (width, height, channels) = (try int(), try int(), try int())
        let pixels = try byteString()
        guard [1, 3, 4].contains(channels), width >= 0, height >= 0, pixels.count == width * height * channels else {
            throw EngineError.invalidArgument(op: source, "a malformed \(width)×\(height)×\(channels) image")
        }
        return RGBImage(width: width, height: height, channels: channels, pixels: pixels)
    }
}
