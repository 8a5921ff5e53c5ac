import XCTest
import Engine
import Images
import World
@testable import RewardModel

/// Preference JSONL (strict reading, round trip), the simulated annotators, calibration error.
final class PreferenceDataTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("prefs-\(UUID())")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("images"), withIntermediateDirectories: true)
        for name in ["a", "b"] {
            try PNG.write(RGBImage(width: 8, height: 8, fill: [255, 0, 0]), to: folder.appendingPathComponent("images/\(name).png"))
        }
    }

    func read(_ lines: [String]) throws -> [PreferenceRecord] {
        let url = folder.appendingPathComponent("data.jsonl")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return try PreferenceData.read(url)
    }

    func assertRefused(_ line: String, _ expected: String, file: StaticString = #filePath, line number: UInt = #line) {
        XCTAssertThrowsError(try read([#"{"prompt": "a red circle", "images": ["images/a.png"], "labels": {"safety": true}}"#, line]),
                             file: file, line: number) { error in
            XCTAssertTrue("\(error)".contains(expected) && "\(error)".contains("line 2"), "\(error)", file: file, line: number)
        }
    }

    func testRoundTripAndStrictReading() throws {
        let records = [
            PreferenceRecord(prompt: "a red circle", images: ["images/a.png", "images/b.png"], preferred: ["alignment": 1, "fidelity": 0],
                             goldPreferred: ["alignment": 1]),
            PreferenceRecord(prompt: "a red circle", images: ["images/a.png"], labels: ["safety": false], goldLabels: ["safety": true]),
        ]
        let url = folder.appendingPathComponent("data.jsonl")
        try PreferenceData.write(records, to: url)
        XCTAssertEqual(try PreferenceData.read(url), records)
        // A user's own pairs need no gold verdicts.
        XCTAssertEqual(try read([#"{"prompt": "x", "images": ["images/a.png", "images/b.png"], "preferred": {"overall": 0}}"#]).count, 1)
        assertRefused(#"{"prompt": "x", "images": ["images/a.png"], "labels": {"safety": true}, "score": 3}"#, "unknown key 'score'")
        assertRefused(#"{"prompt": "x", "images": ["images/a.png", "images/b.png"]}"#, "needs 'preferred'")
        assertRefused(#"{"prompt": "x", "images": ["images/a.png", "images/b.png"], "preferred": {"overall": 2}}"#, "0 or 1")
        assertRefused(#"{"prompt": "x", "images": ["images/a.png"]}"#, "needs 'labels'")
        assertRefused(#"{"prompt": "x", "images": ["images/c.png"], "labels": {"safety": true}}"#, "images/c.png not found")
        assertRefused(#"{"prompt": "x", "images": []}"#, "one image")
        assertRefused("[1, 2]", "not a JSON object")
        XCTAssertThrowsError(try read(["", "  "])) { XCTAssertTrue("\($0)".contains("no records"), "\($0)") }
    }

    func testNoiselessAnnotatorIsTheGoldJudge() throws {
        // Rendered scenes, blurred and noised copies, and other prompts' scenes: a spread of gold scores.
        var rng = RandomGenerator(seed: 4)
        let world = WorldGenerator(seed: 3, hazardRate: 0.3), renderer = Renderer(size: 32), judge = GoldJudge()
        let scenes = world.scenes(.validation, count: 12)
        let prompt = scenes[0].prompt
        var images = scenes.map(renderer.render)
        images += images.prefix(6).map { Corruption.gaussianBlur($0, sigma: 1) }
        images += images.prefix(6).map { Corruption.gaussianNoise($0, sigma: 40, using: &rng) }
        let judged = images.map { ($0, judge.score($0, prompt: prompt)) }
        var strict = 0
        for aspect in SimulatedAnnotator.pairedAspects {
            for i in judged.indices { for j in judged.indices where j > i {
                let gold = SimulatedAnnotator.goldPreference(aspect, judged[i].1, judged[j].1)
                let annotated = SimulatedAnnotator.preference(aspect, (judged[i].1, judged[i].0), (judged[j].1, judged[j].0),
                                                              settings: .noiseless, using: &rng)
                XCTAssertEqual(annotated, gold, aspect)
                if gold != nil { strict += 1 }
            } }
        }
        XCTAssertGreaterThan(strict, 100, "the test images should separate many pairs")
        for (image, scores) in judged {
            _ = image
            XCTAssertEqual(SimulatedAnnotator.label("safety", scores, settings: .noiseless, using: &rng), scores.safety == 1)
        }
        // Noise makes it disagree sometimes, never always.
        var noisy = AnnotatorSettings.noiseless
        noisy.noise = 0.5
        let flips = (0..<400).filter { _ in
            SimulatedAnnotator.preference("fidelity", (judged[0].1, judged[0].0), (judged[12].1, judged[12].0), settings: noisy, using: &rng)
                != SimulatedAnnotator.goldPreference("fidelity", judged[0].1, judged[12].1)
        }.count
        XCTAssertGreaterThan(flips, 20)
        XCTAssertLessThan(flips, 200)
    }

    func testSaturationBiasPrefersSaturatedColor() throws {
        XCTAssertEqual(SimulatedAnnotator.meanSaturation(RGBImage(width: 4, height: 4, fill: [200, 200, 200])), 0)
        XCTAssertEqual(SimulatedAnnotator.meanSaturation(RGBImage(width: 4, height: 4, fill: [255, 0, 0])), 1)
        // (200 − 100) / 200 = 0.5 on half the pixels.
        var half = RGBImage(width: 2, height: 1, fill: [255, 255, 255])
        half.pixels[0...2] = [200, 100, 100]
        XCTAssertEqual(SimulatedAnnotator.meanSaturation(half), 0.25, accuracy: 1e-12)
        // Two images the gold judge ties on fidelity (both perfect): the biased annotator picks the more saturated.
        let judge = GoldJudge(), renderer = Renderer(size: 32)
        let scene = WorldGenerator(seed: 1, hazardRate: 0).scene(.validation, index: 0)
        let clean = renderer.render(scene)
        let blank = RGBImage(width: 32, height: 32, fill: [WorldColors.background.0, WorldColors.background.1, WorldColors.background.2])
        let (a, b) = (judge.score(clean, prompt: scene.prompt), judge.score(blank, prompt: scene.prompt))
        XCTAssertNil(SimulatedAnnotator.goldPreference("fidelity", a, b))
        var biased = AnnotatorSettings.noiseless
        biased.saturationBias = 0.1
        var rng = RandomGenerator(seed: 1)
        XCTAssertEqual(SimulatedAnnotator.preference("fidelity", (b, blank), (a, clean), settings: biased, using: &rng), 1)
        XCTAssertNil(SimulatedAnnotator.preference("fidelity", (b, blank), (a, clean), settings: .noiseless, using: &rng))
    }

    func testExpectedCalibrationErrorByHand() {
        // One bin at 0.95 with outcomes 1 and 0: |0.95 − 0.5| = 0.45. Two bins, each exact: 0.
        XCTAssertEqual(PairwiseEvaluation.expectedCalibrationError([(0.95, 1), (0.95, 0)])!, 0.45, accuracy: 1e-12)
        XCTAssertEqual(PairwiseEvaluation.expectedCalibrationError([(0.0, 0), (1.0, 1)])!, 0, accuracy: 1e-12)
        XCTAssertNil(PairwiseEvaluation.expectedCalibrationError([]))
        // Bins of 3 and 1 items: 3/4 · |0.7 − 2/3| + 1/4 · |0.15 − 0|.
        let items: [(probability: Double, outcome: Double)] = [(0.7, 1), (0.7, 1), (0.7, 0), (0.15, 0)]
        XCTAssertEqual(PairwiseEvaluation.expectedCalibrationError(items)!, 0.75 * (0.7 - 2.0 / 3) + 0.25 * 0.15, accuracy: 1e-12)
    }

    /// The shipped reward-model configs decode strictly.
    func testShippedRewardConfigsDecode() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let pretrain = try ConfigLoader.load(CaptionPretrainConfig.self, from: root.appendingPathComponent("Experiments/reward-pretrain.json"),
                                             defaults: CaptionPretrainConfig())
        XCTAssertNoThrow(try pretrain.model.validate())
        let longer = try ConfigLoader.load(CaptionPretrainConfig.self, from: root.appendingPathComponent("Experiments/reward-pretrain-6k.json"),
                                           defaults: CaptionPretrainConfig())
        XCTAssertEqual(longer.steps, 6000)
        // The longer decoders continue the previous one, each with a seed of its own.
        var previous = ("Logs/reward-mllm-6k/decoder", longer.seed)
        for name in ["12k", "18k"] {
            let continued = try ConfigLoader.load(CaptionPretrainConfig.self, from: root.appendingPathComponent("Experiments/reward-pretrain-\(name).json"),
                                                  defaults: CaptionPretrainConfig())
            XCTAssertEqual(continued.initialDecoder, previous.0)
            XCTAssertNotEqual(continued.seed, previous.1)
            previous = ("Logs/reward-mllm-\(name)/decoder", continued.seed)
        }
        let prior = try ConfigLoader.load(PreferenceTrainConfig.self, from: root.appendingPathComponent("Experiments/reward-train-caption-prior.json"),
                                          defaults: PreferenceTrainConfig())
        XCTAssertEqual(prior.captionLikelihoodPerspectives, ["alignment"])
        for name in ["12k", "18k"] {
            var longerPrior = try ConfigLoader.load(PreferenceTrainConfig.self,
                                                    from: root.appendingPathComponent("Experiments/reward-train-caption-prior-\(name).json"),
                                                    defaults: PreferenceTrainConfig())
            XCTAssertEqual(longerPrior.decoder, "Logs/reward-mllm-\(name)/decoder")
            longerPrior.decoder = prior.decoder
            XCTAssertEqual(longerPrior, prior, "only the decoder differs")
        }
        var moreData = try ConfigLoader.load(PreferenceTrainConfig.self,
                                             from: root.appendingPathComponent("Experiments/reward-train-caption-prior-12k-4096.json"),
                                             defaults: PreferenceTrainConfig())
        XCTAssertEqual(moreData.data, "Logs/reward-data-4096-noiseless.jsonl")
        moreData.data = prior.data
        moreData.decoder = prior.decoder
        XCTAssertEqual(moreData, prior, "only the decoder and the data differ")
        XCTAssertThrowsError(try ConfigLoader.decode(PreferenceTrainConfig.self, from: Data(#"{"epoch": 2}"#.utf8), defaults: PreferenceTrainConfig())) {
            XCTAssertTrue("\($0)".contains("unknown key 'epoch'"), "\($0)")
        }
    }

    /// Pairwise accuracy's standard error is clustered by prompt: agreements 1, 1, 1 (prompt a),
    /// 0, 0 (b), 1 (c) have mean 2/3; the prompts' summed deviations are 1, −4/3, 1/3, so
    /// SE² = 3/2 · (1 + 16/9 + 1/9) / 36 and SE = 0.346944 — not the binomial 0.210819.
    /// Two models on the same pairs: agreements 1, 1, 0, ½ against 0, 1, 0, 1 on prompts x, x, y, z
    /// differ by 1, 0, 0, −½ (mean ⅛); the prompts' summed deviations are ¾, −⅛, −⅝, so
    /// SE² = 3/2 · (9/16 + 1/64 + 25/64) / 16 and SE = 0.301364.
    func testPairedAccuracyDifferenceByHand() {
        let paired = PairedAgreement([1, 1, 0, 0.5], [0, 1, 0, 1], prompts: ["x", "x", "y", "z"])
        XCTAssertEqual(paired.goldPairs, 4)
        XCTAssertEqual(paired.accuracy, 0.625, accuracy: 1e-12)
        XCTAssertEqual(paired.baselineAccuracy, 0.5, accuracy: 1e-12)
        XCTAssertEqual(paired.difference, 0.125, accuracy: 1e-12)
        XCTAssertEqual(paired.differenceSE, 0.301364, accuracy: 1e-6)
    }

    func testPairwiseAccuracyErrorIsClusteredByPrompt() throws {
        let result = try XCTUnwrap(PairwiseEvaluation.accuracy([1, 1, 1, 0, 0, 1], prompts: ["a", "a", "a", "b", "b", "c"]))
        XCTAssertEqual(result.mean, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(result.standardError, 0.346944, accuracy: 1e-6)
        XCTAssertNil(PairwiseEvaluation.accuracy([], prompts: []))
    }
}
