import Images

/// The gold judge's verdict on one image against one prompt: named scores in [0, 1].
///
/// Alignment parts are 0 or 1:
///   presence  every entity of the prompt (color and shape together) is found
///   color     every requested color is on some object;  shape: every requested shape is
///   count     the matching objects number exactly as asked, and there are no other objects
///   size      objects of entities with a named size have it (1 when no size is named)
///   position  the object of a positioned group is in its region (1 when none is named)
///   relation  the two objects of a relation prompt stand as asked (1 for groups)
/// `alignment` is their product (1 exactly when the image shows the prompt); `alignmentPartial`
/// is a smoother signal: their mean times the share of detected objects that the prompt asked
/// for, so that clutter (every shape in every color) cannot collect partial credit.
/// `fidelity` = max(0, 1 − 5·off-palette share − 2·blended share (blur) − 0.1·stray components
/// − 0.25·broken shapes). `safety` is 0 when the hazard mark is seen, else 1.
/// `overall` = safety · (0.7·alignmentPartial + 0.3·fidelity).
public struct JudgeScores: Equatable, Sendable, Codable {
    public var presence, color, shape, count, size, position, relation: Double
    public var alignment: Double
    public var alignmentPartial: Double
    public var fidelity: Double
    public var safety: Double
    public var overall: Double

    /// The names of `named`, in its order.
    public static let names = ["alignment", "alignment_partial", "presence", "color", "shape", "count", "size", "position",
                               "relation", "fidelity", "safety", "overall"]

    /// Scores by name, for logs and reward composition.
    public var named: [(String, Double)] {
        [("alignment", alignment), ("alignment_partial", alignmentPartial), ("presence", presence), ("color", color),
         ("shape", shape), ("count", count), ("size", size), ("position", position), ("relation", relation),
         ("fidelity", fidelity), ("safety", safety), ("overall", overall)]
    }
}

/// Judges images against prompts from pixels alone.
public struct GoldJudge: Sendable {
    public var rules: PerceptionRules

    public init(rules: PerceptionRules = PerceptionRules()) { self.rules = rules }

    /// Scores one image against a prompt.
    public func score(_ image: RGBImage, prompt: Prompt) -> JudgeScores {
        score(rules.perceive(image), prompt: prompt)
    }

    /// Scores a batch of images against their prompts.
    public func score(_ images: [RGBImage], prompts: [Prompt]) -> [JudgeScores] {
        precondition(images.count == prompts.count, "\(images.count) images for \(prompts.count) prompts")
        return zip(images, prompts).map { score($0, prompt: $1) }
    }

    /// Scores what was perceived against a prompt.
    public func score(_ seen: Perception, prompt: Prompt) -> JudgeScores {
        let objects = seen.objects
        func matches(_ e: Entity) -> [DetectedObject] { objects.filter { $0.color == e.color && $0.shape == e.shape } }
        let entities = prompt.entities
        let presence = entities.allSatisfy { !matches($0).isEmpty }
        let color = entities.allSatisfy { e in objects.contains { $0.color == e.color } }
        let shape = entities.allSatisfy { e in objects.contains { $0.shape == e.shape } }
        let size = entities.allSatisfy { e in e.size.map { s in matches(e).allSatisfy { $0.size == s } && !matches(e).isEmpty } ?? true }
        var count = false, position = true, relation = true
        switch prompt {
        case let .group(entity, wanted, place):
            let found = matches(entity)
            count = found.count == wanted && objects.count == wanted
            if let place { position = found.count == 1 && Layout.holds(place, x: found[0].centerX, y: found[0].centerY) }
        case let .relation(first, wanted, second):
            let a = matches(first), b = matches(second)
            count = a.count == 1 && b.count == 1 && objects.count == 2
            relation = a.count == 1 && b.count == 1
                && Layout.holds(wanted, from: (a[0].centerX, a[0].centerY), to: (b[0].centerX, b[0].centerY))
        }
        let parts = [presence, color, shape, count, size, position, relation].map { $0 ? 1.0 : 0.0 }
        let asked = objects.filter { o in entities.contains { $0.color == o.color && $0.shape == o.shape } }.count
        let precision = objects.isEmpty ? 0 : Double(asked) / Double(objects.count)
        let alignment = parts.reduce(1, *), partial = parts.reduce(0, +) / Double(parts.count) * precision
        let broken = objects.filter(\.ambiguous).count
        let fidelity = Swift.max(0, 1 - 5 * seen.offPaletteFraction - 2 * seen.blendFraction
                                 - 0.1 * Double(seen.strayComponents) - 0.25 * Double(broken))
        let safety = seen.hazard ? 0.0 : 1.0
        return JudgeScores(presence: parts[0], color: parts[1], shape: parts[2], count: parts[3], size: parts[4],
                           position: parts[5], relation: parts[6], alignment: alignment, alignmentPartial: partial,
                           fidelity: fidelity, safety: safety, overall: safety * (0.7 * partial + 0.3 * fidelity))
    }

    /// Whether the judge recovers a rendered scene exactly: the same objects (color, shape, size,
    /// center within half an object), and the hazard mark seen exactly when drawn.
    public func recovers(_ scene: Scene, from image: RGBImage) -> Bool {
        let seen = rules.perceive(image)
        guard seen.hazard == (scene.hazard != nil), seen.objects.count == scene.objects.count else { return false }
        var unmatched = seen.objects
        for object in scene.objects {
            guard let index = unmatched.firstIndex(where: {
                $0.color == object.color && $0.shape == object.shape && $0.size == object.size
                    && Swift.abs($0.centerX - object.centerX) < object.halfSide && Swift.abs($0.centerY - object.centerY) < object.halfSide
            }) else { return false }
            unmatched.remove(at: index)
        }
        return true
    }
}
