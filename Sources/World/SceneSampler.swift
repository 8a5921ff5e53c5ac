import Engine

/// Places the objects of a prompt on the canvas (and, for some training scenes, the hazard mark).
public struct SceneSampler: Sendable {
    /// Share of scenes that carry the hazard mark.
    public var hazardRate: Double
    /// Hazard mark side as a fraction of the canvas (1/8: 4 pixels at 32×32).
    public var hazardSide: Double
    /// Smallest gap between objects' bounding boxes, as a fraction of the canvas.
    public var gap: Double = 0.04
    /// Margin between objects and the canvas edge.
    public var margin: Double = 0.03

    public init(hazardRate: Double = 0.05, hazardSide: Double = 0.125) {
        self.hazardRate = hazardRate
        self.hazardSide = hazardSide
    }

    /// A scene for `prompt`: sizes the caption leaves open are drawn at random, positions by
    /// rejection sampling until every constraint holds with a margin (three large objects need a
    /// few hundred tries; each try is cheap).
    public func scene(for prompt: Prompt, using rng: inout RandomGenerator) -> Scene {
        for _ in 0..<200_000 {
            if let objects = tryPlace(prompt, &rng) {
                var scene = Scene(prompt: prompt, objects: objects, hazard: nil)
                if rng.uniform() < hazardRate { scene.hazard = placeHazard(avoiding: objects, &rng) }
                return scene
            }
        }
        preconditionFailure("no layout found for '\(prompt.caption)'")
    }

    private func tryPlace(_ prompt: Prompt, _ rng: inout RandomGenerator) -> [SceneObject]? {
        func size(_ entity: Entity) -> SizeClass { entity.size ?? (rng.uniform() < 0.5 ? .small : .large) }
        func randomObject(_ entity: Entity, size: SizeClass) -> SceneObject {
            let half = size.fraction / 2, low = half + margin, high = 1 - half - margin
            return SceneObject(color: entity.color, shape: entity.shape, size: size,
                               centerX: low + (high - low) * rng.uniform(), centerY: low + (high - low) * rng.uniform())
        }
        var objects: [SceneObject] = []
        switch prompt {
        case let .group(entity, count, position):
            let groupSize = size(entity)
            for _ in 0..<count {
                let object = randomObject(entity, size: groupSize)
                if let position, !Layout.holds(position, x: object.centerX, y: object.centerY, margin: 0.05) { return nil }
                objects.append(object)
            }
        case let .relation(first, relation, second):
            let a = randomObject(first, size: size(first)), b = randomObject(second, size: size(second))
            // Hold with a margin, so that generation noise does not flip the relation.
            let shifted: (x: Double, y: Double)
            switch relation {
            case .leftOf: shifted = (b.centerX - 0.08, b.centerY)
            case .rightOf: shifted = (b.centerX + 0.08, b.centerY)
            case .above: shifted = (b.centerX, b.centerY - 0.08)
            case .below: shifted = (b.centerX, b.centerY + 0.08)
            }
            guard Layout.holds(relation, from: (a.centerX, a.centerY), to: shifted) else { return nil }
            objects = [a, b]
        }
        for i in objects.indices {
            for j in objects.indices where j > i && overlap(objects[i], objects[j]) { return nil }
        }
        return objects
    }

    private func overlap(_ a: SceneObject, _ b: SceneObject) -> Bool {
        Swift.abs(a.centerX - b.centerX) < a.halfSide + b.halfSide + gap
            && Swift.abs(a.centerY - b.centerY) < a.halfSide + b.halfSide + gap
    }

    private func placeHazard(avoiding objects: [SceneObject], _ rng: inout RandomGenerator) -> HazardMark? {
        for _ in 0..<200 {
            let x = margin + (1 - 2 * margin - hazardSide) * rng.uniform(), y = margin + (1 - 2 * margin - hazardSide) * rng.uniform()
            let clear = objects.allSatisfy { o in
                x + hazardSide + gap / 2 < o.centerX - o.halfSide || x - gap / 2 > o.centerX + o.halfSide
                    || y + hazardSide + gap / 2 < o.centerY - o.halfSide || y - gap / 2 > o.centerY + o.halfSide
            }
            if clear { return HazardMark(x: x, y: y, side: hazardSide) }
        }
        return nil
    }
}
