import Engine
import Foundation

/// What went wrong in a diffusion step, in one line.
public enum DiffusionError: Error, CustomStringConvertible, Equatable {
    /// σ_t = 0 (η = 0, or a step that ends at t = 0 with `stepsOffset` 0): the step is
    /// deterministic and has no density, so it cannot be a policy.
    case degeneratePolicy(String)
    case invalidSettings(String)

    public var description: String {
        switch self {
        case let .degeneratePolicy(message): return "not a stochastic policy: \(message)"
        case let .invalidSettings(message): return message
        }
    }
}

/// One DDIM step from t to the previous timestep t′, with everything DDPO needs.
public struct DDIMStep {
    /// x_t′.
    public var previousSample: Tensor
    /// x̂₀, the model's estimate of the clean sample.
    public var predictedOriginal: Tensor
    /// μ_θ, the mean of the step's Gaussian.
    public var mean: Tensor
    /// σ_t (the same for every sample of the batch).
    public var sigma: Double
    /// log π(x_t′ | x_t, c) per sample [B], summed over dimensions.
    public var logProb: Tensor
}

/// DDIM sampling (Song et al. 2021) with η, seen as a Gaussian policy (Black et al. 2023, DDPO).
///
/// Notation (code name — symbol), for a step from t to t′ with ε̂ = ε_θ(x_t, t, c):
///     alphaProduct          ᾱ_t
///     alphaProductPrevious  ᾱ_t′  (ᾱ₀ when t′ < 0: the last step ends at the cleanest level)
///     predictedOriginal     x̂₀ = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t
///     sigma                 σ_t = η·√[(1−ᾱ_t′)/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_t′)]
///     mean                  μ_θ = √ᾱ_t′·x̂₀ + √(1 − ᾱ_t′ − σ_t²)·ε̂
///     previousSample        x_t′ = μ_θ + σ_t·z,  z ~ N(0, I)
///     logProb               Σ_dims [−(x_t′ − μ_θ)²/(2σ_t²) − log σ_t − ½·log 2π]
/// The log-probability is summed over dimensions (ddpo-pytorch averages instead; a PPO clip range
/// must be chosen for the sum). Timesteps are `trainSteps/stepCount · i + stepsOffset`,
/// descending; `stepsOffset = 1` (Stable Diffusion's) makes the last step start at t = 1, so
/// σ_t > 0 at every step when η > 0.
public struct DDIMScheduler: Sendable {
    public let schedule: NoiseSchedule
    public let stepCount: Int
    public let stepsOffset: Int
    public let eta: Double
    /// Sampling timesteps, from noisiest to cleanest.
    public let timesteps: [Int]

    public init(schedule: NoiseSchedule, stepCount: Int, eta: Double, stepsOffset: Int = 1) throws {
        guard stepCount >= 1 && stepCount <= schedule.trainSteps else {
            throw DiffusionError.invalidSettings("\(stepCount) steps for \(schedule.trainSteps) training steps")
        }
        guard eta >= 0 && eta.isFinite else { throw DiffusionError.invalidSettings("eta \(eta) must be ≥ 0") }
        let ratio = schedule.trainSteps / stepCount
        let timesteps = (0..<stepCount).reversed().map { $0 * ratio + stepsOffset }
        guard timesteps.allSatisfy({ $0 >= 0 && $0 < schedule.trainSteps }) else {
            throw DiffusionError.invalidSettings("steps offset \(stepsOffset) puts a timestep outside 0..<\(schedule.trainSteps) with \(stepCount) steps")
        }
        self.schedule = schedule
        self.stepCount = stepCount
        self.stepsOffset = stepsOffset
        self.eta = eta
        self.timesteps = timesteps
    }

    /// The timestep after t in sampling order (negative after the last).
    public func previousTimestep(_ t: Int) -> Int { t - schedule.trainSteps / stepCount }

    /// ᾱ_t and ᾱ_t′ for a step starting at t.
    public func alphaProducts(_ t: Int) -> (current: Double, previous: Double) {
        let previous = previousTimestep(t)
        return (schedule.alphasCumprod[t], previous >= 0 ? schedule.alphasCumprod[previous] : schedule.alphasCumprod[0])
    }

