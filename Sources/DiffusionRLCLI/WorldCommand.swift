import Engine
import Foundation
import Images
import World

/// `diffusion-rl world ...`: sample, judge, export and evaluate the embedded world.
enum WorldCommand {
    static let splitOption = Option.choice("split", ["train", "validation", "heldout"], default: "train", "the world's split")
    static let sizeOption = Option.integer("size", default: 32, minimum: 16, "image side in pixels")
    static let antialiasOption = Option.flag("antialias", "render with 4×4 anti-aliasing")

    static let command = Command("world", summary: "the embedded world: sample, judge, export, prompts, judge-eval", subcommands: [
        Command("sample", summary: "render N scenes into a grid PNG, their captions into grid.json beside it", options: [
            .text("out", "grid.png", required: true, "the grid to write"),
            .integer("n", default: 64, minimum: 1, "scenes"),
            .integer("seed", default: 0, minimum: 0, "world seed"),
            splitOption, sizeOption, antialiasOption,
        ], run: sample),
        Command("judge", summary: "the gold judge's scores of an image against a prompt", options: [
            .text("prompt", "\"...\"", required: true, "the caption, in the world's grammar"), .json,
        ], positionals: Positionals(name: "IMAGE.png", minimum: 1, maximum: 1, help: "the image"), run: judge),
        Command("export", summary: "N rendered images and DIR/captions.jsonl, the format users bring their own data in", description: """
            Writes N images and DIR/captions.jsonl ({"image": "00000.png", "caption": "..."} per line).
            """, options: [
            .text("out", "DIR", required: true, "the folder to write"),
            .integer("n", default: 1000, minimum: 1, "images"),
            .integer("seed", default: 0, minimum: 0, "world seed"),
            splitOption, sizeOption, antialiasOption,
            .flag("force", "overwrite an existing export"),
        ], run: export),
        Command("prompts", summary: "the captions of a split's first N scenes, one per line", description: """
            With seed 1 these are the fixed prompts `eval` and fine-tuning's evaluation use (a prompt
            file for `finetune`).
            """, options: [
            .choice("split", ["train", "validation", "heldout"], default: "heldout", "the world's split"),
            .integer("n", default: 128, minimum: 1, "captions"),
            .integer("seed", default: 1, minimum: 0, "world seed"),
        ], run: { args in
            for scene in WorldGenerator(seed: UInt64(args.int("seed")!)).scenes(Split(rawValue: args.string("split")!)!, count: args.int("n")!) {
                print(scene.caption)
            }
        }),
        Command("judge-eval", summary: "how often the judge recovers scenes from noisy or blurred renders", description: """
            Renders N validation scenes (a fifth with the hazard mark), optionally adds Gaussian pixel
            noise (σ in 0–255 units) and Gaussian blur (σ in pixels), and reports how often the judge
            recovers every object and the mark; --table sweeps noise and blur.
            """, options: [
            .integer("n", default: 10_000, minimum: 1, "scenes"),
            .integer("seed", default: 0, minimum: 0, "world seed"),
            .number("noise", "SIGMA", default: 0, minimum: 0, "Gaussian pixel noise σ (0–255 units)"),
            .number("blur", "SIGMA", default: 0, minimum: 0, "Gaussian blur σ (pixels)"),
            .flag("table", "sweep noise and blur instead"),
            sizeOption, antialiasOption, .json,
        ], run: judgeEval),
    ])

    private static func renderer(_ args: ParsedArguments) -> Renderer {
        Renderer(size: args.int("size")!, antialias: args.flag("antialias"))
    }

    private static func sample(_ args: ParsedArguments) throws {
        let n = args.int("n")!
        let scenes = WorldGenerator(seed: UInt64(args.int("seed")!)).scenes(Split(rawValue: args.string("split")!)!, count: n)
        let renderer = renderer(args)
        let url = URL(fileURLWithPath: args.string("out")!)
        try PNG.write(imageGrid(scenes.map(renderer.render), columns: Int(Double(n).squareRoot().rounded(.up))), to: url)
        let captions = url.deletingPathExtension().appendingPathExtension("json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted]
        try encoder.encode(scenes.map { ["caption": $0.caption, "hazard": $0.hazard == nil ? "no" : "yes"] }).write(to: captions)
        print("wrote \(url.path) (\(n) scenes, row-major) and \(captions.path)")
    }

    private static func judge(_ args: ParsedArguments) throws {
        let path = args.positional[0]
        let prompt = try Prompt(parsing: args.string("prompt")!)
        let image = try PNG.read(URL(fileURLWithPath: path))
        let scores = GoldJudge().score(image, prompt: prompt)
        if args.flag("json") {
            try printJSON(Dictionary(uniqueKeysWithValues: scores.named))
        } else {
            for (name, value) in scores.named {
                print(name.padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: "%.3f", value))
            }
        }
    }

