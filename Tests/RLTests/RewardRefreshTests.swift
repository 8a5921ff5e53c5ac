import Foundation
import XCTest
import Engine
import Images
import Rewards
import RunLog
@testable import RL

/// A learned reward stand-in: its score is the number of refreshes so far, and its state is that number.
final class CountingReward: RewardFunction, RefreshableReward {
    var refreshes = 0
    var imagesSeen: [Int] = []
    var perspectives: [String] { ["counted"] }
    func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        ["counted": images.map { Double(refreshes) + 0.5 * Double($0.pixels[0] % 2) }]
    }
    func refresh(images: [RGBImage], prompts: [String], groups: [Int], settings: RewardRefreshSettings,
                 using rng: inout RandomGenerator) throws -> (loss: Double, agreementBefore: Double) {
        refreshes += 1
        imagesSeen.append(images.count)
        return (Double(refreshes), 0.5)
    }
    func refreshState() throws -> [String: Tensor] {
        refreshes == 0 ? [:] : ["refreshes": try Tensor([Double(refreshes)], shape: [1], dtype: .float64)]
    }
    func restoreRefreshState(_ state: [String: Tensor]) throws { refreshes = Int(state["refreshes"]!.values[0]) }
}

/// The trainer refreshes a learned reward every `every` epochs on the epoch's usable images, logs
/// the refresh, carries its state through a checkpoint, and refuses the setting without one.
final class RewardRefreshTests: XCTestCase {
    func config() -> FineTuningConfig {
        var config = FineTuningTrainerTests.tinyConfig()
        config.epochs = 4
        config.rewards = RewardComposition(weights: ["counted": 1])
        config.rewardRefresh.every = 2
        return config
    }

    func testRefreshesEveryNEpochsAndLogsIt() throws {
        let reward = CountingReward()
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("refresh-\(UUID())")
        try FineTuningTrainer(config: config(), output: output, commandLine: "test", rewardFunctions: [reward]).run()
        XCTAssertEqual(reward.refreshes, 2, "after epochs 2 and 4")
        XCTAssertEqual(reward.imagesSeen, [4, 4], "the epoch's usable images (2 prompts × 2)")
        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        XCTAssertEqual(try reader.metric("reward_refresh_loss").map { $0.isNaN ? -1 : $0 }, [-1, 1, -1, 2])
    }

    func testResumedRunRestoresTheRefreshedReward() throws {
        let whole = CountingReward(), pieces = CountingReward()
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("refresh-resume-\(UUID())")
        try FineTuningTrainer(config: config(), output: base.appendingPathComponent("whole"), commandLine: "test", rewardFunctions: [whole]).run()
        try FineTuningTrainer(config: config(), output: base.appendingPathComponent("pieces"), commandLine: "test",
                              rewardFunctions: [pieces]).run(stopAfter: 3)
        let fresh = CountingReward()
        let resumed = try FineTuningTrainer(config: config(), output: base.appendingPathComponent("pieces"), commandLine: "test", resume: true,
                                            rewardFunctions: [fresh])
        XCTAssertEqual(fresh.refreshes, 1, "the checkpoint after epoch 3 holds one refresh")
        try resumed.run()
        try resumed.close()
        XCTAssertEqual(fresh.refreshes, 2)
        XCTAssertEqual(try Data(contentsOf: base.appendingPathComponent("whole/model/unet.safetensors")),
                       try Data(contentsOf: base.appendingPathComponent("pieces/model/unet.safetensors")))
    }

    func testRefreshWithoutALearnedRewardIsRefused() {
        var config = config()
        config.rewards = RewardComposition(weights: ["fixed": 1])
        XCTAssertThrowsError(try FineTuningTrainer(config: config, output: FileManager.default.temporaryDirectory.appendingPathComponent("r-\(UUID())"),
                                                   commandLine: "test", rewardFunctions: [FixedReward(value: 1)])) {
            XCTAssertTrue("\($0)".contains("rewardModel"), "\($0)")
        }
        config.rewardRefresh.steps = 0
        XCTAssertThrowsError(try config.validate()) { XCTAssertTrue("\($0)".contains("rewardRefresh"), "\($0)") }
    }
}