    /// σ_t of the step starting at t.
    public func sigma(_ t: Int) -> Double {
        let (a, aPrevious) = alphaProducts(t)
        return eta * ((1 - aPrevious) / (1 - a) * (1 - a / aPrevious)).squareRoot()
    }

    /// ε̂ from the model's output (ε itself, or converted from v).
    func epsilon(_ output: Tensor, sample: Tensor, alphaProduct a: Double) throws -> Tensor {
        switch schedule.settings.prediction {
        case .epsilon: return output
        case .vPrediction: return try output * a.squareRoot() + sample * (1 - a).squareRoot()
        }
    }

    /// One step from `sample` = x_t at timestep t. Draws z from `rng` (or takes `noise` as z)
    /// unless `previousSample` is given (to recompute the log-probability of a stored step under
    /// new parameters). All of it is differentiable with respect to `modelOutput`. With
    /// `requireDensity`, σ_t = 0 is an error.
    public func step(modelOutput: Tensor, timestep t: Int, sample: Tensor, previousSample given: Tensor? = nil,
                     noise givenNoise: Tensor? = nil,
                     using rng: inout RandomGenerator, requireDensity: Bool = false) throws -> DDIMStep {
        guard modelOutput.shape == sample.shape else {
            throw EngineError.shapeMismatch(op: "DDIMScheduler.step", "model output \(modelOutput.shape) and sample \(sample.shape)")
        }
        guard t >= 0 && t < schedule.trainSteps else { throw DiffusionError.invalidSettings("timestep \(t)") }
        let (a, aPrevious) = alphaProducts(t)
        let sigma = self.sigma(t)
        if requireDensity && !(sigma > 0) {
            throw DiffusionError.degeneratePolicy("σ_t = 0 at t = \(t) (η = \(eta)); use η > 0 and timesteps ending at t = 1")
        }
        let epsilon = try self.epsilon(modelOutput, sample: sample, alphaProduct: a)
        let predictedOriginal = try (sample - epsilon * (1 - a).squareRoot()) * (1 / a.squareRoot())
        let direction = Swift.max(1 - aPrevious - sigma * sigma, 0).squareRoot()
        let mean = try predictedOriginal * aPrevious.squareRoot() + epsilon * direction
        let previous: Tensor
        if let given {
            guard given.shape == sample.shape else {
                throw EngineError.shapeMismatch(op: "DDIMScheduler.step", "stored sample \(given.shape) and sample \(sample.shape)")
            }
            previous = given
        } else {
            if let givenNoise, givenNoise.shape != sample.shape {
                throw EngineError.shapeMismatch(op: "DDIMScheduler.step", "noise \(givenNoise.shape) and sample \(sample.shape)")
            }
            let noise = givenNoise ?? Tensor.randn(sample.shape, dtype: sample.dtype, using: &rng)
            previous = try withNoGrad { try mean + noise * sigma }.detach()
        }
        let logProb = sigma > 0 ? try gaussianLogProb(previous, mean: mean, sigma: sigma) : Tensor(zeros: [sample.shape[0]], dtype: sample.dtype)
        return DDIMStep(previousSample: previous, predictedOriginal: predictedOriginal, mean: mean, sigma: sigma, logProb: logProb)
    }
}

/// Σ over all but the first dimension of log N(x; μ, σ²I): one value per sample [B].
public func gaussianLogProb(_ x: Tensor, mean: Tensor, sigma: Double) throws -> Tensor {
    guard x.shape == mean.shape, x.rank >= 1 else {
        throw EngineError.shapeMismatch(op: "gaussianLogProb", "sample \(x.shape) and mean \(mean.shape)")
    }
    let dimensions = x.count / max(x.shape[0], 1)
    let constant = -Double(dimensions) * (log(sigma) + 0.5 * log(2 * Double.pi))
    let squared = try square(x.detach() - mean).reshaped([x.shape[0], dimensions]).sum(axes: [1])
    return squared * (-1 / (2 * sigma * sigma)) + constant
}

/// Classifier-free guidance: ε̂ = ε_u + w·(ε_c − ε_u).
public func classifierFreeGuidance(unconditional: Tensor, conditional: Tensor, scale: Double) throws -> Tensor {
    try unconditional + (conditional - unconditional) * scale
}
