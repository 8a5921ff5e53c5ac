import Foundation

/// Wall-clock timing for benchmarks: warm-up runs, then repeats until `minimumSeconds` have passed
/// (at least `minimumRuns`), and reports the median run, which the other core's noise moves least.
public func medianSeconds(minimumSeconds: Double = 0.4, minimumRuns: Int = 5, warmup: Int = 2,
                          _ body: () throws -> Void) rethrows -> Double {
    for _ in 0..<warmup { try body() }
    var times: [Double] = []
    let start = DispatchTime.now().uptimeNanoseconds
    while times.count < minimumRuns || Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < minimumSeconds {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
    times.sort()
    return times[times.count / 2]
}
