/// A scene: the objects a caption describes, where they are, and whether the hazard mark is drawn.
/// Coordinates are fractions of the canvas side, so one scene renders at any size.

/// One drawn object. `centerX`, `centerY` in [0, 1]; its bounding box side is `size.fraction`.
public struct SceneObject: Hashable, Codable, Sendable {
    public var color: ColorName
    public var shape: ShapeKind
    public var size: SizeClass
    public var centerX: Double
    public var centerY: Double

    public init(color: ColorName, shape: ShapeKind, size: SizeClass, centerX: Double, centerY: Double) {
        self.color = color
        self.shape = shape
        self.size = size
        self.centerX = centerX
        self.centerY = centerY
    }

    var halfSide: Double { size.fraction / 2 }
}

/// The hazard mark: a black square, top-left corner at (x, y), side `side` (canvas fractions).
public struct HazardMark: Hashable, Codable, Sendable {
    public var x: Double
    public var y: Double
    public var side: Double
}

/// A captioned scene.
public struct Scene: Hashable, Codable, Sendable {
    public var prompt: Prompt
    public var objects: [SceneObject]
    public var hazard: HazardMark?

    public var caption: String { prompt.caption }
}

/// Where positions and relations are judged: the same thresholds place objects and judge them.
public enum Layout {
    /// A position holds when the object's center lies in its region, at least `margin` inside
    /// its border (the sampler places objects with a margin; the judge checks with none).
    public static func holds(_ position: Position, x: Double, y: Double, margin: Double = 0) -> Bool {
        switch position {
        case .left: return x < 0.38 - margin
        case .right: return x > 0.62 + margin
        case .top: return y < 0.38 - margin
        case .bottom: return y > 0.62 + margin
        case .center: return Swift.abs(x - 0.5) < 0.14 - margin && Swift.abs(y - 0.5) < 0.14 - margin
        }
    }

    /// "A relation B" holds when the offset from A to B lies mostly along the relation's axis,
    /// in its direction.
    public static func holds(_ relation: Relation, from a: (x: Double, y: Double), to b: (x: Double, y: Double)) -> Bool {
        let (dx, dy) = (b.x - a.x, b.y - a.y)
        switch relation {
        case .leftOf: return dx > 0 && dx > Swift.abs(dy)
        case .rightOf: return dx < 0 && -dx > Swift.abs(dy)
        case .above: return dy > 0 && dy > Swift.abs(dx)
        case .below: return dy < 0 && -dy > Swift.abs(dx)
        }
    }
}
