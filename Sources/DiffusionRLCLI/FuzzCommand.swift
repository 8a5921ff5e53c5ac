import Engine
import Foundation
import Images
import RewardModel
import RL
import RunLog
import World

/// `diffusion-rl debug fuzz`: a seeded mutation fuzzer for the parsers that read users' files.
/// Each input is a valid seed file with 1–4 random mutations (bit flips, bytes set to values that
/// break parsers, inserted, deleted or repeated runs, 4- and 8-byte integers overwritten, cuts);
/// input i depends only on (seed, parser, i), so a crash is reproduced by its index. A parser
/// passes when every input either parses or throws: a crash ends the process, which is the
/// failure the command exists to find.
enum FuzzCommand {
    static let parsers = ["safetensors", "png", "config", "preferences", "caption", "runlog"]
    /// Parsers run in child processes: libhdf5 reads run logs, and a malformed file can crash it —
    /// there a crash is counted (with the input's index) and the next child goes on.
    static let contained: Set<String> = ["runlog", "containment"]

    static let command = Command("fuzz", summary: "mutation-fuzz the parsers of users' files (safetensors, PNG, configs, preference JSONL, captions)",
                                 description: """
        Feeds each parser N mutated copies of valid files (bit flips, bytes set to 0, 0xFF or JSON
        punctuation, inserted, deleted or repeated runs, integers overwritten, cuts) and counts the
        inputs it accepted and rejected. A parser that crashes ends the process with the index of
        the last input reported; input i depends only on --seed, the parser and i. The run-log
        parser (libhdf5 through RunLogReader, reading every dataset) runs in child processes: a
        crash there is counted with its input's index, and a new child goes on from the next input.
        Progress every 10,000 inputs goes to stderr, the table (or --json) to stdout.
        """, options: [
            .choice("parser", ["all"] + parsers + ["containment"], default: "all",
                    "which parser (containment: a check of the child processes — input 3 crashes, input 5 hangs)"),
            .number("hang-seconds", default: 10, minimum: 0.1, "seconds a contained parser may spend on one input before it counts as hung"),
            .integer("inputs", default: 10_000, minimum: 1, "mutated inputs per parser"),
            .integer("seed", default: 0, minimum: 0, "the mutation stream's seed"),
            .integer("child-from", default: -1, minimum: -1, "(internal) be the child process of a contained parser, from this input on"),
            .json,
        ], run: run)

    struct Result: Encodable {
        var parser: String
        var inputs: Int
        var accepted: Int
        var rejected: Int
        var seconds: Double
        /// Inputs whose parse crashed a child process (contained parsers only).
        var crashes: [Int] = []
        /// Inputs a child spent more than the time limit on, and was killed (contained parsers only).
        var hangs: [Int] = []
    }

