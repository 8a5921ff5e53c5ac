import Rewards

/// Per-prompt running reward statistics (DDPO): each prompt keeps a buffer of its last
/// `bufferSize` rewards; a reward's advantage is (r − mean) / (std + 1e-6) over its prompt's
/// buffer, or over the whole batch while the buffer holds fewer than `minCount` rewards.
/// Standard deviations are population ones (divide by n).
public struct PerPromptStatTracker: Codable, Equatable, Sendable {
    public let bufferSize: Int
    public let minCount: Int
    public private(set) var buffers: [String: [Double]] = [:]

    public init(bufferSize: Int, minCount: Int) {
        self.bufferSize = bufferSize
        self.minCount = minCount
    }

    /// Adds the batch's rewards to the buffers, then returns their advantages.
    public mutating func update(prompts: [String], rewards: [Double]) -> [Double] {
        precondition(prompts.count == rewards.count, "\(prompts.count) prompts for \(rewards.count) rewards")
        let batch = meanAndStd(rewards)
        for (prompt, reward) in zip(prompts, rewards) {
            var buffer = buffers[prompt, default: []]
            buffer.append(reward)
            if buffer.count > bufferSize { buffer.removeFirst(buffer.count - bufferSize) }
            buffers[prompt] = buffer
        }
        var stats: [String: (mean: Double, std: Double)] = [:]
        for prompt in Set(prompts) {
            let buffer = buffers[prompt]!
            stats[prompt] = buffer.count < minCount ? batch : meanAndStd(buffer)
        }
        return zip(prompts, rewards).map { prompt, reward in
            let (mean, std) = stats[prompt]!
            return (reward - mean) / (std + 1e-6)
        }
    }
}

/// GRPO-style group advantages: A_i = (r_i − mean_G) / (std_G + δ) within each group G of samples
/// of the same prompt (population std). `groups[i]` names the group of sample i.
public func groupAdvantages(rewards: [Double], groups: [Int], delta: Double = 1e-6) -> [Double] {
    precondition(rewards.count == groups.count, "\(groups.count) group labels for \(rewards.count) rewards")
    var members: [Int: [Double]] = [:]
    for (reward, group) in zip(rewards, groups) { members[group, default: []].append(reward) }
    let stats = members.mapValues(meanAndStd)
    return zip(rewards, groups).map { reward, group in (reward - stats[group]!.mean) / (stats[group]!.std + delta) }
}

/// Advantages clipped to ±maximum.
public func clipAdvantages(_ advantages: [Double], maximum: Double) -> [Double] {
    advantages.map { Swift.min(Swift.max($0, -maximum), maximum) }
}
