import Engine
import Foundation
import Images
import RunLog
import XCTest
import Rewards
@testable import RL

/// Scores from a script, one row of values per call for each perspective: the guard's signals
/// made to rise and fall on cue.
final class ScriptedReward: RewardFunction {
    let script: [String: [Double]]
    private var calls: [String: Int]
    /// `startingAt`: calls already made (for a resumed run).
    init(_ script: [String: [Double]], startingAt start: Int = 0) {
        self.script = script
        calls = script.mapValues { _ in start }
    }
    var perspectives: [String] { script.keys.sorted() }
    func score(_ images: [RGBImage], prompts: [String], perspectives: [String]) throws -> [String: [Double]] {
        Dictionary(uniqueKeysWithValues: perspectives.map { name in
            let call = calls[name, default: 0]
            calls[name] = call + 1
            return (name, [Double](repeating: script[name]![min(call, script[name]!.count - 1)], count: images.count))
        })
    }
}

/// The overoptimization guard: the adaptive KL controller by hand, each trigger and action on
/// synthetic signals, and in a run: a divergence stops it, the decision is logged with its values,
/// and the weights the guard chose are restored exactly.
final class GuardTests: XCTestCase {
    /// β ← β(1 + K·clip((KL − target)/target, ±0.2)): KL 150 against 100 is clipped to +0.2.
    func testAdaptiveKLControllerByHand() {
        XCTAssertEqual(adaptedBeta(0.1, kl: 150, target: 100, gain: 0.1), 0.1 * 1.02, accuracy: 1e-15)
        XCTAssertEqual(adaptedBeta(0.1, kl: 90, target: 100, gain: 0.1), 0.1 * 0.99, accuracy: 1e-15)
        XCTAssertEqual(adaptedBeta(0.1, kl: 0, target: 100, gain: 0.1), 0.1 * 0.98, accuracy: 1e-15)
        XCTAssertEqual(adaptedBeta(0.1, kl: 100, target: 100, gain: 0.1), 0.1)
    }

    func settings(_ actions: [String]) -> GuardSettings {
        var s = GuardSettings()
        s.actions = actions
        s.klBudget = 100
        s.proxy = "proxy_alignment"
        s.textNorm = "proxy_textnorm_alignment"
        s.window = 3
        return s
    }

    func testKLBudgetTriggersEachActionWithItsValues() {
        var guardian = OveroptimizationGuard(settings: settings(["warn", "lowerLearningRate", "stop"]), beta: 0)
        XCTAssertEqual(guardian.observe(GuardSignals(epoch: 0, kl: 50, proxy: 1, textNorm: 0.5)).decisions, [])
        let decisions = guardian.observe(GuardSignals(epoch: 1, kl: 120, proxy: 1, textNorm: 0.5)).decisions
        XCTAssertEqual(decisions.count, 3)
        guard case .warn(let why) = decisions[0], case .scaleLearningRate(0.5, _) = decisions[1], case .stop = decisions[2] else {
            return XCTFail("\(decisions)")
        }
        XCTAssertTrue(why.contains("KL over the budget of 100") && why.contains("KL 120") && why.contains("TextNorm 0.5"), why)
        // The learning rate is lowered once per episode of a holding trigger, again after it clears.
        XCTAssertFalse(guardian.observe(GuardSignals(epoch: 2, kl: 130, proxy: 1, textNorm: 0.5)).decisions.contains { if case .scaleLearningRate = $0 { return true }; return false })
        _ = guardian.observe(GuardSignals(epoch: 3, kl: 90, proxy: 1, textNorm: 0.5))
        XCTAssertTrue(guardian.observe(GuardSignals(epoch: 4, kl: 140, proxy: 1, textNorm: 0.5)).decisions.contains { if case .scaleLearningRate = $0 { return true }; return false })
    }

    /// Divergence: the raw proxy up and TextNorm down across the window; not when both rise.
    func testDivergenceTriggersAndTheBestEpochStaysWithinBudget() {
        var guardian = OveroptimizationGuard(settings: settings(["warn"]), beta: 0)
        let rising = [(1.0, 0.5), (1.2, 0.6), (1.4, 0.7)]
        for (e, (p, t)) in rising.enumerated() { XCTAssertEqual(guardian.observe(GuardSignals(epoch: e, kl: 10, proxy: p, textNorm: t)).decisions, []) }
        XCTAssertEqual(guardian.bestEpoch, 2)
        _ = guardian.observe(GuardSignals(epoch: 3, kl: 10, proxy: 1.6, textNorm: 0.65))
        let decisions = guardian.observe(GuardSignals(epoch: 4, kl: 10, proxy: 1.8, textNorm: 0.6)).decisions
        guard case .warn(let why)? = decisions.first else { return XCTFail("\(decisions)") }
        XCTAssertTrue(why.contains("the raw proxy rose by 0.4 while TextNorm fell by 0.1 over epochs 2–4"), why)
        // A higher TextNorm over the KL budget is not a candidate to restore.
        _ = guardian.observe(GuardSignals(epoch: 5, kl: 500, proxy: 2, textNorm: 0.9))
        XCTAssertEqual(guardian.bestEpoch, 2)
        XCTAssertEqual(guardian.bestValue, 0.7)
    }

