import Engine
import Foundation

/// How the forward-process variances β_t are laid out over the training steps.
public enum BetaSchedule: String, Codable, Sendable {
    /// β linear from `betaStart` to `betaEnd`.
    case linear
    /// √β linear (Stable Diffusion's "scaled_linear").
    case scaledLinear
    /// Nichol & Dhariwal's cosine schedule for ᾱ, β capped at 0.999.
    case cosine
}

/// What the denoiser predicts.
public enum PredictionType: String, Codable, Sendable {
    /// The added noise ε.
    case epsilon
    /// The velocity v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho).
    case vPrediction
}

/// The DDPM forward process, computed once from its settings.
///
/// Notation (Ho et al. 2020; code name — symbol):
///     betas           β_t
///     alphas          α_t = 1 − β_t
///     alphasCumprod   ᾱ_t = Π_{s ≤ t} α_s
///     q(x_t | x_0) = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I)
public struct NoiseSchedule: Sendable, Codable, Equatable {
    /// Settings, with Stable Diffusion's defaults.
    public struct Settings: Codable, Equatable, Sendable {
        public var trainSteps = 1000
        public var betaStart = 0.00085
        public var betaEnd = 0.012
        public var schedule = BetaSchedule.scaledLinear
        public var prediction = PredictionType.epsilon

        public init() {}
    }

    public let settings: Settings
    public let betas: [Double]
    public let alphas: [Double]
    public let alphasCumprod: [Double]

    public init(_ settings: Settings = Settings()) {
        self.settings = settings
        let n = settings.trainSteps
        switch settings.schedule {
        case .linear:
            betas = (0..<n).map { settings.betaStart + (settings.betaEnd - settings.betaStart) * Double($0) / Double(max(n - 1, 1)) }
        case .scaledLinear:
            let (a, b) = (settings.betaStart.squareRoot(), settings.betaEnd.squareRoot())
            betas = (0..<n).map { let r = a + (b - a) * Double($0) / Double(max(n - 1, 1)); return r * r }
        case .cosine:
            func alphaBar(_ t: Double) -> Double { let c = cos((t + 0.008) / 1.008 * Double.pi / 2); return c * c }
            betas = (0..<n).map { min(1 - alphaBar(Double($0 + 1) / Double(n)) / alphaBar(Double($0) / Double(n)), 0.999) }
        }
        alphas = betas.map { 1 - $0 }
        var product = 1.0
        alphasCumprod = alphas.map { product *= $0; return product }
    }

    public var trainSteps: Int { settings.trainSteps }

    /// √ᾱ_t and √(1 − ᾱ_t) per sample, shaped [B, 1, 1, 1] to scale a batch of latents.
    func coefficients(_ timesteps: [Int], rank: Int, dtype: DType) throws -> (signal: Tensor, noise: Tensor) {
        let shape = [timesteps.count] + [Int](repeating: 1, count: rank - 1)
        return (try Tensor(timesteps.map { alphasCumprod[$0].squareRoot() }, shape: shape, dtype: dtype),
                try Tensor(timesteps.map { (1 - alphasCumprod[$0]).squareRoot() }, shape: shape, dtype: dtype))
    }

    /// x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, one timestep per sample of the batch.
    public func addNoise(_ x0: Tensor, noise: Tensor, timesteps: [Int]) throws -> Tensor {
        try validate(timesteps, batch: x0.shape.first ?? 0)
        let (signal, noiseScale) = try coefficients(timesteps, rank: x0.rank, dtype: x0.dtype)
        return try x0 * signal + noise * noiseScale
    }

    /// The training target for the model at these timesteps: ε, or v = √ᾱ·ε − √(1−ᾱ)·x₀.
    public func target(x0: Tensor, noise: Tensor, timesteps: [Int]) throws -> Tensor {
        switch settings.prediction {
        case .epsilon: return noise
        case .vPrediction:
            try validate(timesteps, batch: x0.shape.first ?? 0)
            let (signal, noiseScale) = try coefficients(timesteps, rank: x0.rank, dtype: x0.dtype)
            return try noise * signal - x0 * noiseScale
        }
    }

    private func validate(_ timesteps: [Int], batch: Int) throws {
        guard timesteps.count == batch else {
            throw EngineError.shapeMismatch(op: "NoiseSchedule", "\(timesteps.count) timesteps for a batch of \(batch)")
        }
        guard timesteps.allSatisfy({ $0 >= 0 && $0 < trainSteps }) else {
            throw EngineError.invalidArgument(op: "NoiseSchedule", "timestep outside 0..<\(trainSteps)")
        }
    }
}
