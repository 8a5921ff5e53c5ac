import CHDF5
import Foundation

/// A thin, throwing layer over the HDF5 1.10 C API: handles that close themselves, typed errors
/// in one line, and the few dataset shapes the run log uses.

/// An HDF5 failure, naming what was being done and the file.
public struct HDF5Error: Error, CustomStringConvertible {
    public let description: String
}

/// An open HDF5 identifier, closed when released.
final class Handle {
    let id: hid_t
    private let closer: (hid_t) -> herr_t

    init(_ id: hid_t, _ what: @autoclosure () -> String, closer: @escaping (hid_t) -> herr_t) throws {
        guard id >= 0 else { throw HDF5Error(description: what()) }
        self.id = id
        self.closer = closer
    }

    deinit { _ = closer(id) }
}

enum H5 {
    /// Turns off HDF5's printing of error stacks (once per process).
    static let silenced: Bool = { chdf5_silence_errors(); return true }()

    /// A file-access property list that writes the latest file format (what SWMR needs).
    static func latestFormatAccess() throws -> Handle {
        let access = try fileAccess()
        try check(H5Pset_libver_bounds(access.id, chdf5_libver_latest(), chdf5_libver_latest()), "cannot select the latest format")
        return access
    }

    /// File access for reading a log in SWMR mode with at most `attempts` reads of a metadata block
    /// whose checksum fails. The library's default under SWMR is 100, with a sleep doubling between
    /// attempts: right for a block a live writer is rewriting, but a damaged file (a block that
    /// never verifies) then stalls a reader for minutes; a few attempts cover a live writer's flush.
    static func readAccess(attempts: UInt32 = readAttempts) throws -> Handle {
        let access = try fileAccess()
        try check(H5Pset_metadata_read_attempts(access.id, attempts), "cannot set the metadata read attempts")
        return access
    }

    /// A new, default file-access property list.
    private static func fileAccess() throws -> Handle {
        try Handle(H5Pcreate(chdf5_p_file_access()), "cannot create file properties", closer: H5Pclose)
    }

    /// Metadata read attempts of `readAccess`.
    static let readAttempts: UInt32 = 16

    static func check(_ status: herr_t, _ what: @autoclosure () -> String) throws {
        guard status >= 0 else { throw HDF5Error(description: what()) }
    }