    /// The KL growth limit: the slope of log KL against the epoch by hand (epochs 0, 2, 4 at KL
    /// 10, 20, 80: Σ(e − ē)(y − ȳ)/Σ(e − ē)² = (ln 80 − ln 10)/4), a trigger only at or above the
    /// floor, none on a KL that levels off; unmeasured epochs and epochs before the span are not
    /// in the fit; `lastWithinBudget` restores the last epoch before the trigger.
    func testKLGrowthLimitByHand() {
        var s = GuardSettings()
        s.actions = ["warn", "restoreBest"]
        s.restoreBy = "lastWithinBudget"
        s.klGrowth = 0.3
        s.klGrowthSpan = 4
        s.klGrowthFloor = 30
        XCTAssertNil(OveroptimizationGuard.problem(with: s, objectiveUsesBeta: false))
        var guardian = OveroptimizationGuard(settings: s, beta: 0)
        XCTAssertEqual(guardian.observe(GuardSignals(epoch: 0, kl: 10, proxy: .nan, textNorm: .nan)).decisions, [])
        XCTAssertEqual(guardian.observe(GuardSignals(epoch: 1, kl: .nan, proxy: .nan, textNorm: .nan)).decisions, [])
        XCTAssertEqual(guardian.observe(GuardSignals(epoch: 2, kl: 20, proxy: .nan, textNorm: .nan)).decisions, [])
        XCTAssertEqual(guardian.bestEpoch, 2)
        let decisions = guardian.observe(GuardSignals(epoch: 4, kl: 80, proxy: .nan, textNorm: .nan)).decisions
        XCTAssertEqual(guardian.klGrowthRate()!.rate, Foundation.log(8.0) / 4, accuracy: 1e-12)
        guard case .warn(let why)? = decisions.first else { return XCTFail("\(decisions)") }
        XCTAssertTrue(why.contains("KL growing by 0.52 per epoch") && why.contains("epochs 0–4") && why.contains("KL 80"), why)
        XCTAssertEqual(guardian.bestEpoch, 2, "the growing epoch is not a candidate to restore")
        // Epoch 0 has left the span: the fit is epochs 2–6 only.
        _ = guardian.observe(GuardSignals(epoch: 6, kl: 80, proxy: .nan, textNorm: .nan))
        XCTAssertEqual(guardian.klGrowthRate()!.first, 2)

        // The same growth below the floor, and a KL that levels off above it: no trigger.
        var low = OveroptimizationGuard(settings: s, beta: 0)
        for (epoch, kl) in [(0, 1.0), (2, 4), (4, 16), (6, 29)] {
            XCTAssertEqual(low.observe(GuardSignals(epoch: epoch, kl: kl, proxy: .nan, textNorm: .nan)).decisions, [], "epoch \(epoch)")
        }
        var level = OveroptimizationGuard(settings: s, beta: 0)
        for (epoch, kl) in [(0, 40.0), (2, 45), (4, 38), (6, 50), (8, 42)] {
            XCTAssertEqual(level.observe(GuardSignals(epoch: epoch, kl: kl, proxy: .nan, textNorm: .nan)).decisions, [], "epoch \(epoch)")
        }
        XCTAssertEqual(level.bestEpoch, 8)
        s.klGrowth = -1
        XCTAssertTrue(OveroptimizationGuard.problem(with: s, objectiveUsesBeta: false)!.contains("klGrowth must be ≥ 0"))
    }

