import Images

/// A reward seen from named perspectives (`alignment`, `fidelity`, `safety`, `overall`, …):
/// scores a batch of (image, prompt) pairs. The gold judge, compressibility, brightness and
/// learned reward models all plug in here.
public protocol RewardFunction {
    /// The perspectives this function can score.
    var perspectives: [String] { get }
    /// One score per image for each perspective asked for (a subset of `perspectives`).
    func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]]
}

extension RewardFunction {
    /// Fails naming the first of `asked` that this function does not offer, and what it offers;
    /// `name` is how the message calls the function ("gold judge").
    public func requireOffered(_ asked: [String], name: String) throws {
        for perspective in asked where !perspectives.contains(perspective) {
            throw RewardError("\(name) has no perspective '\(perspective)' (it has \(perspectives.joined(separator: ", ")))")
        }
    }
}

/// What went wrong while scoring, in one line.
public struct RewardError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
