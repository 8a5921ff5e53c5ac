import Foundation

/// Wall-clock timing for benchmarks: warm-up runs, then repeats until `minimumSeconds` have passed
/// (at least `minimumRuns`), and reports the fastest run. The second core here is shared and
/// noisy; the fastest run is the least disturbed one, and the ceiling is timed the same way.
public func bestSeconds(minimumSeconds: Double = 0.4, minimumRuns: Int = 5, warmup: Int = 2,
                          _ body: () throws -> Void) rethrows -> Double {
    for _ in 0..<warmup { try body() }
    var times: [Double] = []
    let start = DispatchTime.now().uptimeNanoseconds
    while times.count < minimumRuns || Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < minimumSeconds {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
    return times.min()!
}

/// The process's peak resident memory in bytes so far (Linux: VmHWM of /proc/self/status; nil
/// where that is not readable), so that benchmarks report what they needed beside their speed.
public func peakResidentBytes() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
    // "VmHWM:   123456 kB"
    let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
    guard fields.count >= 2, let kilobytes = Int(fields[1]) else { return nil }
    return kilobytes * 1024
}
