import Engine
import Foundation
import Images
import RewardModel
import RL
import World

/// `diffusion-rl debug fuzz`: a seeded mutation fuzzer for the parsers that read users' files.
/// Each input is a valid seed file with 1–4 random mutations (bit flips, bytes set to values that
/// break parsers, inserted, deleted or repeated runs, 4- and 8-byte integers overwritten, cuts);
/// input i depends only on (seed, parser, i), so a crash is reproduced by its index. A parser
/// passes when every input either parses or throws: a crash ends the process, which is the
/// failure the command exists to find.
enum FuzzCommand {
    static let parsers = ["safetensors", "png", "config", "preferences", "caption"]

    static let command = Command("fuzz", summary: "mutation-fuzz the parsers of users' files (safetensors, PNG, configs, preference JSONL, captions)",
                                 description: """
        Feeds each parser N mutated copies of valid files (bit flips, bytes set to 0, 0xFF or JSON
        punctuation, inserted, deleted or repeated runs, integers overwritten, cuts) and counts the
        inputs it accepted and rejected. A parser that crashes ends the process with the index of
        the last input reported; input i depends only on --seed, the parser and i. Progress every
        10,000 inputs goes to stderr, the table (or --json) to stdout.
        """, options: [
            .choice("parser", ["all"] + parsers, default: "all", "which parser"),
            .integer("inputs", default: 10_000, minimum: 1, "mutated inputs per parser"),
            .integer("seed", default: 0, minimum: 0, "the mutation stream's seed"),
            .json,
        ], run: run)

    struct Result: Encodable {
        var parser: String
        var inputs: Int
        var accepted: Int
        var rejected: Int
        var seconds: Double
    }

    static func run(_ args: ParsedArguments) throws {
        let chosen = args.string("parser") == "all" ? parsers : [args.string("parser")!]
        let count = args.int("inputs")!, seed = UInt64(args.int("seed")!)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        var results: [Result] = []
        for (number, name) in chosen.enumerated() {
            let target = try makeTarget(name, scratch: scratch)
            var rng = RandomGenerator(seed: seed &+ UInt64(number) &* 0x9E37_79B9_7F4A_7C15)
            var accepted = 0
            let start = Date()
            for i in 0..<count {
                let input = mutate(target.seeds[Int(rng.next() % UInt64(target.seeds.count))], using: &rng)
                if (try? target.parse(input)) != nil { accepted += 1 }
                if (i + 1) % 10_000 == 0 { progress("  \(name): \(i + 1)/\(count) inputs, \(accepted) accepted") }
            }
            results.append(Result(parser: name, inputs: count, accepted: accepted, rejected: count - accepted,
                                  seconds: Date().timeIntervalSince(start)))
        }
        if args.flag("json") { try printJSON(results); return }
        print("parser        inputs   accepted   rejected   crashes   seconds")
        for r in results {
            print(r.parser.padding(toLength: 12, withPad: " ", startingAt: 0)
                  + String(format: "%8d %10d %10d %9d %9.1f", r.inputs, r.accepted, r.rejected, 0, r.seconds))
        }
    }

    /// A parser and the valid files its inputs are mutated from.
    struct Target {
        var seeds: [[UInt8]]
        var parse: ([UInt8]) throws -> Void
    }

