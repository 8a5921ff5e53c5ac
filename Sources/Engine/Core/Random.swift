import Foundation

/// A seeded pseudo-random generator (xoshiro256**, seeded through SplitMix64). The same seed gives
/// the same stream on every machine; draws happen on the calling thread only, so results do not
/// depend on the thread count.
public struct RandomGenerator: RandomNumberGenerator, Sendable, Codable, Equatable {
    private var s0, s1, s2, s3: UInt64
    /// A Gaussian drawn by Box–Muller whose pair has not been used yet.
    private var spareNormal: Double?

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Standard normal N(0, 1).
    public mutating func normal() -> Double {
        if let spare = spareNormal { spareNormal = nil; return spare }
        // Box–Muller; 1 - u keeps the logarithm's argument in (0, 1].
        let u1 = 1 - uniform(), u2 = uniform()
        let radius = (-2 * Foundation.log(u1)).squareRoot()
        let angle = 2 * Double.pi * u2
        spareNormal = radius * Foundation.sin(angle)
        return radius * Foundation.cos(angle)
    }

    /// An independent generator derived from this one (for a sub-task that must not shift the
    /// parent stream by a data-dependent number of draws).
    public mutating func split() -> RandomGenerator {
        RandomGenerator(seed: next())
    }
}

extension Tensor {
    /// Values drawn from N(mean, std²).
    public static func randn(_ shape: [Int], mean: Double = 0, std: Double = 1, dtype: DType = .float32,
                             using rng: inout RandomGenerator) -> Tensor {
        let out = Tensor(zeros: shape, dtype: dtype)
        switch dtype {
        case .float32:
            let p = out.storage.pointer(Float.self)
            for i in 0..<out.count { p[i] = Float(mean + std * rng.normal()) }
        case .float64:
            let p = out.storage.pointer(Double.self)
            for i in 0..<out.count { p[i] = mean + std * rng.normal() }
        }
        return out
    }

    /// Values drawn uniformly from [low, high).
    public static func uniform(_ shape: [Int], low: Double = 0, high: Double = 1, dtype: DType = .float32,
                               using rng: inout RandomGenerator) -> Tensor {
        let out = Tensor(zeros: shape, dtype: dtype)
        switch dtype {
        case .float32:
            let p = out.storage.pointer(Float.self)
            for i in 0..<out.count { p[i] = Float(low + (high - low) * rng.uniform()) }
        case .float64:
            let p = out.storage.pointer(Double.self)
            for i in 0..<out.count { p[i] = low + (high - low) * rng.uniform() }
        }
        return out
    }
}
