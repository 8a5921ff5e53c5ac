import Foundation

/// Where time goes, by op: with profiling on, every recorded op's forward is charged the time since
/// the previous op ended (so glue between ops, and ops that record nothing, are charged to the op
/// after them), and every backward node the time of its backward closure and of accumulating its
/// input gradients. For `bench unet --profile`; off by default, and then
/// costs one branch per op.
public enum OpProfiler {
    /// Seconds and calls of one op in one direction.
    public struct Entry: Codable, Sendable {
        public var op: String
        public var pass: String
        public var seconds: Double
        public var calls: Int
    }

    nonisolated(unsafe) static var enabled = false
    /// Set while `backward()` runs: ops called inside backward closures belong to the node's time.
    nonisolated(unsafe) static var inBackward = false
    nonisolated(unsafe) static var stamp: UInt64 = 0
    nonisolated(unsafe) static var table: [String: (seconds: Double, calls: Int)] = [:]

    /// Runs `body` with profiling on; returns its entries, largest first.
    public static func profile(_ body: () throws -> Void) rethrows -> [Entry] {
        table = [:]
        enabled = true
        stamp = DispatchTime.now().uptimeNanoseconds
        defer { enabled = false }
        try body()
        return table.map { key, value in
            let parts = key.split(separator: "|")
            return Entry(op: String(parts[0]), pass: String(parts[1]), seconds: value.seconds, calls: value.calls)
        }.sorted { $0.seconds > $1.seconds }
    }

    @inline(__always)
    static func charge(_ op: String, pass: String, since start: UInt64) {
        let now = DispatchTime.now().uptimeNanoseconds
        let key = op + "|" + pass
        let seconds = Double(now - start) / 1e9
        table[key, default: (0, 0)].seconds += seconds
        table[key, default: (0, 0)].calls += 1
        stamp = now
    }
}