    static func run(_ args: ParsedArguments) throws {
        let chosen = args.string("parser") == "all" ? parsers : [args.string("parser")!]
        let count = args.int("inputs")!, seed = UInt64(args.int("seed")!)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-\(UUID())")
        defer { try? FileManager.default.removeItem(at: scratch) }
        if args.int("child-from")! >= 0 {
            guard chosen.count == 1 else { throw CommandError("--child-from needs one --parser", usage: true) }
            try child(chosen[0], from: args.int("child-from")!, count: count, seed: seed, scratch: scratch)
            return
        }
        var results: [Result] = []
        for name in chosen {
            let start = Date()
            var result = Result(parser: name, inputs: count, accepted: 0, rejected: 0, seconds: 0)
            if contained.contains(name) {
                (result.accepted, result.crashes, result.hangs) = try supervise(name, count: count, seed: seed, hangLimit: args.double("hang-seconds")!)
            } else {
                let target = try makeTarget(name, scratch: scratch)
                var stream = inputs(name, seed: seed, target: target)
                for i in 0..<count {
                    if (try? target.parse(stream.next())) != nil { result.accepted += 1 }
                    if (i + 1) % 10_000 == 0 { progress("  \(name): \(i + 1)/\(count) inputs, \(result.accepted) accepted") }
                }
            }
            result.rejected = count - result.accepted - result.crashes.count - result.hangs.count
            result.seconds = Date().timeIntervalSince(start)
            results.append(result)
        }
        if args.flag("json") { try printJSON(results); return }
        print("parser        inputs   accepted   rejected   crashes   hangs   seconds")
        for r in results {
            print(r.parser.padding(toLength: 12, withPad: " ", startingAt: 0)
                  + String(format: "%8d %10d %10d %9d %7d %9.1f", r.inputs, r.accepted, r.rejected, r.crashes.count, r.hangs.count, r.seconds))
        }
        for r in results where !r.crashes.isEmpty || !r.hangs.isEmpty {
            print("\(r.parser): inputs that crashed a child process (contained): \(r.crashes.prefix(20).map(String.init).joined(separator: ", ")); "
                  + "hung (killed after \(args.double("hang-seconds")!) s): \(r.hangs.prefix(20).map(String.init).joined(separator: ", "))")
        }
    }

    /// The parser's input stream: input i depends only on (seed, parser, i).
    struct Inputs {
        var rng: RandomGenerator
        let seeds: [[UInt8]]
        mutating func next() -> [UInt8] { mutate(seeds[Int(rng.next() % UInt64(seeds.count))], using: &rng) }
    }

    static func inputs(_ name: String, seed: UInt64, target: Target) -> Inputs {
        Inputs(rng: RandomGenerator(seed: seed &+ UInt64((parsers + ["containment"]).firstIndex(of: name)!) &* 0x9E37_79B9_7F4A_7C15), seeds: target.seeds)
    }

    /// A contained parser's child: inputs `from` ..< `count`, each announced on stdout ("s i")
    /// before it is parsed and its outcome ("a i" or "r i") after, so the parent knows which input
    /// a crash happened on.
    static func child(_ name: String, from: Int, count: Int, seed: UInt64, scratch: URL) throws {
        let target = try makeTarget(name, scratch: scratch)
        var stream = inputs(name, seed: seed, target: target)
        let out = FileHandle.standardOutput
        for i in 0..<count {
            let input = stream.next()
            guard i >= from else { continue }
            out.write(Data("s \(i)\n".utf8))
            if name == "containment" && i == 3 { fatalError("input 3 crashes on purpose") }
            if name == "containment" && i == 5 { Thread.sleep(forTimeInterval: 3600) }
            let ok = (try? target.parse(input)) != nil
            out.write(Data("\(ok ? "a" : "r") \(i)\n".utf8))
        }
    }

