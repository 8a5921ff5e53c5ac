import Engine
import Foundation
import Images
import World

/// `diffusion-rl world ...`: sample, judge, export and evaluate the embedded world.
enum WorldCommand {
    static let help = """
    usage: diffusion-rl world <subcommand> [options]

      sample --n N --seed S --out grid.png [--split train|validation|heldout] [--size 32] [--antialias]
            renders N scenes into a grid PNG and writes their captions to grid.json beside it
      judge IMAGE.png --prompt "a red circle" [--json]
            prints the gold judge's scores of the image against the prompt
      export --n N --out DIR [--split train] [--seed S] [--size 32] [--force]
            writes N images and DIR/captions.jsonl ({"image": "00000.png", "caption": "..."} per line),
            the format users bring their own data in
      prompts --split heldout --n N [--seed 1]
            prints the captions of the split's first N scenes, one per line: with seed 1 these are
            the fixed prompts `eval` and DDPO's evaluation use (a prompt file for `finetune`)
      judge-eval --n N [--seed S] [--noise SIGMA] [--blur SIGMA] [--table] [--json]
            renders N validation scenes (a fifth with the hazard mark), optionally adds Gaussian
            pixel noise (σ in 0–255 units) and Gaussian blur (σ in pixels), and reports how often
            the judge recovers every object and the mark; --table sweeps noise and blur
    """

    static func run(_ arguments: [String]) throws {
        guard let sub = arguments.first, sub != "--help" else { print(help); return }
        let args = try Arguments(Array(arguments.dropFirst()),
                                 optionNames: ["n", "seed", "out", "split", "size", "prompt", "threads", "noise", "blur"],
                                 flagNames: ["json", "antialias", "force", "help", "table"])
        if args.flag("help") { print(help); return }
        switch sub {
        case "sample": try sample(args)
        case "judge": try judge(args)
        case "export": try export(args)
        case "judge-eval": try judgeEval(args)
        case "prompts":
            let name = args.string("split") ?? "heldout"
            guard let split = Split(rawValue: name) else { throw CommandError("--split must be train, validation or heldout", usage: true) }
            let n = try args.int("n", default: 128)
            guard n >= 1 else { throw CommandError("--n must be at least 1", usage: true) }
            for scene in WorldGenerator(seed: UInt64(try args.int("seed", default: 1))).scenes(split, count: n) { print(scene.caption) }
        default: throw CommandError("unknown world subcommand '\(sub)' (see diffusion-rl world --help)", usage: true)
        }
    }

    private static func split(_ args: Arguments, default value: Split) throws -> Split {
        guard let name = args.string("split") else { return value }
        guard let split = Split(rawValue: name) else { throw CommandError("unknown split '\(name)' (train, validation, heldout)", usage: true) }
        return split
    }

    private static func renderer(_ args: Arguments) throws -> Renderer {
        let size = try args.int("size", default: 32)
        guard size >= 16 else { throw CommandError("--size must be at least 16", usage: true) }
        return Renderer(size: size, antialias: args.flag("antialias"))
    }

    private static func sample(_ args: Arguments) throws {
        let n = try args.int("n", default: 64), seed = try args.int("seed", default: 0)
        guard let out = args.string("out") else { throw CommandError("world sample needs --out grid.png", usage: true) }
        guard n >= 1 else { throw CommandError("--n must be at least 1", usage: true) }
        let scenes = WorldGenerator(seed: UInt64(seed)).scenes(try split(args, default: .train), count: n)
        let renderer = try renderer(args)
        let url = URL(fileURLWithPath: out)
        try PNG.write(imageGrid(scenes.map(renderer.render), columns: Int(Double(n).squareRoot().rounded(.up))), to: url)
        let captions = url.deletingPathExtension().appendingPathExtension("json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted]
        try encoder.encode(scenes.map { ["caption": $0.caption, "hazard": $0.hazard == nil ? "no" : "yes"] }).write(to: captions)
        print("wrote \(url.path) (\(n) scenes, row-major) and \(captions.path)")
    }

    private static func judge(_ args: Arguments) throws {
        guard let path = args.positional.first else { throw CommandError("world judge needs an image path", usage: true) }
        guard let caption = args.string("prompt") else { throw CommandError("world judge needs --prompt \"...\"", usage: true) }
        let prompt = try Prompt(parsing: caption)
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

    private static func export(_ args: Arguments) throws {
        let n = try args.int("n", default: 1000), seed = try args.int("seed", default: 0)
        guard let out = args.string("out") else { throw CommandError("world export needs --out DIR", usage: true) }
        let directory = URL(fileURLWithPath: out)
        let manifest = directory.appendingPathComponent("captions.jsonl")
        if FileManager.default.fileExists(atPath: manifest.path) && !args.flag("force") {
            throw CommandError("\(manifest.path) exists; pass --force to overwrite")
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let world = WorldGenerator(seed: UInt64(seed)), renderer = try renderer(args), chosen = try split(args, default: .train)
        var lines = ""
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for i in 0..<n {
            let scene = world.scene(chosen, index: i)
            let name = String(format: "%05d.png", i)
            try PNG.write(renderer.render(scene), to: directory.appendingPathComponent(name))
            lines += String(decoding: try encoder.encode(["image": name, "caption": scene.caption]), as: UTF8.self) + "\n"
            if (i + 1) % 1000 == 0 { FileHandle.standardError.write(Data("  \(i + 1)/\(n) images\n".utf8)) }
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

    private static func judgeEval(_ args: Arguments) throws {
        let n = try args.int("n", default: 10_000), seed = try args.int("seed", default: 0)
        guard n >= 1 else { throw CommandError("--n must be at least 1", usage: true) }
        let renderer = try renderer(args)
        func number(_ name: String) throws -> Double {
            guard let text = args.string(name) else { return 0 }
            guard let value = Double(text), value >= 0 else { throw CommandError("--\(name) expects a number ≥ 0, got '\(text)'", usage: true) }
            return value
        }
        let settings: [(Double, Double)] = args.flag("table")
            ? [(0, 0), (10, 0), (20, 0), (30, 0), (45, 0), (0, 0.5), (0, 0.7), (0, 1.0), (20, 0.5)]
            : [(try number("noise"), try number("blur"))]
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
