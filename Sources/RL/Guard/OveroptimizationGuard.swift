import Foundation

/// What the overoptimization guard watches and what it may do (`"guard"` in the config). It never
/// reads the gold judge: its signals are the KL to the base model, a learned proxy reward and that
/// proxy's confidence-normalized (TextNorm) version.
public struct GuardSettings: Codable, Equatable, Sendable {
    /// What the guard does when a trigger fires: any of "warn", "lowerLearningRate", "stop",
    /// "restoreBest" (restore the weights of the best epoch by `restoreBy` when the run ends or
    /// stops); "adaptBeta" runs every measured epoch instead (an adaptive KL controller on
    /// `kl.beta`). Empty: no guard.
    public var actions: [String] = []
    /// The KL budget (nats, the trainer's total KL per sample); 0: none. Exceeding it is a trigger.
    public var klBudget = 0.0
    /// A limit on how fast the KL grows, independent of its level: the least-squares slope of
    /// log KL against the epoch over the measured epochs of the last `klGrowthSpan` epochs (0.2
    /// per epoch: ×e every 5 epochs); 0: none. Reaching it, at a KL of at least `klGrowthFloor`,
    /// is a trigger. A run converging to some distribution has a KL that levels off, at whatever
    /// level its objective sets; a run that keeps finding more reward away from the base has one
    /// that keeps growing.
    public var klGrowth = 0.0
    public var klGrowthSpan = 8
    /// Below this KL the growth is not judged: every objective's KL rises from 0 at first.
    public var klGrowthFloor = 30.0
    /// The raw proxy perspective watched (e.g. "proxy_alignment"); empty: none.
    public var proxy = ""
    /// Its confidence-normalized version (e.g. "proxy_textnorm_alignment"); empty: none.
    public var textNorm = ""
    /// Epochs over which divergence is judged: the raw proxy rose and the TextNorm signal fell by
    /// more than `divergenceTolerance` between the first and the last of the window.
    public var window = 4
    public var divergenceTolerance = 0.0
    /// The adaptive KL controller's target KL and gain (Ziegler et al. 2019).
    public var targetKL = 0.0
    public var controllerGain = 0.1
    /// What "lowerLearningRate" multiplies the learning rate by.
    public var learningRateFactor = 0.5
    /// Which epoch "restoreBest" puts back: "textNorm" (the highest `textNorm` signal within the
    /// KL limits) or "lastWithinBudget" (the last epoch whose measured KL was within the limits —
    /// the budget and the growth limit — for limits calibrated on pilot runs, where a gold judge
    /// said how far is too far).
    public var restoreBy = "textNorm"

    public init() {}

    public static let knownActions: Set<String> = ["warn", "adaptBeta", "lowerLearningRate", "stop", "restoreBest"]

    public var isActive: Bool { !actions.isEmpty }
    /// Whether the KL is limited (by a budget or a growth limit).
    public var limitsKL: Bool { klBudget > 0 || klGrowth > 0 }
    func has(_ action: String) -> Bool { actions.contains(action) }
}

/// The adaptive KL controller of Ziegler et al. 2019 ("Fine-Tuning Language Models from Human
/// Preferences", §2.2): with e = clip((KL − KL_target) / KL_target, −0.2, 0.2),
///
///     β ← β · (1 + K_β · e),
///
/// so β grows while the policy drifts past the target and shrinks below it, by at most a fifth of
/// K_β per update.
public func adaptedBeta(_ beta: Double, kl: Double, target: Double, gain: Double) -> Double {
    let error = min(max((kl - target) / target, -0.2), 0.2)
    return beta * (1 + gain * error)
}

/// One epoch's guard signals (NaN where not measured this epoch).
public struct GuardSignals: Codable, Equatable, Sendable {
    public var epoch: Int
    public var kl: Double
    public var proxy: Double
    public var textNorm: Double

    public init(epoch: Int, kl: Double, proxy: Double, textNorm: Double) {
        self.epoch = epoch
        self.kl = kl
        self.proxy = proxy
        self.textNorm = textNorm
    }
}

/// A decision of the guard, with the signal values that caused it.
public enum GuardDecision: Equatable, Sendable {
    case warn(String)
    case setBeta(Double, String)
    case scaleLearningRate(Double, String)
    case stop(String)

    /// The sentence logged as the decision's event.
    public var message: String {
        switch self {
        case .warn(let why): return "warning: \(why)"
        case .setBeta(let beta, let why): return String(format: "β ← %.4g: ", beta) + why
        case .scaleLearningRate(let factor, let why): return String(format: "learning rate × %.3g: ", factor) + why
        case .stop(let why): return "stop: \(why)"
        }
    }
}

