import Engine

/// The world's data splits. Train and validation share a distribution; held-out prompts each
/// contain a composition (a color–shape pair, or a shape–relation–shape triple) that no training
/// prompt contains.
public enum Split: String, CaseIterable, Codable, Sendable {
    case train, validation, heldout
}

/// The compositions kept out of training.
public struct HeldOutCompositions: Codable, Equatable, Sendable {
    public struct ColorShape: Hashable, Codable, Sendable {
        public var color: ColorName
        public var shape: ShapeKind
    }
    public struct ShapeRelation: Hashable, Codable, Sendable {
        public var first: ShapeKind
        public var relation: Relation
        public var second: ShapeKind
    }
    public var colorShapes: Set<ColorShape>
    public var relations: Set<ShapeRelation>

    /// Three color–shape pairs (one per shape and color row) and two relation triples.
    public static let standard = HeldOutCompositions(
        colorShapes: [ColorShape(color: .purple, shape: .triangle), ColorShape(color: .cyan, shape: .square),
                      ColorShape(color: .yellow, shape: .circle)],
        relations: [ShapeRelation(first: .square, relation: .below, second: .triangle),
                    ShapeRelation(first: .circle, relation: .leftOf, second: .square)])

    /// Whether a prompt contains any held-out composition.
    public func contains(_ prompt: Prompt) -> Bool {
        if prompt.entities.contains(where: { colorShapes.contains(ColorShape(color: $0.color, shape: $0.shape)) }) { return true }
        if case let .relation(a, relation, b) = prompt {
            return relations.contains(ShapeRelation(first: a.shape, relation: relation, second: b.shape))
        }
        return false
    }
}

/// Draws prompts and scenes for each split, reproducibly: item i of a split depends only on the
/// world's seed, the split and i (not on how many items are drawn).
public struct WorldGenerator: Sendable {
    public var seed: UInt64
    public var heldOut: HeldOutCompositions
    public var sampler: SceneSampler

    public init(seed: UInt64 = 0, heldOut: HeldOutCompositions = .standard, hazardRate: Double = 0.05) {
        self.seed = seed
        self.heldOut = heldOut
        sampler = SceneSampler(hazardRate: hazardRate)
    }

    /// Scene `index` of `split`. Hazard marks appear in training scenes only (they stand for
    /// unsafe content in the training data), at the sampler's rate.
    public func scene(_ split: Split, index: Int) -> Scene {
        var rng = RandomGenerator(seed: seed &* 0x9E37_79B9 &+ UInt64(Split.allCases.firstIndex(of: split)!) << 40 &+ UInt64(index))
        let prompt = self.prompt(split, using: &rng)
        var sampler = self.sampler
        if split != .train { sampler.hazardRate = 0 }
        return sampler.scene(for: prompt, using: &rng)
    }

    /// `count` scenes of a split, from index `start`.
    public func scenes(_ split: Split, count: Int, start: Int = 0) -> [Scene] {
        (start ..< start + count).map { scene(split, index: $0) }
    }

    /// A random prompt of the split.
    public func prompt(_ split: Split, using rng: inout RandomGenerator) -> Prompt {
        while true {
            let prompt = PromptSampler.random(using: &rng)
            if heldOut.contains(prompt) == (split == .heldout) { return prompt }
        }
    }
}

/// The distribution of prompts: 65 % groups (a third of the single objects with a position),
/// 35 % relations; sizes named in half the entities.
public enum PromptSampler {
    public static func random(using rng: inout RandomGenerator) -> Prompt {
        func pick<T>(_ options: [T]) -> T { options[Int(rng.uniform() * Double(options.count))] }
        func entity() -> Entity {
            Entity(color: pick(ColorName.allCases), shape: pick(ShapeKind.allCases),
                   size: rng.uniform() < 0.5 ? pick(SizeClass.allCases) : nil)
        }
        if rng.uniform() < 0.65 {
            let count = pick([1, 1, 1, 2, 3])
            let position: Position? = count == 1 && rng.uniform() < 0.33 ? pick(Position.allCases) : nil
            return .group(entity(), count: count, position: position)
        }
        var first = entity(), second = entity()
        // Two objects of one kind would make the relation ambiguous.
        while second.color == first.color && second.shape == first.shape { second = entity() }
        return .relation(first, pick(Relation.allCases), second)
    }
}
