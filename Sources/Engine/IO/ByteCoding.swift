import Foundation

/// Values appended as little-endian bytes, for sending between processes (`ByteReader` reads
/// them back in the same order): integers as 64 bits, floats as 32, byte strings and UTF-8 text
/// with their length first.
public struct ByteWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func put(_ value: Int) { withUnsafeBytes(of: Int64(value).littleEndian) { bytes += $0 } }

    public mutating func put(_ values: [Float]) {
        put(values.count)
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 } }
    }

    public mutating func put(_ values: [Double]) {
        put(values.count)
        for value in values { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 } }
    }

    public mutating func put(bytes more: [UInt8]) {
        put(more.count)
        bytes += more
    }

    public mutating func put(_ text: String) { put(bytes: Array(text.utf8)) }
}

/// Reads what a `ByteWriter` wrote; every read past the end, or of a length that does not fit,
/// fails with `source` named.
public struct ByteReader {
    let bytes: [UInt8]
    public private(set) var position = 0
    /// What the bytes are, for errors.
    public let source: String

    public init(_ bytes: [UInt8], source: String) {
        self.bytes = bytes
        self.source = source
    }

    public var isAtEnd: Bool { position == bytes.count }

    private mutating func word(_ width: Int) throws -> UInt64 {
        guard position + width <= bytes.count else { throw EngineError.invalidArgument(op: source, "cut short at byte \(position)") }
        var value: UInt64 = 0
        for k in 0..<width { value |= UInt64(bytes[position + k]) << (8 * UInt64(k)) }
        position += width
        return value
    }

    public mutating func int() throws -> Int { Int(Int64(bitPattern: try word(8))) }

    private mutating func count(of width: Int) throws -> Int {
        let n = try int()
        guard n >= 0, n <= (bytes.count - position) / max(width, 1) else {
            throw EngineError.invalidArgument(op: source, "a length of \(n) at byte \(position) does not fit")
        }
        return n
    }

    public mutating func floats() throws -> [Float] {
        try (0..<count(of: 4)).map { _ in Float(bitPattern: UInt32(try word(4))) }
    }

    public mutating func doubles() throws -> [Double] {
        try (0..<count(of: 8)).map { _ in Double(bitPattern: try word(8)) }
    }

    public mutating func byteString() throws -> [UInt8] {
        let n = try count(of: 1)
        defer { position += n }
        return Array(bytes[position ..< position + n])
    }

    public mutating func string() throws -> String {
        let raw = try byteString()
        guard let text = String(bytes: raw, encoding: .utf8) else { throw EngineError.invalidArgument(op: source, "text that is not UTF-8") }
        return text
    }
}
