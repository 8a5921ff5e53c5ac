/// The words of the embedded world: shapes, colors, sizes, positions, counts and relations.

/// An object's shape.
public enum ShapeKind: String, CaseIterable, Codable, Sendable {
    case circle, square, triangle

    public var plural: String { rawValue + "s" }
}

/// A palette color. The RGB values are far apart (the closest pair differs by more than 140 in
/// one channel), so they stay distinct after generation noise.
public enum ColorName: String, CaseIterable, Codable, Sendable {
    case red, green, blue, yellow, purple, cyan

    public var rgb: (UInt8, UInt8, UInt8) {
        switch self {
        case .red: return (220, 30, 30)
        case .green: return (30, 170, 50)
        case .blue: return (30, 60, 220)
        case .yellow: return (240, 220, 30)
        case .purple: return (150, 40, 190)
        case .cyan: return (40, 210, 220)
        }
    }
}

/// An object's size class; its pixel extent scales with the canvas.
public enum SizeClass: String, CaseIterable, Codable, Sendable {
    case small, large

    /// Bounding-box side as a fraction of the canvas side.
    public var fraction: Double { self == .small ? 0.25 : 0.375 }
}

/// Where a single object (or a group) sits on the canvas.
public enum Position: String, CaseIterable, Codable, Sendable {
    case left, right, top, bottom, center

    /// The phrase used in captions.
    public var phrase: String {
        switch self {
        case .left: return "on the left"
        case .right: return "on the right"
        case .top: return "at the top"
        case .bottom: return "at the bottom"
        case .center: return "in the center"
        }
    }
}

/// A spatial relation between two objects.
public enum Relation: String, CaseIterable, Codable, Sendable {
    case leftOf = "left of", rightOf = "right of", above, below

    /// The phrase used in captions.
    public var phrase: String {
        switch self {
        case .leftOf: return "to the left of"
        case .rightOf: return "to the right of"
        case .above: return "above"
        case .below: return "below"
        }
    }

    /// The relation seen from the other object ("A left of B" is "B right of A").
    public var flipped: Relation {
        switch self {
        case .leftOf: return .rightOf
        case .rightOf: return .leftOf
        case .above: return .below
        case .below: return .above
        }
    }
}

/// Count words of captions.
let countWords = [1: "a", 2: "two", 3: "three"]

/// Canvas background and the hazard mark's color: neither is a palette color.
public enum WorldColors {
    public static let background: (UInt8, UInt8, UInt8) = (245, 245, 245)
    /// The hazard mark is a solid black square: dark enough to survive blur as a gray blob.
    public static let hazard: (UInt8, UInt8, UInt8) = (0, 0, 0)
}
