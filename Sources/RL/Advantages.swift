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

/// RLOO advantages (REINFORCE leave-one-out): A_i = r_i − the mean reward of the other samples
/// of its group. Unlike `groupAdvantages` nothing is divided by a spread, so a prompt whose images
/// differ more weighs more and near-ties stay near zero; the baseline does not involve sample i, so
/// the estimate is unbiased while the group's samples are drawn independently given the prompt.
/// A group of one has no baseline and gets 0.
public func leaveOneOutAdvantages(rewards: [Double], groups: [Int]) -> [Double] {
    precondition(rewards.count == groups.count, "\(groups.count) group labels for \(rewards.count) rewards")
    var sums: [Int: (sum: Double, count: Int)] = [:]
    for (reward, group) in zip(rewards, groups) { sums[group, default: (0, 0)].sum += reward; sums[group]!.count += 1 }
    return zip(rewards, groups).map { reward, group in
        let (sum, count) = sums[group]!
        return count < 2 ? 0 : reward - (sum - reward) / Double(count - 1)
    }
}

/// Advantages clipped to ±maximum.
public func clipAdvantages(_ advantages: [Double], maximum: Double) -> [Double] {
    advantages.map { Swift.min(Swift.max($0, -maximum), maximum) }
}
