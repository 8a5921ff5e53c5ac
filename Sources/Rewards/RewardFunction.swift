import Images

/// A reward seen from named perspectives (`alignment`, `fidelity`, `safety`, `overall`, …):
/// scores a batch of (image, prompt) pairs. The gold judge, compressibility and learned reward
/// models all plug in here.
public protocol RewardFunction {
    /// The perspectives this function can score.
    var perspectives: [String] { get }
    /// One score per image for each perspective asked for (a subset of `perspectives`).
    func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]]
}

/// What went wrong while scoring, in one line.
public struct RewardError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
