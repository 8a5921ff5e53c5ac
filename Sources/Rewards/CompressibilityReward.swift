import Images

/// DDPO's compressibility sanity task with PNG instead of JPEG: the reward is minus the encoded
/// size in kilobytes, so flat, simple images score higher. Perspective `compressibility`.
public struct CompressibilityReward: RewardFunction {
    public init() {}

    public var perspectives: [String] { ["compressibility"] }

    public func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        try requireOffered(perspectives, name: "compressibility reward")
        guard !perspectives.isEmpty else { return [:] }
        return ["compressibility": images.map { -Double(PNG.encode($0).count) / 1000 }]
    }
}