    /// Runs a contained parser in child processes until every input is parsed: a child that dies
    /// on input i (a signal, or an exit without finishing) records i as a crash, one that spends
    /// more than `hangLimit` seconds on it is killed and records a hang, and the next child starts
    /// at i + 1. Returns the accepted count, the crashing and the hanging inputs.
    static func supervise(_ name: String, count: Int, seed: UInt64, hangLimit: Double) throws -> (accepted: Int, crashes: [Int], hangs: [Int]) {
        var from = 0, accepted = 0, crashes: [Int] = [], hangs: [Int] = [], reported = 0
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        while from < count {
            let process = Process()
            process.executableURL = executable
            process.arguments = ["debug", "fuzz", "--parser", name, "--inputs", "\(count)", "--seed", "\(seed)", "--child-from", "\(from)"]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            // A watchdog kills the child when no line has come for `hangLimit` seconds.
            let lastLine = Watch()
            let watchdog = Thread {
                while process.isRunning {
                    Thread.sleep(forTimeInterval: 0.5)
                    if lastLine.secondsSince > hangLimit { lastLine.killed = true; process.terminate() }
                }
            }
            watchdog.start()
            var started = -1, finished = from - 1, buffer = Data()
            let handle = pipe.fileHandleForReading
            while case let chunk = handle.availableData, !chunk.isEmpty {
                buffer.append(chunk)
                lastLine.touch()
                guard let end = buffer.lastIndex(of: UInt8(ascii: "\n")) else { continue }
                for line in String(decoding: buffer[..<end], as: UTF8.self).split(separator: "\n") {
                    let parts = line.split(separator: " ")
                    guard parts.count == 2, let i = Int(parts[1]) else { continue }
                    switch parts[0] {
                    case "s": started = i
                    case "a": accepted += 1; finished = i
                    default: finished = i
                    }
                }
                buffer.removeSubrange(...end)
                if finished + 1 - reported >= 10_000 {
                    reported = finished + 1
                    progress("  \(name): \(reported)/\(count) inputs, \(accepted) accepted, \(crashes.count) contained crashes")
                }
            }
            process.waitUntilExit()
            if finished == count - 1 { break }
            // The child died: on the input it announced and did not finish, or (before announcing
            // one) at startup, which is not an input's fault.
            guard started > finished else {
                throw CommandError("the \(name) fuzzing child exited (status \(process.terminationStatus)) before its first input")
            }
            if lastLine.killed { hangs.append(started) } else { crashes.append(started) }
            from = started + 1
        }
        return (accepted, crashes, hangs)
    }

    /// When the last line came from a child, and whether the watchdog killed it.
    final class Watch: @unchecked Sendable {
        private let lock = NSLock()
        private var last = Date()
        private var wasKilled = false
        func touch() { lock.lock(); last = Date(); lock.unlock() }
        var secondsSince: Double { lock.lock(); defer { lock.unlock() }; return Date().timeIntervalSince(last) }
        var killed: Bool {
            get { lock.lock(); defer { lock.unlock() }; return wasKilled }
            set { lock.lock(); wasKilled = newValue; lock.unlock() }
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
        case "runlog":
            // A small run log of every kind of row: metrics, samples, an image, an event, a checkpoint.
            let url = scratch.appendingPathComponent("seed.h5")
            let layout = RunLayout(metrics: ["loss", MetricSpec("reward", better: .higher, kind: .reward)], sampleColumns: ["reward"],
                                   prompts: ["a red circle", "two blue squares"], imageSize: [4, 4])
            let writer = try RunLogWriter(url: url, layout: layout, info: RunInfo(config: "{}", commandLine: "fuzz", gitCommit: "0", seed: 1,
                                                                                  versions: "fuzz", host: "fuzz", startTime: "0"))
            for epoch in 0..<2 {
                try writer.record("loss", 1 / Double(epoch + 1))
                try writer.appendSamples(epoch: epoch, prompts: [0, 1], seeds: [1, 2], columns: ["reward": [0.5, 0.25]])
                try writer.appendImages(epoch: epoch, prompts: [0], images: [RGBImage(width: 4, height: 4, fill: [9, 8, 7])])
                try writer.event(epoch: epoch, kind: "note", "epoch \(epoch)")
                try writer.checkpoint(epoch: epoch, path: "checkpoints/epoch-\(epoch)", sha256: String(repeating: "0", count: 64))
                try writer.endEpoch()
            }
            try writer.close()
            let input = scratch.appendingPathComponent("input.h5")
            return Target(seeds: [[UInt8](try Data(contentsOf: url))]) { bytes in
                try Data(bytes).write(to: input)
                let reader = try RunLogReader(url: input)
                for name in reader.metricNames { _ = try reader.metric(name) }
                for column in ["epoch", "prompt", "seed"] + reader.layout.sampleColumns { _ = try reader.sampleColumn(column) }
                _ = try reader.prompts()
                _ = try reader.events()
                _ = try reader.checkpoints()
                _ = try reader.images()
            }
        case "containment":
            return Target(seeds: [[1, 2, 3]]) { _ in }
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
