import Foundation

/// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}`,
/// then the raw little-endian data, offsets relative to the end of the header.
/// Written here: F32 and F16. Read: F32, F16, BF16 (and F64), converted to the requested dtype.
public enum Safetensors {
    /// The element type a file stores.
    public enum StoredType: String, Sendable, CaseIterable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
        var size: Int { switch self { case .f32: 4; case .f16, .bf16: 2; case .f64: 8 } }
    }

    /// Writes tensors by name (sorted, so the same tensors give the same bytes) with optional
    /// string metadata. Non-finite values are refused: a checkpoint must not carry a NaN.
    public static func write(_ tensors: [String: Tensor], to url: URL, as stored: StoredType = .f32,
                             metadata: [String: String] = [:]) throws {
        guard stored == .f32 || stored == .f16 else {
            throw EngineError.checkpoint("writing \(stored.rawValue) is not supported (use F32 or F16)")
        }
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            guard t.isFinite else { throw EngineError.nonFinite(what: "tensor '\(name)' being saved") }
            header[name] = ["dtype": stored.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.count * stored.size]]
            offset += t.count * stored.size
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for name in names {
            let values = tensors[name]!.floats
            switch stored {
            case .f32:
                values.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: values.count * 4)) }
            default:
                var halves = values.map { Float16($0).bitPattern.littleEndian }
                halves.withUnsafeMutableBytes { data.append(contentsOf: $0) }
            }
        }
        try data.write(to: url, options: .atomic)
    }

    /// Reads every tensor of a file (as `dtype`) and its metadata. A truncated file, a header that
    /// lies about offsets or sizes, or an unknown dtype is an error naming the tensor.
    public static func read(_ url: URL, dtype: DType = .float32) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw EngineError.checkpoint("cannot read \(url.path): \(error.localizedDescription)")
        }
        return try parse(data, dtype: dtype, source: url.lastPathComponent)
    }

    /// Parses safetensors bytes; `source` names the file in errors.
    public static func parse(_ data: Data, dtype: DType = .float32, source: String = "data") throws
        -> (tensors: [String: Tensor], metadata: [String: String]) {
        func fail(_ message: String) -> EngineError { .checkpoint("\(source): \(message)") }
        guard data.count >= 8 else { throw fail("file of \(data.count) bytes is too short for a safetensors header") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw fail("header claims \(headerLength) bytes but the file has \(data.count - 8) after the length")
        }
        let headerData = data.subdata(in: 8..<(8 + Int(headerLength)))
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        let dataStart = 8 + Int(headerLength), dataLength = data.count - dataStart
        var metadata: [String: String] = [:]
        var tensors: [String: Tensor] = [:]
        var spans: [(begin: Int, end: Int, name: String)] = []
        // In name order, so that a damaged file always reports the same tensor first.
        for (name, entry) in header.sorted(by: { $0.key < $1.key }) {
            if name == "__metadata__" {
                metadata = (entry as? [String: String]) ?? [:]
                continue
            }
            guard let info = entry as? [String: Any], let typeName = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail("tensor '\(name)' has a malformed header entry")
            }
            guard let stored = StoredType(rawValue: typeName) else {
                throw fail("tensor '\(name)' has unsupported dtype \(typeName) (supported: F32, F16, BF16, F64)")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor '\(name)' has negative shape \(shape)") }
            // A hostile header can declare a shape whose product overflows: refuse it instead of trapping.
            var count = 1
            for size in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: size)
                guard !overflow, product <= dataLength else {
                    throw fail("tensor '\(name)' of shape \(shape) has more elements than the file's \(dataLength) data bytes can hold")
                }
                count = product
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, end >= begin, end <= dataLength else {
                throw fail("tensor '\(name)' offsets [\(begin), \(end)] lie outside the \(dataLength) data bytes (truncated file?)")
            }
            guard end - begin == count * stored.size else {
                throw fail("tensor '\(name)' of shape \(shape) and dtype \(typeName) needs \(count * stored.size) bytes, header gives \(end - begin)")
            }
            spans.append((begin, end, name))
            let tensor = Tensor(zeros: shape, dtype: dtype)
            data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                let base = raw.baseAddress! + dataStart + begin
                for i in 0..<count {
                    let value: Double
                    switch stored {
                    case .f32: value = Double(Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))))
                    case .f64: value = Double(bitPattern: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
                    case .f16: value = Double(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
                    case .bf16:
                        // bfloat16 is the top half of a float32.
                        let bits = UInt32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16
                        value = Double(Float(bitPattern: bits))
                    }
                    switch dtype {
                    case .float32: tensor.storage.pointer(Float.self)[i] = Float(value)
                    case .float64: tensor.storage.pointer(Double.self)[i] = value
                    }
                }
            }
            tensors[name] = tensor
        }
        let ordered = spans.filter { $0.end > $0.begin }.sorted { $0.begin < $1.begin }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.begin < a.end {
            throw fail("tensors '\(a.name)' and '\(b.name)' overlap in the data (bytes \(b.begin)..<\(min(a.end, b.end)))")
        }
        return (tensors, metadata)
    }
}
