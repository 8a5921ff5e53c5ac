import CZlib
import Foundation

/// PNG encoding and decoding through zlib: 8-bit gray, RGB and RGBA (and gray + alpha on read),
/// non-interlaced, all five scanline filters on read; written files use filter 0 ("none"), which
/// keeps every file of the same pixels byte-identical.
public enum PNG {
    /// A PNG that cannot be read, with what was wrong.
    public struct DecodeError: Error, CustomStringConvertible {
        public let description: String
    }

    private static let signature: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]

    /// The PNG bytes of an image (gray, RGB or RGBA).
    public static func encode(_ image: RGBImage) -> Data {
        var data = Data(signature)
        var header = Data()
        header.appendBigEndian(UInt32(image.width))
        header.appendBigEndian(UInt32(image.height))
        let colorType: UInt8 = image.channels == 1 ? 0 : (image.channels == 3 ? 2 : 6)
        header.append(contentsOf: [8, colorType, 0, 0, 0])
        appendChunk("IHDR", header, to: &data)
        let rowBytes = image.width * image.channels
        var raw = [UInt8](repeating: 0, count: image.height * (rowBytes + 1))
        for y in 0..<image.height {
            raw.replaceSubrange(y * (rowBytes + 1) + 1 ..< (y + 1) * (rowBytes + 1),
                                with: image.pixels[y * rowBytes ..< (y + 1) * rowBytes])
        }
        appendChunk("IDAT", deflate(raw), to: &data)
        appendChunk("IEND", Data(), to: &data)
        return data
    }

    /// Writes an image as a PNG file.
    public static func write(_ image: RGBImage, to url: URL) throws {
        try encode(image).write(to: url, options: .atomic)
    }

    /// Reads a PNG file.
    public static func read(_ url: URL) throws -> RGBImage {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DecodeError(description: "cannot read \(url.path): \(error.localizedDescription)")
        }
        do { return try decode(data) } catch let error as DecodeError {
            throw DecodeError(description: "\(url.lastPathComponent): \(error.description)")
        }
    }

    /// Decodes PNG bytes: 8-bit gray, gray + alpha, RGB or RGBA, non-interlaced. Chunk CRCs are checked.
    public static func decode(_ data: Data) throws -> RGBImage {
        let bytes = [UInt8](data)
        guard bytes.count >= 8, Array(bytes[0..<8]) == signature else { throw DecodeError(description: "not a PNG file") }
        var offset = 8
        var width = 0, height = 0, channels = 0
        var compressed = [UInt8]()
        var sawEnd = false
        while offset + 12 <= bytes.count {
            let length = Int(bytes.readBigEndian(at: offset))
            let type = String(decoding: bytes[offset + 4 ..< offset + 8], as: UTF8.self)
            guard length >= 0, offset + 12 + length <= bytes.count else { throw DecodeError(description: "truncated \(type) chunk") }
            let body = Array(bytes[offset + 8 ..< offset + 8 + length])
            let stored = bytes.readBigEndian(at: offset + 8 + length)
            guard crc(Array(bytes[offset + 4 ..< offset + 8]) + body) == stored else {
                throw DecodeError(description: "CRC mismatch in \(type) chunk")
            }
            switch type {
            case "IHDR":
                guard body.count == 13 else { throw DecodeError(description: "malformed IHDR") }
                width = Int(body.readBigEndian(at: 0)); height = Int(body.readBigEndian(at: 4))
                let (depth, colorType, interlace) = (body[8], body[9], body[12])
                guard depth == 8 else { throw DecodeError(description: "bit depth \(depth) (only 8 is supported)") }
                guard interlace == 0 else { throw DecodeError(description: "interlaced PNG (not supported)") }
                switch colorType {
                case 0: channels = 1
                case 2: channels = 3
                case 4: channels = 2
                case 6: channels = 4
                default: throw DecodeError(description: "color type \(colorType) (supported: gray, gray+alpha, RGB, RGBA)")
                }
                // A header may claim any size; at most 2²⁴ pixels (4096 × 4096) are allocated.
                guard width > 0, height > 0, width <= 1 << 15, height <= 1 << 15, width * height <= 1 << 24 else {
                    throw DecodeError(description: "image size \(width)×\(height) (at most 2^24 pixels)")
                }
            case "IDAT": compressed += body
            case "IEND": sawEnd = true
            default: break
            }
            offset += 12 + length
            if sawEnd { break }
        }
        guard channels > 0 else { throw DecodeError(description: "no IHDR chunk") }
        guard sawEnd else { throw DecodeError(description: "no IEND chunk (truncated file?)") }
        let rowBytes = width * channels
        let raw = try inflate(compressed, expected: height * (rowBytes + 1))
        var pixels = [UInt8](repeating: 0, count: height * rowBytes)
        for y in 0..<height {
            let filter = raw[y * (rowBytes + 1)]
            let line = y * (rowBytes + 1) + 1
            for x in 0..<rowBytes {
                let a = x >= channels ? Int(pixels[y * rowBytes + x - channels]) : 0
                let b = y > 0 ? Int(pixels[(y - 1) * rowBytes + x]) : 0
                let c = x >= channels && y > 0 ? Int(pixels[(y - 1) * rowBytes + x - channels]) : 0
                let predictor: Int
                switch filter {
                case 0: predictor = 0
                case 1: predictor = a
                case 2: predictor = b
                case 3: predictor = (a + b) / 2
                case 4:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    predictor = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c)
                default: throw DecodeError(description: "unknown filter \(filter) on row \(y)")
                }
                pixels[y * rowBytes + x] = UInt8((Int(raw[line + x]) + predictor) & 0xFF)
            }
        }
        if channels == 2 {
            // Gray + alpha becomes RGBA.
            var rgba = [UInt8](repeating: 0, count: width * height * 4)
            for i in 0..<(width * height) {
                rgba[i * 4] = pixels[i * 2]; rgba[i * 4 + 1] = pixels[i * 2]; rgba[i * 4 + 2] = pixels[i * 2]
                rgba[i * 4 + 3] = pixels[i * 2 + 1]
            }
            return RGBImage(width: width, height: height, channels: 4, pixels: rgba)
        }
        return RGBImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    private static func appendChunk(_ type: String, _ body: Data, to data: inout Data) {
        data.appendBigEndian(UInt32(body.count))
        let typeBytes = Array(type.utf8)
        data.append(contentsOf: typeBytes)
        data.append(body)
        data.appendBigEndian(crc(typeBytes + [UInt8](body)))
    }

    static func crc(_ bytes: [UInt8]) -> UInt32 {
        UInt32(bytes.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) })
    }

    private static func deflate(_ raw: [UInt8]) -> Data {
        var length = compressBound(uLong(raw.count))
        var out = [UInt8](repeating: 0, count: Int(length))
        let status = raw.withUnsafeBufferPointer { compress2(&out, &length, $0.baseAddress, uLong(raw.count), 9) }
        precondition(status == Z_OK, "zlib compress2 failed (\(status))")
        return Data(out.prefix(Int(length)))
    }

    private static func inflate(_ compressed: [UInt8], expected: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: expected)
        var length = uLongf(expected)
        let status = compressed.withUnsafeBufferPointer { uncompress(&out, &length, $0.baseAddress, uLong(compressed.count)) }
        guard status == Z_OK, Int(length) == expected else {
            throw DecodeError(description: "image data does not inflate to \(expected) bytes (zlib status \(status))")
        }
        return out
    }
}

private extension Data {
    mutating func appendBigEndian(_ value: UInt32) {
        append(contentsOf: [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)])
    }
}

private extension Array where Element == UInt8 {
    func readBigEndian(at offset: Int) -> UInt32 {
        UInt32(self[offset]) << 24 | UInt32(self[offset + 1]) << 16 | UInt32(self[offset + 2]) << 8 | UInt32(self[offset + 3])
    }
}