    static func makeTarget(_ name: String, scratch: URL) throws -> Target {
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        switch name {
        case "safetensors":
            var rng = RandomGenerator(seed: 1)
            let tensors = ["a.weight": Tensor.randn([2, 3], using: &rng), "b.bias": Tensor.randn([4], using: &rng)]
            var seeds: [[UInt8]] = []
            for stored in [Safetensors.StoredType.f32, .f16] {
                let url = scratch.appendingPathComponent("seed-\(stored.rawValue).safetensors")
                try Safetensors.write(tensors, to: url, as: stored, metadata: ["format": "pt"])
                seeds.append([UInt8](try Data(contentsOf: url)))
            }
            return Target(seeds: seeds) { _ = try Safetensors.parse(Data($0)) }
        case "png":
            let rgb = RGBImage(width: 5, height: 3, fill: [200, 10, 30])
            return Target(seeds: [[UInt8](PNG.encode(rgb))]) { _ = try PNG.decode(Data($0)) }
        case "config":
            let seeds = [ConfigLoader.json(FineTuningConfig()), #"{"epochs": 3, "sampling": {"steps": 10, "guidance": 5}, "rewards": {"weights": {"alignment": 1}}}"#]
            return Target(seeds: seeds.map { [UInt8]($0.utf8) }) {
                let config = try ConfigLoader.decode(FineTuningConfig.self, from: Data($0), defaults: FineTuningConfig(), source: "fuzz.json")
                try config.validate()
            }
        case "preferences":
            let images = scratch.appendingPathComponent("images")
            try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
            for file in ["a.png", "b.png"] { try PNG.write(RGBImage(width: 4, height: 4, fill: [0, 0, 0]), to: images.appendingPathComponent(file)) }
            let text = #"{"images": ["images/a.png", "images/b.png"], "preferred": {"alignment": 0, "fidelity": 1}, "prompt": "a red circle"}"#
                + "\n" + #"{"images": ["images/a.png"], "labels": {"safety": true}, "prompt": "two blue squares"}"# + "\n"
            return Target(seeds: [[UInt8](text.utf8)]) {
                _ = try PreferenceData.parse(String(decoding: $0, as: UTF8.self), folder: scratch, name: "fuzz.jsonl", path: "fuzz.jsonl")
            }
        case "caption":
            let seeds = ["a small red circle to the left of a large blue square", "three green triangles", "a yellow square at the top"]
            return Target(seeds: seeds.map { [UInt8]($0.utf8) }) { _ = try Prompt(parsing: String(decoding: $0, as: UTF8.self)) }
        default:
            throw CommandError("no parser '\(name)'", usage: true)
        }
    }

    /// Bytes that break parsers: ends of ranges, and the punctuation of JSON and captions.
    static let interesting: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, 0x22, 0x2C, 0x2D, 0x2E, 0x30, 0x39, 0x3A, 0x5B, 0x5D, 0x65, 0x7B, 0x7D, 0x20, 0x0A]
    static let interestingIntegers: [UInt64] = [0, 1, 0x7F, 0xFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000, 1 << 40, UInt64(Int64.max), UInt64.max]

    /// `seed` with 1–4 random mutations.
    static func mutate(_ seed: [UInt8], using rng: inout RandomGenerator) -> [UInt8] {
        var bytes = seed
        func position(_ extra: Int = 0) -> Int { Int(rng.next() % UInt64(bytes.count + extra)) }
        for _ in 0 ..< 1 + Int(rng.next() % 4) {
            guard !bytes.isEmpty else { bytes = [UInt8(rng.next() & 0xFF)]; continue }
            switch rng.next() % 8 {
            case 0: let i = position(); bytes[i] ^= UInt8(1 << (rng.next() % 8))
            case 1: bytes[position()] = interesting[Int(rng.next() % UInt64(interesting.count))]
            case 2: bytes.insert(contentsOf: (0 ..< 1 + Int(rng.next() % 8)).map { _ in UInt8(rng.next() & 0xFF) }, at: position(1))
            case 3: let i = position(); bytes.removeSubrange(i ..< min(bytes.count, i + 1 + Int(rng.next() % 16)))
            case 4:
                let i = position(), run = Array(bytes[i ..< min(bytes.count, i + 1 + Int(rng.next() % 32))])
                bytes.insert(contentsOf: run, at: position(1))
            case 5, 6:
                let width = rng.next() % 2 == 0 ? 4 : 8, value = interestingIntegers[Int(rng.next() % UInt64(interestingIntegers.count))]
                let i = position()
                for b in 0 ..< width where i + b < bytes.count { bytes[i + b] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(b))) }
            default: bytes.removeSubrange(position() ..< bytes.count)
            }
        }
        return bytes
    }
}