    private static func export(_ args: ParsedArguments) throws {
        let n = args.int("n")!
        let directory = URL(fileURLWithPath: args.string("out")!)
        let manifest = directory.appendingPathComponent("captions.jsonl")
        if FileManager.default.fileExists(atPath: manifest.path) && !args.flag("force") {
            throw CommandError("\(manifest.path) exists; pass --force to overwrite")
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let world = WorldGenerator(seed: UInt64(args.int("seed")!)), renderer = renderer(args), chosen = Split(rawValue: args.string("split")!)!
        var lines = ""
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for i in 0..<n {
            let scene = world.scene(chosen, index: i)
            let name = String(format: "%05d.png", i)
            try PNG.write(renderer.render(scene), to: directory.appendingPathComponent(name))
            lines += String(decoding: try encoder.encode(["image": name, "caption": scene.caption]), as: UTF8.self) + "\n"
            if (i + 1) % 1000 == 0 { progress("  \(i + 1)/\(n) images") }
        }
        try lines.write(to: manifest, atomically: true, encoding: .utf8)
        print("wrote \(n) images and \(manifest.path)")
    }

    /// Recovery figures for one corruption setting.
    struct Recovery: Codable {
        var noise: Double, blur: Double, scenes: Int
        var recovered: Double, recoveredStandardError: Double
        var hazardScenes: Int, hazardDetected: Double
        var alignment: Double
        var imagesPerSecond: Double
    }

    static func recovery(n: Int, seed: Int, noise: Double, blur: Double, renderer: Renderer) -> Recovery {
        var world = WorldGenerator(seed: UInt64(seed))
        world.sampler.hazardRate = 0.2
        let judge = GoldJudge()
        let start = Date()
        var recovered = 0, hazards = 0, hazardsSeen = 0, aligned = 0
        for i in 0..<n {
            // Validation prompts, with the training split's hazard mark drawn in a fifth of them.
            var rng = RandomGenerator(seed: UInt64(seed) &* 31 &+ UInt64(i))
            let scene = world.sampler.scene(for: world.prompt(.validation, using: &rng), using: &rng)
            let image = Corruption.gaussianNoise(Corruption.gaussianBlur(renderer.render(scene), sigma: blur), sigma: noise, using: &rng)
            if judge.recovers(scene, from: image) { recovered += 1 }
            if judge.score(image, prompt: scene.prompt).alignment == 1 { aligned += 1 }
            if scene.hazard != nil {
                hazards += 1
                if judge.rules.perceive(image).hazard { hazardsSeen += 1 }
            }
        }
        let rate = Double(recovered) / Double(n)
        return Recovery(noise: noise, blur: blur, scenes: n, recovered: rate,
                        recoveredStandardError: (rate * (1 - rate) / Double(n)).squareRoot(), hazardScenes: hazards,
                        hazardDetected: Double(hazardsSeen) / Double(Swift.max(hazards, 1)), alignment: Double(aligned) / Double(n),
                        imagesPerSecond: Double(n) / Date().timeIntervalSince(start))
    }

    private static func judgeEval(_ args: ParsedArguments) throws {
        let n = args.int("n")!, seed = args.int("seed")!
        let renderer = renderer(args)
        let settings: [(Double, Double)] = args.flag("table")
            ? [(0, 0), (10, 0), (20, 0), (30, 0), (45, 0), (0, 0.5), (0, 0.7), (0, 1.0), (20, 0.5)]
            : [(args.double("noise")!, args.double("blur")!)]
        var results: [Recovery] = []
        if !args.flag("json") {
            print("noise σ  blur σ   recovered          hazard seen   alignment = 1   images/s")
        }
        for (noise, blur) in settings {
            let r = recovery(n: n, seed: seed, noise: noise, blur: blur, renderer: renderer)
            results.append(r)
            if !args.flag("json") {
                print(String(format: "%7.1f  %6.2f   %6.2f%% ± %.2f%%   %6.2f%%       %6.2f%%        %7.0f", noise, blur,
                             100 * r.recovered, 100 * r.recoveredStandardError, 100 * r.hazardDetected, 100 * r.alignment,
                             r.imagesPerSecond))
            }
        }
        if args.flag("json") {
            if results.count == 1 { try printJSON(results[0]) } else { try printJSON(["rows": results]) }
        }
    }
}
