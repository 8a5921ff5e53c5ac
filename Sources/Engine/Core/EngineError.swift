/// Errors the engine reports for bad input: each names the op, and the shapes, tensor or value
/// at fault, in one line.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(op: String, String)
    case invalidArgument(op: String, String)
    case nonFinite(what: String)
    case checkpoint(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, message): return "\(op): shape mismatch: \(message)"
        case let .invalidArgument(op, message): return "\(op): \(message)"
        case let .nonFinite(what): return "non-finite value (NaN or infinity) in \(what)"
        case let .checkpoint(message): return "checkpoint: \(message)"
        }
    }
}

/// Throws a shape error naming the op unless `condition` holds. Shapes are checked where an op is
/// called, so a mistake stops there with both shapes named instead of reading out of bounds.
@inline(__always)
public func checkShape(_ condition: Bool, _ op: String, _ message: @autoclosure () -> String) throws {
    if !condition { throw EngineError.shapeMismatch(op: op, message()) }
}

/// Throws an invalid-argument error naming the op unless `condition` holds.
@inline(__always)
public func checkArgument(_ condition: Bool, _ op: String, _ message: @autoclosure () -> String) throws {
    if !condition { throw EngineError.invalidArgument(op: op, message()) }
}

/// `[2, 3, 4]` for error messages.
public func describe(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
