/// Semantically contrastive prompts for TextNorm: each differs from the original in one thing.

/// What a contrastive prompt changed.
public enum ContrastKind: String, Codable, Sendable, CaseIterable {
    case color, shape, count, relation
}

/// A prompt that differs from another in one labelled way.
public struct ContrastivePrompt: Hashable, Codable, Sendable {
    public var prompt: Prompt
    public var changed: ContrastKind
}

extension Prompt {
    /// Up to `limit` contrastive prompts, in a fixed order that cycles through the kinds of change
    /// (color, shape, count, relation) so that a small limit still mixes them.
    public func contrastive(limit: Int = 8) -> [ContrastivePrompt] {
        var byKind: [ContrastKind: [Prompt]] = [:]
        func recolor(_ e: Entity) -> [Entity] { ColorName.allCases.filter { $0 != e.color }.map { Entity(color: $0, shape: e.shape, size: e.size) } }
        func reshape(_ e: Entity) -> [Entity] { ShapeKind.allCases.filter { $0 != e.shape }.map { Entity(color: e.color, shape: $0, size: e.size) } }
        switch self {
        case let .group(entity, count, position):
            byKind[.color] = recolor(entity).map { .group($0, count: count, position: position) }
            byKind[.shape] = reshape(entity).map { .group($0, count: count, position: position) }
            byKind[.count] = [1, 2, 3].filter { $0 != count }.map { .group(entity, count: $0, position: $0 == 1 ? position : nil) }
        case let .relation(first, relation, second):
            byKind[.color] = recolor(first).filter { $0 != second }.map { .relation($0, relation, second) }
                + recolor(second).filter { $0 != first }.map { .relation(first, relation, $0) }
            byKind[.shape] = reshape(first).filter { $0 != second }.map { .relation($0, relation, second) }
                + reshape(second).filter { $0 != first }.map { .relation(first, relation, $0) }
            byKind[.relation] = [.relation(first, relation.flipped, second)]
                + Relation.allCases.filter { $0 != relation && $0 != relation.flipped }.map { .relation(first, $0, second) }
        }
        var result: [ContrastivePrompt] = []
        var round = 0
        while result.count < limit {
            var added = false
            for kind in ContrastKind.allCases {
                if let options = byKind[kind], round < options.count, result.count < limit {
                    result.append(ContrastivePrompt(prompt: options[round], changed: kind))
                    added = true
                }
            }
            if !added { break }
            round += 1
        }
        return result
    }
}