    static func group(_ location: hid_t, _ name: String, create: Bool) throws -> Handle {
        let id = create ? H5Gcreate2(location, name, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
            : H5Gopen2(location, name, chdf5_p_default())
        return try Handle(id, "cannot \(create ? "create" : "open") group \(name)", closer: H5Gclose)
    }

    /// A fixed-length UTF-8 string type of `width` bytes (null-padded).
    static func stringType(width: Int) throws -> Handle {
        let type = try Handle(H5Tcopy(chdf5_c_s1()), "cannot copy the string type", closer: H5Tclose)
        try check(H5Tset_size(type.id, max(width, 1)), "cannot size a string type")
        try check(H5Tset_cset(type.id, H5T_CSET_UTF8), "cannot set UTF-8")
        try check(H5Tset_strpad(type.id, H5T_STR_NULLPAD), "cannot set string padding")
        return type
    }

    /// `text` as exactly `width` bytes: UTF-8, cut at a character boundary, null-padded.
    static func fixedBytes(_ text: String, width: Int) -> [UInt8] {
        var bytes = [UInt8]()
        for character in text {
            let encoded = Array(String(character).utf8)
            if bytes.count + encoded.count > width { break }
            bytes += encoded
        }
        return bytes + [UInt8](repeating: 0, count: width - bytes.count)
    }

    /// Decodes null-padded fixed-width strings.
    static func strings(_ bytes: [UInt8], width: Int) -> [String] {
        stride(from: 0, to: bytes.count, by: max(width, 1)).map { start in
            let slice = bytes[start ..< min(start + width, bytes.count)]
            return String(decoding: slice.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    static func writeStringAttribute(_ object: hid_t, _ name: String, _ value: String) throws {
        let bytes = Array(value.utf8)
        let type = try stringType(width: bytes.count)
        let space = try Handle(H5Screate(H5S_SCALAR), "cannot create a scalar space", closer: H5Sclose)
        let attribute = try Handle(H5Acreate2(object, name, type.id, space.id, chdf5_p_default(), chdf5_p_default()),
                                   "cannot create attribute \(name)", closer: H5Aclose)
        let padded = bytes.isEmpty ? [0] : bytes
        try check(H5Awrite(attribute.id, type.id, padded), "cannot write attribute \(name)")
    }

    static func writeIntegerAttribute(_ object: hid_t, _ name: String, _ value: Int64) throws {
        let space = try Handle(H5Screate(H5S_SCALAR), "cannot create a scalar space", closer: H5Sclose)
        let attribute = try Handle(H5Acreate2(object, name, chdf5_native_int64(), space.id, chdf5_p_default(), chdf5_p_default()),
                                   "cannot create attribute \(name)", closer: H5Aclose)
        var v = value
        try check(H5Awrite(attribute.id, chdf5_native_int64(), &v), "cannot write attribute \(name)")
    }

    /// Reads a string (fixed-length) or integer attribute as text; nil when absent.
    static func readAttribute(_ object: hid_t, _ name: String) -> String? {
        guard H5Aexists(object, name) > 0,
              let attribute = try? Handle(H5Aopen(object, name, chdf5_p_default()), "", closer: H5Aclose),
              let type = try? Handle(H5Aget_type(attribute.id), "", closer: H5Tclose) else { return nil }
        switch H5Tget_class(type.id) {
        case H5T_STRING:
            guard H5Tis_variable_str(type.id) == 0 else { return nil }
            let size = H5Tget_size(type.id)
            var buffer = [UInt8](repeating: 0, count: size)
            guard H5Aread(attribute.id, type.id, &buffer) >= 0 else { return nil }
            return strings(buffer, width: size).first
        case H5T_INTEGER:
            var value: Int64 = 0
            guard H5Aread(attribute.id, chdf5_native_int64(), &value) >= 0 else { return nil }
            return String(value)
        default:
            return nil
        }
    }

    /// The path of an object ("/metrics").
    static func name(_ object: Handle) throws -> String {
        let length = H5Iget_name(object.id, nil, 0)
        guard length > 0 else { throw HDF5Error(description: "cannot read an object's name") }
        var buffer = [CChar](repeating: 0, count: Int(length) + 1)
        _ = H5Iget_name(object.id, &buffer, buffer.count)
        return String(cString: buffer)
    }

    /// Names of the links in a group, in name order.
    static func linkNames(_ group: hid_t) throws -> [String] {
        var info = H5G_info_t()
        try check(H5Gget_info(group, &info), "cannot list a group")
        return try (0..<info.nlinks).map { index in
            let length = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, chdf5_p_default())
            guard length >= 0 else { throw HDF5Error(description: "cannot read a link name") }
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            _ = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, chdf5_p_default())
            return String(cString: buffer)
        }
    }
}

/// An extendable dataset whose first dimension grows: [rows, trailing...].
final class ExtendableDataset {
    let handle: Handle
    let name: String
    let trailing: [hsize_t]
    let memoryType: hid_t
    let fileType: Handle?

    /// Creates the dataset with zero rows; `chunkRows` rows per chunk.
    init(in location: hid_t, name: String, trailing: [Int], memoryType: hid_t, fileType: Handle? = nil, chunkRows: Int) throws {
        self.name = name
        self.trailing = trailing.map { hsize_t($0) }
        self.memoryType = memoryType
        self.fileType = fileType
        let rank = Int32(1 + trailing.count)
        var dims = [hsize_t(0)] + self.trailing, maxDims = [chdf5_s_unlimited()] + self.trailing
        var chunk = [hsize_t(max(chunkRows, 1))] + self.trailing
        let space = try Handle(H5Screate_simple(rank, &dims, &maxDims), "cannot create the space of \(name)", closer: H5Sclose)
        let properties = try Handle(H5Pcreate(chdf5_p_dataset_create()), "cannot create properties", closer: H5Pclose)
        try H5.check(H5Pset_chunk(properties.id, rank, &chunk), "cannot chunk \(name)")
        handle = try Handle(H5Dcreate2(location, name, fileType?.id ?? memoryType, space.id, chdf5_p_default(), properties.id,
                                       chdf5_p_default()), "cannot create dataset \(name)", closer: H5Dclose)
    }

    /// Opens an existing dataset of the run log.
    init(opening location: hid_t, name: String, trailing: [Int], memoryType: hid_t, fileType: Handle? = nil) throws {
        self.name = name
        self.trailing = trailing.map { hsize_t($0) }
        self.memoryType = memoryType
        self.fileType = fileType
        handle = try Handle(H5Dopen2(location, name, chdf5_p_default()), "cannot open dataset \(name)", closer: H5Dclose)
    }

    /// Cuts the dataset back to its first `rows` rows.
    func truncate(to rows: Int) throws {
        var dims = [hsize_t(rows)] + trailing
        try H5.check(H5Dset_extent(handle.id, &dims), "cannot truncate \(name)")
    }

    /// Reads a one-dimensional int64 dataset.
    func readIntegers() throws -> [Int64] {
        let count = try rows()
        guard count > 0 else { return [] }
        var values = [Int64](repeating: 0, count: count)
        try H5.check(H5Dread(handle.id, chdf5_native_int64(), chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), &values),
                     "cannot read \(name)")
        return values
    }

    /// The number of rows.
    func rows() throws -> Int {
        let space = try Handle(H5Dget_space(handle.id), "cannot read the space of \(name)", closer: H5Sclose)
        var dims = [hsize_t](repeating: 0, count: 1 + trailing.count)
        guard H5Sget_simple_extent_dims(space.id, &dims, nil) >= 0 else { throw HDF5Error(description: "cannot read the size of \(name)") }
        return Int(dims[0])
    }

    /// Appends `rows` rows from `values` (rows · Π trailing elements, or bytes for strings).
    func append<T>(_ values: [T], rows: Int) throws {
        try values.withUnsafeBytes { try append(count: rows, $0.baseAddress!) }
    }

    /// Appends `count` rows from a buffer of count · Π trailing elements.
    func append(count: Int, _ buffer: UnsafeRawPointer) throws {
        guard count > 0 else { return }
        let start = try rows()
        var newDims = [hsize_t(start + count)] + trailing
        try H5.check(H5Dset_extent(handle.id, &newDims), "cannot extend \(name)")
        let fileSpace = try Handle(H5Dget_space(handle.id), "cannot read the space of \(name)", closer: H5Sclose)
        var offset = [hsize_t(start)] + trailing.map { _ in 0 }, extent = [hsize_t(count)] + trailing
        try H5.check(H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, &offset, nil, &extent, nil), "cannot select rows of \(name)")
        let memorySpace = try Handle(H5Screate_simple(Int32(extent.count), &extent, nil), "cannot create a memory space", closer: H5Sclose)
        try H5.check(H5Dwrite(handle.id, fileType?.id ?? memoryType, memorySpace.id, fileSpace.id, chdf5_p_default(), buffer),
                     "cannot write rows of \(name)")
    }
}