/// The guard's state machine: it observes each epoch's signals and returns its decisions, and
/// remembers the best epoch by its own criterion (the TextNorm signal within the KL limits, or the
/// last epoch within them).
/// Pure: the trainer applies the decisions, so every rule is testable with synthetic signals.
public struct OveroptimizationGuard: Codable, Equatable, Sendable {
    public let settings: GuardSettings
    public private(set) var history: [GuardSignals] = []
    public private(set) var beta: Double
    /// The epoch whose weights `restoreBest` would put back, and its TextNorm signal (its KL, by
    /// `lastWithinBudget`).
    public private(set) var bestEpoch: Int?
    public private(set) var bestValue = -Double.infinity
    /// Whether a trigger has fired since the learning rate was last lowered (it is lowered once
    /// per trigger episode, not every epoch the trigger holds).
    private var triggered = false

    public init(settings: GuardSettings, beta: Double) {
        self.settings = settings
        self.beta = beta
    }

    /// Why the settings cannot run, or nil.
    public static func problem(with settings: GuardSettings, objectiveUsesBeta: Bool) -> String? {
        if let unknown = settings.actions.first(where: { !GuardSettings.knownActions.contains($0) }) {
            return "guard.actions: unknown action '\(unknown)' (known: \(GuardSettings.knownActions.sorted().joined(separator: ", ")))"
        }
        guard settings.isActive else { return nil }
        if settings.klBudget < 0 || settings.window < 2 || settings.learningRateFactor <= 0 || settings.learningRateFactor > 1 {
            return "guard: klBudget must be ≥ 0, window ≥ 2 and learningRateFactor in (0, 1]"
        }
        if settings.klGrowth < 0 || settings.klGrowthSpan < 2 || settings.klGrowthFloor <= 0 {
            return "guard: klGrowth must be ≥ 0, klGrowthSpan ≥ 2 and klGrowthFloor > 0"
        }
        if !settings.limitsKL && (settings.proxy.isEmpty || settings.textNorm.isEmpty) {
            return "guard: nothing to watch — set klBudget or klGrowth, or both proxy and textNorm"
        }
        if settings.proxy.isEmpty != settings.textNorm.isEmpty { return "guard: proxy and textNorm are watched together; set both or neither" }
        if settings.has("adaptBeta") {
            if !objectiveUsesBeta { return "guard: adaptBeta needs an objective with a β·KL penalty (ppo, reinforce or refl)" }
            if settings.targetKL <= 0 { return "guard: adaptBeta needs targetKL > 0" }
        }
        if !["textNorm", "lastWithinBudget"].contains(settings.restoreBy) {
            return "guard.restoreBy: '\(settings.restoreBy)' is neither textNorm nor lastWithinBudget"
        }
        if settings.has("restoreBest") && settings.restoreBy == "textNorm" && settings.textNorm.isEmpty {
            return "guard: restoreBest chooses by the textNorm signal; set proxy and textNorm"
        }
        if settings.has("restoreBest") && settings.restoreBy == "lastWithinBudget" && !settings.limitsKL {
            return "guard: restoreBy lastWithinBudget needs a klBudget or a klGrowth limit"
        }
        return nil
    }

    /// Takes one epoch's signals and returns the decisions they cause, in order. `bestChanged`
    /// says whether this epoch became the best to restore (the trainer then keeps its weights).
    public mutating func observe(_ signals: GuardSignals) -> (decisions: [GuardDecision], bestChanged: Bool) {
        history.append(signals)
        var decisions: [GuardDecision] = []
        let values = String(format: "KL %.4g, proxy %.4g, TextNorm %.4g", signals.kl, signals.proxy, signals.textNorm)
        var reasons: [String] = []
        var overKLLimits = false
        if settings.klBudget > 0 && signals.kl.isFinite && signals.kl > settings.klBudget {
            reasons.append(String(format: "KL over the budget of %.4g", settings.klBudget))
            overKLLimits = true
        }
        if let growth = klGrowthTrigger() {
            reasons.append(growth)
            overKLLimits = true
        }
        if let divergence = divergence() { reasons.append(divergence) }

        if settings.has("adaptBeta") && signals.kl.isFinite {
            let next = adaptedBeta(beta, kl: signals.kl, target: settings.targetKL, gain: settings.controllerGain)
            if next != beta {
                beta = next
                decisions.append(.setBeta(next, String(format: "KL %.4g against the target %.4g", signals.kl, settings.targetKL)))
            }
        }
        var bestChanged = false
        if settings.restoreBy == "lastWithinBudget" {
            // Only an epoch whose KL was measured is known to be within the limits.
            if signals.kl.isFinite && !overKLLimits {
                bestValue = signals.kl
                bestEpoch = signals.epoch
                bestChanged = true
            }
        } else if signals.textNorm.isFinite && !overKLLimits && signals.textNorm > bestValue {
            bestValue = signals.textNorm
            bestEpoch = signals.epoch
            bestChanged = true
        }
        if reasons.isEmpty {
            triggered = false
            return (decisions, bestChanged)
        }
        let why = reasons.joined(separator: "; ") + " (\(values))"
        if settings.has("warn") { decisions.append(.warn(why)) }
        if settings.has("lowerLearningRate") && !triggered { decisions.append(.scaleLearningRate(settings.learningRateFactor, why)) }
        if settings.has("stop") { decisions.append(.stop(why)) }
        triggered = true
        return (decisions, bestChanged)
    }

