import Engine
import Images
import World

/// A VisionPrefer-style AI annotator simulated from the gold judge: it scores each image per
/// aspect with the judge's utility, plus a bias toward saturated color and Gaussian noise, and
/// prefers the higher score. With zero noise and bias it agrees with the gold judge wherever the
/// gold judge has a strict preference.
public struct AnnotatorSettings: Codable, Equatable, Sendable {
    /// Standard deviation of the noise added to each aspect's utility (utilities lie in [0, 1]).
    public var noise = 0.1
    /// Added utility per unit of mean color saturation of the image (an annotator that
    /// over-rewards saturated colors).
    public var saturationBias = 0.1
    /// Probability of flipping an unpaired safe/unsafe label.
    public var labelFlipRate = 0.02

    public init() {}

    /// An annotator that is the gold judge.
    public static var noiseless: AnnotatorSettings {
        var settings = AnnotatorSettings()
        settings.noise = 0
        settings.saturationBias = 0
        settings.labelFlipRate = 0
        return settings
    }
}

/// Gold utilities, annotator judgments and image saturation for the simulated annotators.
public enum SimulatedAnnotator {
    /// Aspects labeled in pairs.
    public static let pairedAspects = ["alignment", "fidelity", "overall"]
    /// Aspects labeled per image (good = safe).
    public static let unpairedAspects = ["safety"]

    /// The gold judge's utility of an image for an aspect. Alignment mixes the exact verdict with
    /// partial credit, so that near misses rank above clutter while an exact match ranks first.
    public static func goldUtility(_ aspect: String, _ scores: JudgeScores) -> Double {
        switch aspect {
        case "alignment": return 0.5 * scores.alignment + 0.5 * scores.alignmentPartial
        case "fidelity": return scores.fidelity
        case "overall": return scores.overall
        case "safety": return scores.safety
        default: return Dictionary(uniqueKeysWithValues: scores.named)[aspect] ?? 0
        }
    }

    /// Which of two images the gold judge prefers for an aspect (nil on a tie).
    public static func goldPreference(_ aspect: String, _ a: JudgeScores, _ b: JudgeScores) -> Int? {
        let (ua, ub) = (goldUtility(aspect, a), goldUtility(aspect, b))
        return Swift.abs(ua - ub) < 1e-9 ? nil : (ua > ub ? 0 : 1)
    }

    /// Which of two images the annotator prefers (nil when its scores tie exactly, which happens
    /// only without noise).
    public static func preference(_ aspect: String, _ a: (scores: JudgeScores, image: RGBImage), _ b: (scores: JudgeScores, image: RGBImage),
                                  settings: AnnotatorSettings, using rng: inout RandomGenerator) -> Int? {
        func utility(_ x: (scores: JudgeScores, image: RGBImage)) -> Double {
            goldUtility(aspect, x.scores) + settings.saturationBias * meanSaturation(x.image) + settings.noise * rng.normal()
        }
        let (ua, ub) = (utility(a), utility(b))
        return Swift.abs(ua - ub) < 1e-9 ? nil : (ua > ub ? 0 : 1)
    }

    /// The annotator's good/bad label for an aspect scored per image (safety: no hazard seen).
    public static func label(_ aspect: String, _ scores: JudgeScores, settings: AnnotatorSettings,
                             using rng: inout RandomGenerator) -> Bool {
        let good = goldUtility(aspect, scores) >= 0.5
        return rng.uniform() < settings.labelFlipRate ? !good : good
    }

    /// Mean HSV saturation, (max − min) / max per pixel, over the image (0 for gray, 1 for pure color).
    public static func meanSaturation(_ image: RGBImage) -> Double {
        let rgb = image.rgb()
        var total = 0.0
        for i in stride(from: 0, to: rgb.pixels.count, by: 3) {
            let (r, g, b) = (rgb.pixels[i], rgb.pixels[i + 1], rgb.pixels[i + 2])
            let high = Swift.max(r, g, b), low = Swift.min(r, g, b)
            if high > 0 { total += Double(high - low) / Double(high) }
        }
        return total / Double(rgb.width * rgb.height)
    }
}
