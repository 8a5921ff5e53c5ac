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