    /// The least-squares slope of log KL against the epoch over the measured epochs (KL > 0) of
    /// the last `klGrowthSpan` epochs, when at least three are there; nil otherwise.
    ///     slope = Σ (eᵢ − ē)(log KLᵢ − ȳ) / Σ (eᵢ − ē)²
    public func klGrowthRate() -> (rate: Double, first: Int, last: Int)? {
        guard let current = history.last else { return nil }
        let points = history.filter { $0.kl.isFinite && $0.kl > 0 && $0.epoch >= current.epoch - settings.klGrowthSpan }
        guard points.count >= 3, let first = points.first, let last = points.last else { return nil }
        let meanEpoch = points.reduce(0.0) { $0 + Double($1.epoch) } / Double(points.count)
        let meanLog = points.reduce(0.0) { $0 + Foundation.log($1.kl) } / Double(points.count)
        var covariance = 0.0, variance = 0.0
        for p in points {
            covariance += (Double(p.epoch) - meanEpoch) * (Foundation.log(p.kl) - meanLog)
            variance += (Double(p.epoch) - meanEpoch) * (Double(p.epoch) - meanEpoch)
        }
        return (covariance / variance, first.epoch, last.epoch)
    }

    /// "KL growing by r per epoch over epochs a–b", when this epoch measured a KL of at least the
    /// floor and the growth rate reaches the limit; nil otherwise.
    func klGrowthTrigger() -> String? {
        guard settings.klGrowth > 0, let current = history.last, current.kl.isFinite, current.kl >= settings.klGrowthFloor,
              let growth = klGrowthRate(), growth.rate >= settings.klGrowth else { return nil }
        return String(format: "KL growing by %.3g per epoch (log-linear fit over epochs %d–%d; limit %.3g, at KL ≥ %.4g)",
                      growth.rate, growth.first, growth.last, settings.klGrowth, settings.klGrowthFloor)
    }

    /// "the raw proxy rose by a while TextNorm fell by b over the last w epochs", or nil: the two
    /// signals' first and last finite values over the window.
    func divergence() -> String? {
        guard !settings.proxy.isEmpty else { return nil }
        let measured = history.filter { $0.proxy.isFinite && $0.textNorm.isFinite }.suffix(settings.window)
        guard measured.count == settings.window, let first = measured.first, let last = measured.last else { return nil }
        let rise = last.proxy - first.proxy, fall = first.textNorm - last.textNorm
        guard rise > 0 && fall > settings.divergenceTolerance else { return nil }
        return String(format: "the raw proxy rose by %.4g while TextNorm fell by %.4g over epochs %d–%d", rise, fall, first.epoch, last.epoch)
    }
}

/// The guard's decisions over a finished run's logged signals, as if it had watched the run: its
/// decisions depend on nothing else (it never reads gold), so the signals a run logged say what any
/// guard would have done on it, up to its first stop — for setting a guard's limits on pilot runs.
/// (A run that would have been stopped has no epochs after the stop; the ones logged beyond are not
/// read.)
public struct GuardReplay: Codable, Sendable {
    public struct Decision: Codable, Sendable {
        public var epoch: Int
        public var message: String
    }
    public var decisions: [Decision] = []
    /// The epoch before whose update the guard would have stopped the run (nil: never).
    public var stoppedAt: Int?
    /// The epoch whose weights `restoreBest` would have put back, and its value (nil: none).
    public var restoreEpoch: Int?
    public var restoreValue: Double?

    /// Feeds `signals` (one per epoch, in order) to a guard with `settings`.
    public init(settings: GuardSettings, beta: Double = 0, signals: [GuardSignals]) {
        var watcher = OveroptimizationGuard(settings: settings, beta: beta)
        for s in signals {
            let (made, _) = watcher.observe(s)
            decisions += made.map { Decision(epoch: s.epoch, message: $0.message) }
            if made.contains(where: { if case .stop = $0 { return true }; return false }) {
                stoppedAt = s.epoch
                break
            }
        }
        if settings.has("restoreBest"), let best = watcher.bestEpoch {
            restoreEpoch = best
            restoreValue = watcher.bestValue
        }
    }
}
