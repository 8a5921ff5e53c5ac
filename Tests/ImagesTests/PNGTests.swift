import Foundation
import XCTest
@testable import Images

final class PNGTests: XCTestCase {
    private func sample(channels: Int) -> RGBImage {
        RGBImage(width: 7, height: 5, channels: channels, pixels: (0..<(35 * channels)).map { UInt8(($0 * 37 + 11) % 256) })
    }

    func testRoundTripsGrayRGBAndRGBA() throws {
        for channels in [1, 3, 4] {
            let image = sample(channels: channels)
            XCTAssertEqual(try PNG.decode(PNG.encode(image)), image)
        }
    }

    /// An independent decoder (Python's zlib and struct, no PIL) reads our files byte-exactly.
    func testPythonDecodesOurFilesByteExactly() throws {
        let image = sample(channels: 3)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("png-\(UUID()).png")
        try PNG.write(image, to: url)
        let script = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read()
        assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
        pos, idat, ihdr = 8, b'', None
        while pos < len(data):
            length, kind = struct.unpack('>I4s', data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            assert zlib.crc32(kind + body) == struct.unpack('>I', data[pos + 8 + length:pos + 12 + length])[0]
            if kind == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)
            if kind == b'IDAT': idat += body
            pos += 12 + length
        w, h = ihdr[0], ihdr[1]
        raw = zlib.decompress(idat)
        rows = [raw[y * (w * 3 + 1):(y + 1) * (w * 3 + 1)] for y in range(h)]
        assert all(r[0] == 0 for r in rows)
        sys.stdout.write(b''.join(r[1:] for r in rows).hex())
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, url.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(output, image.pixels.map { String(format: "%02x", $0) }.joined())
    }

    /// Files with every filter type, made by Python's zlib, decode to the same pixels.
    func testDecodesAllFilterTypes() throws {
        let (w, h) = (4, 3)
        let pixels: [UInt8] = (0..<(w * h * 3)).map { UInt8(($0 * 53) % 251) }
        var raw: [UInt8] = []
        for y in 0..<h {
            let filter = UInt8(y % 5 == 0 ? 4 : y % 5)   // rows use Paeth, Sub, Up
            raw.append(filter)
            for x in 0..<(w * 3) {
                let a = x >= 3 ? Int(pixels[y * w * 3 + x - 3]) : 0
                let b = y > 0 ? Int(pixels[(y - 1) * w * 3 + x]) : 0
                let c = x >= 3 && y > 0 ? Int(pixels[(y - 1) * w * 3 + x - 3]) : 0
                let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                let predictor = [0, a, b, (a + b) / 2, pa <= pb && pa <= pc ? a : (pb <= pc ? b : c)][Int(filter)]
                raw.append(UInt8((Int(pixels[y * w * 3 + x]) - predictor + 256) % 256))
            }
        }
        // Encode the filtered rows by hand around our own chunk writer: swap the IDAT of a file.
        var file = [UInt8](PNG.encode(RGBImage(width: w, height: h, channels: 3, pixels: pixels)))
        XCTAssertEqual(try PNG.decode(Data(file)).pixels, pixels)
        let compressed = try XCTUnwrap(zlibCompress(raw))
        // Rebuild: signature + IHDR chunk (33 bytes) + new IDAT + IEND.
        let head = Array(file[0..<33]), tail = Array(file[(file.count - 12)...])
        var idat: [UInt8] = []
        idat += withUnsafeBytes(of: UInt32(compressed.count).bigEndian, Array.init)
        let body = Array("IDAT".utf8) + compressed
        idat += body
        idat += withUnsafeBytes(of: crc(body).bigEndian, Array.init)
        file = head + idat + tail
        XCTAssertEqual(try PNG.decode(Data(file)).pixels, pixels)
    }

    func testCorruptFilesAreClearErrors() {
        let good = [UInt8](PNG.encode(sample(channels: 3)))
        XCTAssertThrowsError(try PNG.decode(Data([1, 2, 3]))) { XCTAssertTrue("\($0)".contains("not a PNG")) }
        XCTAssertThrowsError(try PNG.decode(Data(good.prefix(good.count - 20))))
        var flipped = good
        flipped[40] ^= 0xFF
        XCTAssertThrowsError(try PNG.decode(Data(flipped))) { XCTAssertTrue("\($0)".contains("CRC")) }
    }

    /// A header that claims 30,000 × 30,000 pixels (3.6 GB of RGBA) is refused before anything
    /// is allocated for it, with a valid CRC, so the size check is what stops it.
    func testHugeDeclaredSizesAreRefused() throws {
        var good = [UInt8](PNG.encode(sample(channels: 3)))
        // IHDR's body starts at byte 16 (8 signature + 4 length + 4 type): width, then height.
        for (offset, value) in [(16, 30_000), (20, 30_000)] {
            for b in 0..<4 { good[offset + b] = UInt8(truncatingIfNeeded: value >> (8 * (3 - b))) }
        }
        let crc = PNG.crc(Array(good[12..<29]))
        for b in 0..<4 { good[29 + b] = UInt8(truncatingIfNeeded: crc >> (8 * (3 - UInt32(b)))) }
        XCTAssertThrowsError(try PNG.decode(Data(good))) { XCTAssertTrue("\($0)".contains("30000×30000"), "\($0)") }
    }

    func testGridTilesImages() {
        let a = RGBImage(width: 2, height: 2, fill: [255, 0, 0]), b = RGBImage(width: 2, height: 2, fill: [0, 0, 255])
        let grid = imageGrid([a, b, a], columns: 2, gap: 1, background: 0)
        XCTAssertEqual(grid.width, 7)
        XCTAssertEqual(grid.height, 7)
        XCTAssertEqual(grid[1, 1], [255, 0, 0])
        XCTAssertEqual(grid[4, 1], [0, 0, 255])
        XCTAssertEqual(grid[0, 0], [0, 0, 0])
    }
}

import CZlib
private func zlibCompress(_ raw: [UInt8]) -> [UInt8]? {
    var length = compressBound(uLong(raw.count))
    var out = [UInt8](repeating: 0, count: Int(length))
    guard compress2(&out, &length, raw, uLong(raw.count), 6) == Z_OK else { return nil }
    return Array(out.prefix(Int(length)))
}
private func crc(_ bytes: [UInt8]) -> UInt32 { UInt32(crc32(0, bytes, uInt(bytes.count))) }
