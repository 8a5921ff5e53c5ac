import Foundation

// Reward overoptimization curves (Gao et al. 2023, "Scaling Laws for Reward Model
// Overoptimization"). With d = √KL(π ‖ π_base) the distance from the base policy, the gold
// reward's gain over the base follows
//
//     best-of-N:  gain(d) = d·(α − β·d)
//     RL:         gain(d) = d·(α − β·log d)
//
// fitted here by least squares without an intercept (both forms are 0 at d = 0). The KL of
// best-of-N selection from N independent samples is bounded (Beirami et al. 2024, tight without
// ties in the selecting reward):
//
//     KL_bon ≤ log N − (N − 1)/N

/// log N − (N − 1)/N: the upper bound on the KL from the base policy of best-of-N selection
/// (equal to it when the selecting reward has no ties).
public func bestOfNKLBound(_ n: Int) -> Double {
    precondition(n >= 1, "best-of-N needs N ≥ 1, got \(n)")
    return Foundation.log(Double(n)) - Double(n - 1) / Double(n)
}

/// A fitted overoptimization curve: gain(d) = d·(α − β·f(d)) with f(d) = d (best-of-N) or
/// log d (RL), and the share of the gains' variance about zero it explains.
public struct OveroptimizationFit: Codable, Equatable, Sendable {
    public enum Form: String, Codable, Sendable { case bestOfN, reinforcementLearning }
    public var form: Form
    public var alpha: Double
    public var beta: Double
    /// 1 − Σ residual² / Σ (gain − mean gain)²; nil with fewer than three points.
    public var rSquared: Double?

    public init(form: Form, alpha: Double, beta: Double, rSquared: Double?) {
        self.form = form
        self.alpha = alpha
        self.beta = beta
        self.rSquared = rSquared
    }

    /// The curve at distance d.
    public func gain(at d: Double) -> Double {
        switch form {
        case .bestOfN: return d * (alpha - beta * d)
        case .reinforcementLearning: return d > 0 ? d * (alpha - beta * Foundation.log(d)) : 0
        }
    }

    /// Least squares of gain = α·d − β·d·f(d) over points with d > 0 (at least two); nil when the
    /// two columns are collinear.
    public static func fit(_ form: Form, distances: [Double], gains: [Double]) -> OveroptimizationFit? {
        precondition(distances.count == gains.count, "\(distances.count) distances for \(gains.count) gains")
        let points = zip(distances, gains).filter { $0.0 > 0 && $0.0.isFinite && $0.1.isFinite }
        guard points.count >= 2 else { return nil }
        // Columns u = d and v = −d·f(d); normal equations [uu uv; uv vv]·[α β] = [ug vg].
        var uu = 0.0, uv = 0.0, vv = 0.0, ug = 0.0, vg = 0.0
        for (d, g) in points {
            let u = d, v = -d * (form == .bestOfN ? d : Foundation.log(d))
            uu += u * u; uv += u * v; vv += v * v; ug += u * g; vg += v * g
        }
        let determinant = uu * vv - uv * uv
        guard Swift.abs(determinant) > 1e-12 * Swift.max(uu * vv, 1e-300) else { return nil }
        var fit = OveroptimizationFit(form: form, alpha: (ug * vv - vg * uv) / determinant, beta: (uu * vg - uv * ug) / determinant,
                                      rSquared: nil)
        if points.count >= 3 {
            let mean = points.map(\.1).reduce(0, +) / Double(points.count)
            let total = points.reduce(0) { $0 + ($1.1 - mean) * ($1.1 - mean) }
            let residual = points.reduce(0) { $0 + ($1.1 - fit.gain(at: $1.0)) * ($1.1 - fit.gain(at: $1.0)) }
            fit.rSquared = total > 0 ? 1 - residual / total : nil
        }
        return fit
    }
}
