import Images

/// Another reward function's perspectives under prefixed names (`proxy_alignment` for a learned
/// model's `alignment` head), so a learned proxy and the gold judge can be composed and logged
/// side by side without their names colliding.
public struct PrefixedReward: RewardFunction, RewardWrapping {
    public let prefix: String
    public let base: any RewardFunction
    public var wrappedReward: any RewardFunction { base }

    public init(prefix: String, _ base: any RewardFunction) {
        self.prefix = prefix
        self.base = base
    }

    public var perspectives: [String] { base.perspectives.map { prefix + $0 } }

    public func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        let names = try perspectives.map { name -> String in
            guard name.hasPrefix(prefix) else { throw RewardError("'\(name)' is not one of \(self.perspectives.joined(separator: ", "))") }
            return String(name.dropFirst(prefix.count))
        }
        let scores = try base.score(images, prompts: prompts, perspectives: names)
        return Dictionary(uniqueKeysWithValues: zip(perspectives, names).map { ($0, scores[$1] ?? []) })
    }
}
