import Foundation
import RewardModel
import Rewards

/// Every reward a command can name: the built-in ones (the gold judge's perspectives,
/// compressibility, brightness) and, with a reward model folder, its heads as `proxy_<head>` and
/// their TextNorm versions as `proxy_textnorm_<head>`.
func availableRewardFunctions(rewardModel: String, textNorm: TextNormSettings = TextNormSettings()) throws -> [any RewardFunction] {
    var functions = builtInRewardFunctions
    if !rewardModel.isEmpty {
        let learned = try LearnedReward.load(from: URL(fileURLWithPath: rewardModel))
        functions.insert(PrefixedReward(prefix: "proxy_", learned), at: 0)
        functions.insert(PrefixedReward(prefix: "proxy_", try TextNormReward(learned, settings: textNorm)), at: 1)
    }
    return functions
}
