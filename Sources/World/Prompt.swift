/// The structured meaning of a caption, and the grammar between the two.
///
///     caption   := group [position] | entity relation entity
///     group     := count [size] color shape(s)          "two small blue squares"
///     entity    := "a" [size] color shape                "a green triangle"
///     position  := "on the left" | "on the right" | "at the top" | "at the bottom" | "in the center"
///     relation  := "to the left of" | "to the right of" | "above" | "below"

/// One kind of object: its color and shape, and a size when the caption names one.
public struct Entity: Hashable, Codable, Sendable {
    public var color: ColorName
    public var shape: ShapeKind
    public var size: SizeClass?

    public init(color: ColorName, shape: ShapeKind, size: SizeClass? = nil) {
        self.color = color
        self.shape = shape
        self.size = size
    }

    func phrase(count: Int) -> String {
        ([countWords[count]!] + (size.map { [$0.rawValue] } ?? []) + [color.rawValue, count == 1 ? shape.rawValue : shape.plural])
            .joined(separator: " ")
    }
}

/// What a caption asks for.
public enum Prompt: Hashable, Codable, Sendable {
    /// `count` objects of one kind, optionally at a position.
    case group(Entity, count: Int, position: Position?)
    /// Two single objects in a spatial relation: first `relation` second.
    case relation(Entity, Relation, Entity)

    /// The canonical caption; `Prompt(parsing:)` reads it back to the same prompt.
    public var caption: String {
        switch self {
        case let .group(entity, count, position):
            return entity.phrase(count: count) + (position.map { " " + $0.phrase } ?? "")
        case let .relation(first, relation, second):
            return "\(first.phrase(count: 1)) \(relation.phrase) \(second.phrase(count: 1))"
        }
    }

    /// The entities the prompt mentions.
    public var entities: [Entity] {
        switch self {
        case let .group(entity, _, _): return [entity]
        case let .relation(first, _, second): return [first, second]
        }
    }
}

/// A caption the parser cannot read, naming the word at fault.
public struct CaptionError: Error, CustomStringConvertible, Equatable {
    public let caption: String
    public let message: String
    public var description: String { "cannot read caption '\(caption)': \(message)" }
}

extension Prompt {
    /// Parses a caption of the grammar above (case-insensitive, extra spaces ignored).
    public init(parsing caption: String) throws {
        let words = caption.lowercased().split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        var index = 0
        func fail(_ message: String) -> CaptionError { CaptionError(caption: caption, message: message) }
        func peek() -> String? { index < words.count ? words[index] : nil }
        func expect(_ word: String) throws {
            guard peek() == word else { throw fail(peek().map { "expected '\(word)', found '\($0)'" } ?? "expected '\(word)' at the end") }
            index += 1
        }
        func entity() throws -> (Entity, Int) {
            guard let countWord = peek() else { throw fail("empty caption") }
            guard let count = countWords.first(where: { $0.value == countWord })?.key ?? (countWord == "one" ? 1 : nil) else {
                throw fail("unknown word '\(countWord)' (expected a count: a, two, three)")
            }
            index += 1
            var size: SizeClass?
            if let word = peek(), let parsed = SizeClass(rawValue: word) { size = parsed; index += 1 }
            guard let colorWord = peek() else { throw fail("missing color") }
            guard let color = ColorName(rawValue: colorWord) else { throw fail("unknown word '\(colorWord)' (expected a color)") }
            index += 1
            guard let shapeWord = peek() else { throw fail("missing shape") }
            let singular = count > 1 && shapeWord.hasSuffix("s") ? String(shapeWord.dropLast()) : shapeWord
            guard let shape = ShapeKind(rawValue: singular), (count > 1) == (singular != shapeWord) else {
                throw fail("unknown word '\(shapeWord)' (expected a shape\(count > 1 ? " in the plural" : ""))")
            }
            index += 1
            return (Entity(color: color, shape: shape, size: size), count)
        }
        let (first, count) = try entity()
        guard let next = peek() else {
            self = .group(first, count: count, position: nil)
            return
        }
        let rest = words[index...].joined(separator: " ")
        if let position = Position.allCases.first(where: { $0.phrase == rest }) {
            self = .group(first, count: count, position: position)
            return
        }
        guard let relation = Relation.allCases.first(where: { rest.hasPrefix($0.phrase + " ") }) else {
            throw fail("unknown word '\(next)' (expected a position or a relation)")
        }
        guard count == 1 else { throw fail("relations take single objects, not '\(words[0])'") }
        index += relation.phrase.split(separator: " ").count
        let (second, secondCount) = try entity()
        guard secondCount == 1 else { throw fail("relations take single objects") }
        if let extra = peek() { throw fail("unexpected word '\(extra)' after the caption") }
        self = .relation(first, relation, second)
    }
}