    /// `restoreBy: lastWithinBudget`: the last epoch whose measured KL is within the budget — not
    /// an unmeasured one after it, nor one over it — whatever the TextNorm signal says.
    func testRestoreTheLastEpochWithinTheBudget() {
        var s = settings(["stop", "restoreBest"])
        s.restoreBy = "lastWithinBudget"
        var guardian = OveroptimizationGuard(settings: s, beta: 0)
        for (epoch, kl, textNorm) in [(0, 0.0, 0.9), (1, .nan, 0.1), (2, 60, 0.2), (3, .nan, 0.3)] {
            XCTAssertEqual(guardian.observe(GuardSignals(epoch: epoch, kl: kl, proxy: 1, textNorm: textNorm)).decisions, [])
        }
        XCTAssertEqual(guardian.bestEpoch, 2)
        let stop = guardian.observe(GuardSignals(epoch: 4, kl: 101, proxy: 1, textNorm: 0.95))
        XCTAssertFalse(stop.bestChanged)
        guard case .stop(let why)? = stop.decisions.first else { return XCTFail("\(stop.decisions)") }
        XCTAssertTrue(why.contains("KL over the budget of 100") && why.contains("KL 101"), why)
        XCTAssertEqual(guardian.bestEpoch, 2)
        s.klBudget = 0
        XCTAssertTrue(OveroptimizationGuard.problem(with: s, objectiveUsesBeta: false)!.contains("lastWithinBudget needs a klBudget or a klGrowth limit"))
        s.restoreBy = "luck"
        XCTAssertTrue(OveroptimizationGuard.problem(with: s, objectiveUsesBeta: false)!.contains("'luck'"))
    }

    func testAdaptBetaAndSettingsThatCannotRun() {
        var s = settings(["adaptBeta"])
        s.targetKL = 100
        var guardian = OveroptimizationGuard(settings: s, beta: 0.1)
        guard case .setBeta(let beta, let why)? = guardian.observe(GuardSignals(epoch: 0, kl: 150, proxy: 1, textNorm: 0.5)).decisions.first else {
            return XCTFail()
        }
        XCTAssertEqual(beta, 0.102, accuracy: 1e-12)
        XCTAssertTrue(why.contains("KL 150 against the target 100"), why)
        XCTAssertEqual(guardian.beta, 0.102, accuracy: 1e-12)
        XCTAssertNotNil(OveroptimizationGuard.problem(with: s, objectiveUsesBeta: false))
        XCTAssertNil(OveroptimizationGuard.problem(with: s, objectiveUsesBeta: true))
        XCTAssertTrue(OveroptimizationGuard.problem(with: settings(["panic"]), objectiveUsesBeta: true)!.contains("unknown action 'panic'"))
        var blind = settings(["restoreBest"])
        blind.proxy = ""
        blind.textNorm = ""
        XCTAssertNotNil(OveroptimizationGuard.problem(with: blind, objectiveUsesBeta: true))
    }

    func guardedConfig() -> FineTuningConfig {
        var config = SelfTrainingTests.tinySelfTrainingConfig()
        config.selfTraining.k = 1
        config.epochs = 6
        config.rewards = RewardComposition(weights: ["proxy_x": 1])
        config.guard.actions = ["warn", "stop", "restoreBest"]
        config.guard.proxy = "proxy_x"
        config.guard.textNorm = "proxy_textnorm_x"
        config.guard.window = 3
        return config
    }

