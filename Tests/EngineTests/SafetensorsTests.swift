import XCTest
@testable import Engine

final class SafetensorsTests: XCTestCase {
    private func temporaryURL() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID()).safetensors")
    }

    func testFloat32RoundTripIsExactWithMetadata() throws {
        let a = randomTensor([3, 4], seed: 1, dtype: .float32), b = randomTensor([5], seed: 2, dtype: .float32)
        let url = temporaryURL()
        try Safetensors.write(["a": a, "b.weight": b], to: url, metadata: ["format": "pt"])
        let (tensors, metadata) = try Safetensors.read(url)
        XCTAssertEqual(tensors["a"]?.floats, a.floats)
        XCTAssertEqual(tensors["a"]?.shape, [3, 4])
        XCTAssertEqual(tensors["b.weight"]?.floats, b.floats)
        XCTAssertEqual(metadata["format"], "pt")
        // The header is padded so data starts 8-byte aligned.
        let data = try Data(contentsOf: url)
        XCTAssertEqual(Int(data[0]) % 8, 0)
    }

    func testFloat16RoundTripWithinHalfPrecision() throws {
        let a = randomTensor([100], seed: 3, dtype: .float32)
        let url = temporaryURL()
        try Safetensors.write(["a": a], to: url, as: .f16)
        XCTAssertEqual(try Data(contentsOf: url).count % 2, 0)
        let back = try Safetensors.read(url).tensors["a"]!
        for (x, y) in zip(a.floats, back.floats) { XCTAssertEqual(x, y, accuracy: Swift.abs(x) * 1e-3 + 1e-4) }
    }

    /// A hand-built BF16 file: 1.0 is 0x3F80, −2.0 is 0xC000.
    func testReadsBFloat16() throws {
        let header = #"{"x":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#.data(using: .utf8)!
        var data = Data()
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(header)
        data.append(contentsOf: [0x80, 0x3F, 0x00, 0xC0])
        XCTAssertEqual(try Safetensors.parse(data).tensors["x"]?.values, [1, -2])
    }

    func testCorruptFilesAreClearErrorsNamingTheTensor() throws {
        let url = temporaryURL()
        try Safetensors.write(["layer.weight": Tensor(repeating: 1, shape: [4, 4])], to: url)
        let good = try Data(contentsOf: url)
        // Truncated data.
        XCTAssertThrowsError(try Safetensors.parse(good.prefix(good.count - 5))) {
            XCTAssertTrue("\($0)".contains("layer.weight"), "\($0)")
        }
        // Shorter than a header length.
        XCTAssertThrowsError(try Safetensors.parse(Data([1, 2, 3])))
        // A header length larger than the file.
        var lying = good
        lying[0] = 0xFF; lying[1] = 0xFF
        XCTAssertThrowsError(try Safetensors.parse(lying))
        // Offsets that disagree with the shape.
        func file(_ json: String, dataBytes: Int) -> Data {
            let header = json.data(using: .utf8)!
            var d = Data()
            withUnsafeBytes(of: UInt64(header.count).littleEndian) { d.append(contentsOf: $0) }
            d.append(header)
            d.append(Data(count: dataBytes))
            return d
        }
        XCTAssertThrowsError(try Safetensors.parse(file(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, dataBytes: 8))) {
            XCTAssertTrue("\($0)".contains("'w'"), "\($0)")
        }
        XCTAssertThrowsError(try Safetensors.parse(file(#"{"w":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}"#, dataBytes: 2))) {
            XCTAssertTrue("\($0)".contains("I8"), "\($0)")
        }
        XCTAssertThrowsError(try Safetensors.parse(file("not json", dataBytes: 0)))
        XCTAssertThrowsError(try Safetensors.read(URL(fileURLWithPath: "/nonexistent/file.safetensors")))
        // Hostile headers: a shape whose element count overflows Int, offsets that overflow, two
        // tensors over the same bytes, a name that is not UTF-8 — each an error, never a trap.
        let overflowing = #"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#
        XCTAssertThrowsError(try Safetensors.parse(file(overflowing, dataBytes: 16))) {
            XCTAssertTrue("\($0)".contains("more elements than"), "\($0)")
        }
        XCTAssertThrowsError(try Safetensors.parse(file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[9223372036854775800,9223372036854775807]}}"#, dataBytes: 8)))
        let overlapping = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        XCTAssertThrowsError(try Safetensors.parse(file(overlapping, dataBytes: 12))) {
            XCTAssertTrue("\($0)".contains("overlap"), "\($0)")
        }
        var notUTF8 = file(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, dataBytes: 4)
        notUTF8[10] = 0xFF
        XCTAssertThrowsError(try Safetensors.parse(notUTF8))
        // Empty tensors may share an offset.
        let empty = #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        XCTAssertEqual(try Safetensors.parse(file(empty, dataBytes: 4)).tensors["a"]?.shape, [0])
    }

    func testRefusesToSaveNaN() throws {
        XCTAssertThrowsError(try Safetensors.write(["bad": try Tensor([.nan], shape: [1])], to: temporaryURL()))
    }
}
