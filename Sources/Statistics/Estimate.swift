// Means with standard errors clustered by prompt, and paired differences of two models.

/// A mean over images and its standard error, clustered by prompt: the images of one prompt
/// are correlated (a prompt the model cannot draw fails every time), so they are not n
/// independent draws. With residuals e_i = x_i − x̄ summed per prompt g into S_g, over G
/// prompts and n images (the cluster-robust variance of a mean, with the G/(G − 1) small-sample
/// factor):
///
///     SE² = G / (G − 1) · Σ_g S_g² / n²
///
/// With equal images per prompt this is the standard error of the G per-prompt means; with
/// one image per prompt, the usual s/√n.
public struct Estimate: Codable, Sendable, Equatable {
    public var mean: Double
    public var standardError: Double
    public var count: Int
    /// The number of prompts the images came from.
    public var clusters: Int

    /// The mean of `values` and its standard error clustered by `clusters` (sample i's prompt);
    /// every value its own cluster when `clusters` is nil.
    public init(_ values: [Double], clusters: [Int]? = nil) {
        precondition(clusters == nil || clusters!.count == values.count, "\(values.count) values for \(clusters!.count) cluster labels")
        count = values.count
        let average = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
        mean = average
        let labels = clusters ?? Array(values.indices)
        var sums: [Int: Double] = [:]
        for (value, label) in zip(values, labels) { sums[label, default: 0] += value - average }
        self.clusters = sums.count
        let g = Double(sums.count), n = Double(values.count)
        // Summed in label order: a dictionary's order changes from process to process, and the last
        // bit of the error with it.
        let squares = sums.keys.sorted().reduce(0.0) { $0 + sums[$1]! * sums[$1]! }
        standardError = values.isEmpty ? .nan : sums.count > 1 ? (g / (g - 1) * squares / (n * n)).squareRoot() : 0
    }
}

extension Estimate {
    /// Model a minus model b on the same images' prompts and seeds: the mean per-image difference
    /// with its standard error clustered by prompt. Pairing removes what the two share (the
    /// prompt's difficulty, the noise's layout); clustering keeps a prompt's images from counting
    /// as independent evidence.
    public static func paired(_ a: [Double], _ b: [Double], clusters: [Int]) -> Estimate {
        precondition(a.count == b.count, "\(a.count) scores paired with \(b.count)")
        return Estimate(zip(a, b).map { $0 - $1 }, clusters: clusters)
    }
}