    let script = ["proxy_x": [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "proxy_textnorm_x": [0.5, 0.6, 0.55, 0.5, 0.45, 0.4]]

    /// In a run: TextNorm peaks at epoch 1 and falls while the raw proxy keeps rising; at epoch 3
    /// the guard sees the divergence, logs it with the values, stops before that epoch's update and
    /// restores the weights of the start of epoch 1 exactly.
    func testTheGuardStopsARunAndRestoresTheBestWeights() throws {
        let config = guardedConfig()
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("guard-\(UUID())")
        let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test", rewardFunctions: [ScriptedReward(script)])
        func weights() -> [String: [Double]] { Dictionary(uniqueKeysWithValues: trainer.parameters.map { ($0.name, $0.tensor.values) }) }
        var atStart = [weights()]
        try trainer.run(epochDone: { _ in atStart.append(weights()) })
        XCTAssertEqual(trainer.epoch, 4, "stopped after the epoch whose signals diverged")
        XCTAssertNotEqual(atStart[1], atStart[0], "the weights moved")
        XCTAssertEqual(atStart[4], atStart[3], "no update in the epoch the guard stopped")
        XCTAssertEqual(weights(), atStart[1], "restored the weights of the start of epoch 1")
        try trainer.close()
        let reader = try RunLogReader(url: output.appendingPathComponent("run.h5"))
        let events = try reader.events().filter { $0.kind == "guard" }
        XCTAssertEqual(events.count, 3, "\(events)")
        XCTAssertTrue(events[0].message.hasPrefix("warning: the raw proxy rose by 0.2 while TextNorm fell by 0.1"), events[0].message)
        XCTAssertTrue(events[1].message.hasPrefix("stop:"), events[1].message)
        XCTAssertTrue(events[2].message.contains("start of epoch 1"), events[2].message)
        XCTAssertEqual(try reader.metric("guard_textnorm"), [0.5, 0.6, 0.55, 0.5])
        XCTAssertTrue(FileManager.default.fileExists(atPath: output.appendingPathComponent("model/unet.safetensors").path))
        // Replayed on the signals the run logged, the same guard makes the same decisions.
        let (kl, proxy, textNorm) = (try reader.metric("kl_mean"), try reader.metric("guard_proxy"), try reader.metric("guard_textnorm"))
        let replay = GuardReplay(settings: config.guard, signals: proxy.indices.map {
            GuardSignals(epoch: $0, kl: kl[$0], proxy: proxy[$0], textNorm: textNorm[$0])
        })
        XCTAssertEqual(replay.decisions.map(\.message), events.prefix(2).map(\.message))
        XCTAssertEqual(replay.stoppedAt, 3)
        XCTAssertEqual(replay.restoreEpoch, 1)
    }

    /// `restoreBy: lastWithinBudget` at the end of a run: the final weights are measured too, so a
    /// run that never crossed its KL budget keeps them (before, it went back to the start of the
    /// last epoch, whose KL had been the last measured); one over budget from its first update on
    /// goes back to the base weights (epoch 0's KL is 0).
    func testTheFinalWeightsAreMeasuredBeforeARestore() throws {
        for (budget, keeps) in [(1e9, true), (1e-12, false)] {
            var config = guardedConfig()
            config.epochs = 3
            config.kl.every = 1
            config.guard.actions = ["restoreBest"]
            config.guard.restoreBy = "lastWithinBudget"
            config.guard.klBudget = budget
            let output = FileManager.default.temporaryDirectory.appendingPathComponent("guard-final-\(UUID())")
            let trainer = try FineTuningTrainer(config: config, output: output, commandLine: "test", rewardFunctions: [ScriptedReward(script)])
            func weights() -> [String: [Double]] { Dictionary(uniqueKeysWithValues: trainer.parameters.map { ($0.name, $0.tensor.values) }) }
            let base = weights()
            var trained: [String: [Double]] = [:]
            try trainer.run(epochDone: { _ in trained = weights() })
            XCTAssertNotEqual(trained, base, "the weights moved")
            XCTAssertEqual(weights(), keeps ? trained : base, "budget \(budget)")
            try trainer.close()
            let events = try RunLogReader(url: output.appendingPathComponent("run.h5")).events().filter { $0.kind == "guard" }.map(\.message)
            XCTAssertTrue(events.contains { $0.hasPrefix("the final weights measured: KL ") && !$0.contains("KL nan") }, "\(events)")
            XCTAssertEqual(events.last?.hasPrefix(keeps ? "kept the final weights" : "restored the weights the run had at the start of epoch 0"), true,
                           "\(events)")
            let saved = try Data(contentsOf: output.appendingPathComponent("model/unet.safetensors"))
            XCTAssertFalse(saved.isEmpty)
        }
    }

    /// Stopped after epoch 2 and resumed, the guarded run ends with the same weights and the same
    /// guard events as one never interrupted: the guard's history, β, learning rate and best
    /// weights are in the checkpoint — also when the KL is measured every other epoch, so that the
    /// history a checkpoint holds has NaN for the unmeasured ones.
    func testAResumedGuardedRunEqualsAnUninterruptedOne() throws {
        for every in [1, 2] {
            var config = guardedConfig()
            config.kl.every = every
            try checkResumeEqualsUninterrupted(config)
        }
    }

    func checkResumeEqualsUninterrupted(_ config: FineTuningConfig) throws {
        let whole = FileManager.default.temporaryDirectory.appendingPathComponent("guard-whole-\(UUID())")
        let pieces = FileManager.default.temporaryDirectory.appendingPathComponent("guard-pieces-\(UUID())")
        let uninterrupted = try FineTuningTrainer(config: config, output: whole, commandLine: "test", rewardFunctions: [ScriptedReward(script)])
        try uninterrupted.run()
        try uninterrupted.close()
        let first = try FineTuningTrainer(config: config, output: pieces, commandLine: "test", rewardFunctions: [ScriptedReward(script)])
        try first.run(stopAfter: 2)
        try first.close()
        let resumed = try FineTuningTrainer(config: config, output: pieces, commandLine: "test", resume: true,
                                            rewardFunctions: [ScriptedReward(script, startingAt: 2)])
        try resumed.run()
        try resumed.close()
        for name in ["unet.safetensors"] {
            XCTAssertEqual(try Data(contentsOf: whole.appendingPathComponent("model/\(name)")),
                           try Data(contentsOf: pieces.appendingPathComponent("model/\(name)")), name)
        }
        let events = { (url: URL) in try RunLogReader(url: url.appendingPathComponent("run.h5")).events().filter { $0.kind == "guard" }.map(\.message) }
        XCTAssertEqual(try events(pieces), try events(whole))
    }
}
