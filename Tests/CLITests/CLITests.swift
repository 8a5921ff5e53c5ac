@testable import DiffusionRLCLI
import Diffusion
import Inputs
import Pretraining
import Engine
import Foundation
@testable import RewardModel
import RunLog
import World
import XCTest

/// Runs the built `diffusion-rl` binary as a user would and checks exit codes and messages.
final class CLITests: XCTestCase {
    private var binary: URL {
        // The test bundle is built in the same folder as the executable (.build/<configuration>/);
        // on Linux the bundle URL is that folder, on macOS the .xctest bundle inside it.
        let bundle = Bundle(for: CLITests.self).bundleURL
        let candidates = [bundle, bundle.deletingLastPathComponent()].map { $0.appendingPathComponent("diffusion-rl") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    /// Starts `debug write-log` in the background: a run log that grows by one epoch every few ms.
    private func startWriter(_ url: URL, epochs: Int, epochMilliseconds: Int) throws -> Process {
        let writer = Process()
        writer.executableURL = binary
        writer.arguments = ["debug", "write-log", "--out", url.path, "--epochs", String(epochs), "--epoch-ms", String(epochMilliseconds)]
        writer.standardOutput = FileHandle.nullDevice
        try writer.run()
        return writer
    }

    /// Polls a (live) run log until it holds `count` epochs or `seconds` pass; the epochs last seen.
    @discardableResult
    private func waitForEpochs(_ count: Int, in url: URL, seconds: Double, poll: Double) -> Int {
        var seen = 0
        let deadline = Date().addingTimeInterval(seconds)
        while seen < count && Date() < deadline {
            Thread.sleep(forTimeInterval: poll)
            seen = (try? RunLogReader(url: url).epochs()) ?? 0
        }
        return seen
    }

    private func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        return try output(of: process)
    }

    /// Runs `process` to the end and returns its exit status, stdout and stderr.
    private func output(of process: Process) throws -> (status: Int32, stdout: String, stderr: String) {
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(), stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    /// The communicator: one process without mpirun (MPI not initialized); under `mpirun -np 2`
    /// (as root in CI, which Open MPI refuses unless told) every collective gives each rank the
    /// same, right answer.
    func testCommunicatorWithAndWithoutMpirun() throws {
        let single = try run(["debug", "communicator", "--json"])
        XCTAssertEqual(single.status, 0, single.stderr)
        XCTAssertTrue(single.stdout.contains("\"size\":1"), single.stdout)
        guard let (status, stdout, stderr) = try runUnderMPI(["debug", "communicator", "--json"]) else {
            throw XCTSkip("mpirun is not installed (make installs openmpi-bin)")
        }
        XCTAssertEqual(status, 0, stderr)
        let check = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any], stdout + stderr)
        XCTAssertEqual(check["size"] as? Int, 2)
        XCTAssertEqual(check["sumDouble"] as? [Double], [3, 30])
        XCTAssertEqual(check["gathered"] as? [String], ["rank 0", "rank 1"])
        XCTAssertEqual(check["broadcast"] as? String, "from rank 1")
        XCTAssertEqual(check["agree"] as? Bool, true)

        // `eval` under mpirun: the ranks split the batches (72 images, 3 batches, best of 3) and
        // gather the kept images; the result is the one process's, byte for byte.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cli-mpi-\(UUID())")
        var rng = RandomGenerator(seed: 5)
        let model = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: WorldGenerator(seed: 0).scenes(.train, count: 2000).map(\.caption)),
                                             using: &rng)
        for p in model.unet.namedParameters() { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &rng)) }
        try model.save(to: folder)
        let evaluation = ["eval", "--model", folder.path, "--compare", folder.path, "--best-of", "3", "--select-by", "alignment_partial",
                          "--n-prompts", "12", "--images-per-prompt", "6", "--steps", "2", "--threads", "1", "--json"]
        let alone = try run(evaluation)
        XCTAssertEqual(alone.status, 0, alone.stderr)
        let together = try XCTUnwrap(try runUnderMPI(evaluation))
        XCTAssertEqual(together.status, 0, together.stderr)
        XCTAssertEqual(together.stdout, alone.stdout, "eval over 2 ranks differs from one process")
    }

    /// `bench unet` under `mpirun -np 2`: each rank takes its rows of every batch, so the job's
    /// FLOPs are the one process's, pass by pass (a rank that took the whole batch, or rows of
    /// the wrong count, would double or miss some), and the report says two ranks.
    func testDataParallelUNetBenchmarkSplitsTheBatch() throws {
        let alone = try run(["bench", "unet", "--threads", "1", "--json"])
        XCTAssertEqual(alone.status, 0, alone.stderr)
        guard let together = try runUnderMPI(["bench", "unet", "--threads", "1", "--json"]) else {
            throw XCTSkip("mpirun is not installed (make installs openmpi-bin)")
        }
        XCTAssertEqual(together.status, 0, together.stderr)
        func report(_ text: String) throws -> [String: Any] {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
        }
        let (one, two) = (try report(alone.stdout), try report(together.stdout))
        XCTAssertEqual(one["ranks"] as? Int, 1)
        XCTAssertEqual(two["ranks"] as? Int, 2)
        let figures = { (r: [String: Any]) in (r["figures"] as? [[String: Any]] ?? []).map { "\($0["batch"]!) \($0["pass"]!): \($0["gflop"]!)" } }
        XCTAssertEqual(figures(two), figures(one))
        XCTAssertEqual(figures(one).count, 4)
        let profiled = try XCTUnwrap(try runUnderMPI(["bench", "unet", "--profile"]))
        XCTAssertNotEqual(profiled.status, 0)
        XCTAssertTrue(profiled.stderr.contains("one process"), profiled.stderr)
    }

    /// `finetune` under `mpirun -np 2`: data-parallel DDPO (PPO with per-prompt statistics, the KL
    /// drift and the gold evaluation), ReFL, filtered self-training (anchors, caption dropout, a
    /// buffer), AWR, DiffusionNFT and Diffusion-DPO give the one process's final weights to a
    /// relative 1e-5 and the same logged metrics and samples; rank 0 alone writes the run folder.
    func testFinetuneOverMPIEqualsOneProcess() throws {
        guard ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].contains(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("mpirun is not installed (make installs openmpi-bin)")
        }
        try checkDataParallelFinetune { try XCTUnwrap(try self.runUnderMPI($0)) }
    }

    /// `finetune --workers 2`: the same data-parallel run inside one process, two threads as
    /// ranks — the same bars against the one-process run as under mpirun.
    func testFinetuneWithWorkersEqualsOneProcess() throws {
        try checkDataParallelFinetune { try self.run($0 + ["--workers", "2"]) }
    }

    /// Every objective's run over two ranks (`launch` starts one) against the same run in one process.
    private func checkDataParallelFinetune(_ launch: ([String]) throws -> (status: Int32, stdout: String, stderr: String)) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("cli-mpi-finetune-\(UUID())")
        var rng = RandomGenerator(seed: 6)
        let model = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: WorldGenerator(seed: 0).scenes(.train, count: 2000).map(\.caption)),
                                             using: &rng)
        try model.save(to: scratch.appendingPathComponent("model"))
        let objectives = [
            #""objective": "ppo", "rewards": {"weights": {"alignment_partial": 1, "brightness": 0.5}}, "statMinCount": 2, "innerEpochs": 2"#,
            #""objective": "refl", "rewards": {"weights": {"brightness": 1}}, "refl": {"gradientSteps": 2}, "kl": {"beta": 0.1, "every": 1, "samples": 0}"#,
            // Rows split after every rank drew the batch's anchors, caption dropout, timesteps and noise;
            // the anchors' scores shared between the ranks, each encoding its own rows.
            #""objective": "selfTraining", "rewards": {"weights": {"alignment_partial": 1}}, "selfTraining": {"k": 1, "threshold": -1, "bufferSize": 8, "anchorShare": 0.5, "captionDropout": 0.3, "filterAnchors": true}"#,
            #""objective": "advantageWeighted", "rewards": {"weights": {"brightness": 1}}, "advantages": "group", "advantageWeighted": {"timestepsPerSample": 3}"#,
            #""objective": "diffusionNFT", "rewards": {"weights": {"brightness": 1}}, "advantages": "group""#,
            #""objective": "diffusionDPO", "rewards": {"weights": {"brightness": 1}}, "diffusionDPO": {"timestepsPerPair": 3}"#,
        ]
        for (index, objective) in objectives.enumerated() {
            let config = scratch.appendingPathComponent("config-\(index).json")
            try """
                {"model": "\(scratch.appendingPathComponent("model").path)", "threads": 1, "epochs": 2, "promptPool": 6, "promptsPerEpoch": 4,
                 "imagesPerPrompt": 2, "sampling": {"steps": 3}, "samplingBatch": 2, "trainBatch": 3, "gradientAccumulation": 2,
                 "learningRate": 0.01, "evaluation": {"prompts": 3, "imagesPerPrompt": 1, "every": 1}, \(objective)}
                """.write(to: config, atomically: true, encoding: .utf8)
            let one = scratch.appendingPathComponent("one-\(index)"), two = scratch.appendingPathComponent("two-\(index)")
            let alone = try run(["finetune", "--config", config.path, "--out", one.path])
            XCTAssertEqual(alone.status, 0, alone.stderr)
            let together = try launch(["finetune", "--config", config.path, "--out", two.path])
            XCTAssertEqual(together.status, 0, together.stderr)
            XCTAssertEqual(together.stdout, alone.stdout.replacingOccurrences(of: one.path, with: two.path))

            // Summation order aside: a rank sums a batch's gradient over its slice, one process over
            // the whole batch, and log-probabilities (sums over the latent divided by σ²) amplify
            // the last bits. Measured: PPO differs by 2e-6 of the weights (5e-4 of what training
            // moved), ReFL by less.
            let final = one.appendingPathComponent("model/unet.safetensors")
            let difference = try relativeDistance(final, two.appendingPathComponent("model/unet.safetensors"))
            let moved = try relativeDistance(final, scratch.appendingPathComponent("model/unet.safetensors"))
            XCTAssertLessThan(difference, 1e-5, "\(objective): relative to the weights")
            XCTAssertLessThan(difference / moved, 2e-3, "\(objective): relative to what training moved")
            XCTAssertGreaterThan(moved, 1e-4, "\(objective): training must move the weights")
            let logA = try RunLogReader(url: one.appendingPathComponent("run.h5")), logB = try RunLogReader(url: two.appendingPathComponent("run.h5"))
            XCTAssertEqual(try logB.epochs(), 2)
            for name in logA.metricNames where !name.hasPrefix("seconds") && !name.hasPrefix("samples_per_second") {
                for (x, y) in zip(try logA.metric(name), try logB.metric(name)) where !(x.isNaN && y.isNaN) {
                    // PPO's ratio and approximate KL come from log-probabilities: 4e-4 measured.
                    XCTAssertEqual(x, y, accuracy: 1e-3 * max(abs(x), 1), "\(objective): metric \(name)")
                }
            }
            XCTAssertEqual(try logA.sampleColumn("reward").count, try logB.sampleColumn("reward").count)
            // The first epoch's samples are the same bits (each batch drawn alike on either rank).
            let rewardsA = try logA.sampleColumn("reward"), rewardsB = try logB.sampleColumn("reward")
            XCTAssertEqual(Array(rewardsA.prefix(8)), Array(rewardsB.prefix(8)))
            for (x, y) in zip(rewardsA, rewardsB) { XCTAssertEqual(x, y, accuracy: 1e-5) }
            XCTAssertEqual(try logB.events().filter { $0.message.contains("data-parallel over 2 ranks") }.count, 1)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: two.path).sorted(), ["checkpoints", "model", "prompts.txt", "run.h5"])
        }
    }

    /// ‖a − b‖ / ‖a‖ over every tensor of two safetensors files with the same tensors: how far
    /// apart two runs' weights end, relative to the weights.
    private func relativeDistance(_ a: URL, _ b: URL) throws -> Double {
        let (x, y) = (try Safetensors.read(a).tensors, try Safetensors.read(b).tensors)
        XCTAssertEqual(Set(x.keys), Set(y.keys))
        var squares = (weights: 0.0, difference: 0.0)
        for (name, tensor) in x {
            for (u, v) in zip(tensor.values, y[name]?.values ?? []) { squares.weights += u * u; squares.difference += (u - v) * (u - v) }
        }
        return (squares.difference / squares.weights).squareRoot()
    }

    /// `mpirun -np N` of the binary with `arguments` (allowed as root, as CI runs); nil without mpirun.
    private func runUnderMPI(_ arguments: [String], ranks: Int = 2) throws -> (status: Int32, stdout: String, stderr: String)? {
        try mpiProcess(arguments, ranks: ranks).map(output(of:))
    }

    /// The process `mpirun -np N` of the binary with `arguments`, not started; nil without mpirun.
    private func mpiProcess(_ arguments: [String], ranks: Int = 2) -> Process? {
        guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return nil
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = ["-np", "\(ranks)", "--oversubscribe", binary.path] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]) { $1 }
        return process
    }

    /// The process id of MPI rank `rank` among the descendants of `parent` (Linux: read from
    /// /proc, by the rank Open MPI puts in each process's environment); nil when there is none yet.
    private func pidOfRank(_ rank: Int, under parent: Int32) -> Int32? {
        func children(of pid: Int32) -> [Int32] {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            return tasks.flatMap { task -> [Int32] in
                let list = (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/children", encoding: .utf8)) ?? ""
                return list.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
        }
        var queue = children(of: parent)
        while let pid = queue.popLast() {
            if let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ"),
               environment.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == "OMPI_COMM_WORLD_RANK=\(rank)" }) {
                return pid
            }
            queue += children(of: pid)
        }
        return nil
    }

    /// A data-parallel run whose rank 1 is killed with SIGKILL mid-way takes the job down with a
    /// non-zero exit and a message naming the rank; its last checkpoint stays valid: `--resume`
    /// under mpirun ends with the uninterrupted job's weights, byte for byte, and every epoch logged
    /// once. Self-training, so that the checkpoint's replay buffer is part of what must come back.
    func testFinetuneOverMPIWithAKilledRankResumes() throws {
        guard mpiProcess([]) != nil else { throw XCTSkip("mpirun is not installed (make installs openmpi-bin)") }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cli-mpi-kill-\(UUID())")
        var rng = RandomGenerator(seed: 8)
        let model = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: WorldGenerator(seed: 0).scenes(.train, count: 2000).map(\.caption)),
                                             using: &rng)
        try model.save(to: folder.appendingPathComponent("model"))
        let config = folder.appendingPathComponent("config.json")
        try """
            {"model": "\(folder.appendingPathComponent("model").path)", "threads": 1, "epochs": 16, "promptPool": 4, "promptsPerEpoch": 2,
             "imagesPerPrompt": 2, "sampling": {"steps": 4}, "samplingBatch": 2, "trainBatch": 3, "learningRate": 0.01,
             "objective": "selfTraining", "rewards": {"weights": {"alignment_partial": 1}},
             "selfTraining": {"k": 1, "threshold": -1, "bufferSize": 6, "anchorShare": 0.5}}
            """.write(to: config, atomically: true, encoding: .utf8)
        let whole = folder.appendingPathComponent("whole"), pieces = folder.appendingPathComponent("pieces")
        let uninterrupted = try XCTUnwrap(try runUnderMPI(["finetune", "--config", config.path, "--out", whole.path]))
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)

        let job = try XCTUnwrap(mpiProcess(["finetune", "--config", config.path, "--out", pieces.path]))
        let errors = Pipe()
        job.standardError = errors
        job.standardOutput = FileHandle.nullDevice
        try job.run()
        let seen = waitForEpochs(4, in: pieces.appendingPathComponent("run.h5"), seconds: 120, poll: 0.02)
        let victim = try XCTUnwrap(pidOfRank(1, under: job.processIdentifier), "no process of rank 1 found")
        kill(victim, SIGKILL)
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        job.waitUntilExit()
        XCTAssertGreaterThanOrEqual(seen, 4)
        XCTAssertNotEqual(job.terminationStatus, 0, stderr)
        XCTAssertTrue(stderr.contains("rank 1") && stderr.contains("signal 9"), stderr)
        let epochsLogged = try RunLogReader(url: pieces.appendingPathComponent("run.h5")).epochs()
        XCTAssertLessThan(epochsLogged, 16, "the job ended before its rank was killed")

        let resumed = try XCTUnwrap(try runUnderMPI(["finetune", "--config", config.path, "--out", pieces.path, "--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resumed from"), resumed.stderr)
        XCTAssertEqual(try Data(contentsOf: pieces.appendingPathComponent("model/unet.safetensors")),
                       try Data(contentsOf: whole.appendingPathComponent("model/unet.safetensors")), "resumed weights differ from the uninterrupted job's")
        let reader = try RunLogReader(url: pieces.appendingPathComponent("run.h5"))
        XCTAssertEqual(try reader.epochs(), 16)
        XCTAssertEqual(try reader.sampleColumn("epoch"), (0..<16).flatMap { [Double](repeating: Double($0), count: 4) })
        XCTAssertEqual(try reader.metric("reward_mean"), try RunLogReader(url: whole.appendingPathComponent("run.h5")).metric("reward_mean"))
    }

    /// `--help` on every command and subcommand exits 0 with its usage and starts no work (options
    /// that would write something are given too, and nothing is written).
    func testHelpOnEveryCommandDoesNoWork() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("help-\(UUID())")
        var paths: [[String]] = [[]]
        func visit(_ command: Command, _ path: [String]) {
            for sub in command.subcommands { paths.append(path + [sub.name]); visit(sub, path + [sub.name]) }
        }
        visit(DiffusionRLCommand.root, [])
        XCTAssertGreaterThan(paths.count, 20)
        for path in paths {
            let command = path.reduce(DiffusionRLCommand.root) { $0.subcommand($1)! }
            let out = command.option("out") == nil ? [] : ["--out", scratch.path]
            let result = try run(path + out + ["--help"])
            XCTAssertEqual(result.status, 0, "\(path)")
            XCTAssertTrue(result.stdout.hasPrefix("usage: diffusion-rl" + path.map { " " + $0 }.joined()), "\(path): \(result.stdout)")
            XCTAssertEqual(result.stderr, "", "\(path)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path), "\(path) --help wrote \(scratch.path)")
        }
        let version = try run(["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertTrue(version.stdout.hasPrefix("diffusion-rl \(DiffusionRLCommand.version)"), version.stdout)
    }

    func testBadInputIsOneLineAndANonZeroExit() throws {
        for (arguments, expected) in [(["frobnicate"], "unknown command"), (["bench", "engine", "--fast"], "unknown option --fast"),
                                      (["demo", "--epochs", "many"], "expects a whole number"), (["bench"], "bench needs a subcommand"),
                                      (["demo", "--epochs"], "needs a value"), (["finetune", "--config", "x.json"], "needs --out"),
                                      (["bench", "unet", "--batch", "4"], "without --profile")] {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 2, "\(arguments)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(arguments): \(result.stderr)")
        }
    }

    /// Bad files are one line and exit 1 (usage mistakes exit 2).
    func testMissingFilesAreOneLineErrors() throws {
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID()).json")
        try #"{"vaeStep": 3}"#.write(to: config, atomically: true, encoding: .utf8)
        for (arguments, expected) in [(["eval", "--model", "/nonexistent"], "no config.json"),
                                      (["pretrain", "--out", "/tmp/unused", "--config", "/nonexistent.json"], "cannot read config"),
                                      (["pretrain", "--out", "/tmp/unused", "--config", config.path], "unknown key 'vaeStep'"),
                                      (["finetune", "--out", "/tmp/unused", "--config", config.path], "unknown key 'vaeStep'"),
                                      (["demo", "--model", "/nonexistent", "--out", "/tmp/unused-\(UUID())"], "/nonexistent")] {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments)")
            XCTAssertTrue(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        }
    }

    func testWorldCommands() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("world-\(UUID())")
        let grid = directory.appendingPathComponent("grid.png").path
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        XCTAssertEqual(try run(["world", "sample", "--n", "9", "--seed", "1", "--out", grid]).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory.appendingPathComponent("grid.json").path))
        let export = directory.appendingPathComponent("export").path
        XCTAssertEqual(try run(["world", "export", "--n", "3", "--out", export]).status, 0)
        let refused = try run(["world", "export", "--n", "3", "--out", export])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("--force"), refused.stderr)
        let manifest = try String(contentsOfFile: export + "/captions.jsonl", encoding: .utf8)
        let first = try JSONSerialization.jsonObject(with: Data(manifest.split(separator: "\n")[0].utf8)) as! [String: String]
        let judged = try run(["world", "judge", export + "/" + first["image"]!, "--prompt", first["caption"]!, "--json"])
        XCTAssertEqual(judged.status, 0, judged.stderr)
        let scores = try JSONSerialization.jsonObject(with: Data(judged.stdout.utf8)) as! [String: Double]
        XCTAssertEqual(scores["alignment"], 1)
        let bad = try run(["world", "judge", export + "/" + first["image"]!, "--prompt", "a red hexagon"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("'hexagon'"), bad.stderr)
        let missing = try run(["world", "judge", directory.appendingPathComponent("none.png").path, "--prompt", "a red circle"])
        XCTAssertEqual(missing.status, 1)
        let eval = try run(["world", "judge-eval", "--n", "200", "--json"])
        let figures = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(figures["recovered"] as? Double, 1)
    }

    /// A writer killed with SIGKILL mid-run leaves a file that opens (SWMR read) and holds every
    /// epoch flushed before the kill.
    func testRunLogSurvivesSIGKILL() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("crash-\(UUID()).h5")
        let writer = try startWriter(url, epochs: 100_000, epochMilliseconds: 5)
        let seen = waitForEpochs(20, in: url, seconds: 30, poll: 0.1)
        kill(writer.processIdentifier, SIGKILL)
        writer.waitUntilExit()
        XCTAssertEqual(writer.terminationReason, .uncaughtSignal)
        XCTAssertGreaterThanOrEqual(seen, 20, "the writer did not get going")
        // Readers hold HDF5 file locks: this one is closed before the file is reopened for writing.
        let loss: [Double] = try {
            let reader = try RunLogReader(url: url)
            let loss = try reader.metric("loss"), reward = try reader.metric("reward")
            XCTAssertGreaterThanOrEqual(loss.count, seen)
            XCTAssertEqual(reward.count, loss.count)
            for (epoch, value) in loss.enumerated() { XCTAssertEqual(value, 1 / Double(epoch + 1)) }
            XCTAssertGreaterThanOrEqual(try reader.sampleColumn("epoch").count, 4 * loss.count)
            XCTAssertGreaterThanOrEqual(try reader.images().count, loss.count)
            return loss
        }()
        // The command line reads it too.
        let inspected = try run(["inspect", url.path, "--json"])
        XCTAssertEqual(inspected.status, 0, inspected.stderr)
        // Resuming clears the crash flag, keeps every finished epoch once, and appends.
        let finished = loss.count
        let resumed = try RunLogWriter(resuming: url)
        XCTAssertEqual(resumed.epochs, finished)
        XCTAssertTrue(resumed.resumeNotes.contains { $0.contains("status flag") }, "\(resumed.resumeNotes)")
        try resumed.record("loss", 1 / Double(finished + 1))
        try resumed.endEpoch()
        try resumed.close()
        let after = try RunLogReader(url: url)
        XCTAssertEqual(try after.metric("loss").count, finished + 1)
        XCTAssertEqual(Set(try after.sampleColumn("epoch")).count, finished)
        XCTAssertTrue(try after.sampleColumn("epoch").allSatisfy { $0 < Double(finished) })
    }

    /// SIGTERM stops the writer between epochs and closes the log cleanly.
    func testSIGTERMClosesTheLogCleanly() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("term-\(UUID()).h5")
        let writer = try startWriter(url, epochs: 100_000, epochMilliseconds: 5)
        waitForEpochs(5, in: url, seconds: 30, poll: 0.05)
        writer.terminate()
        writer.waitUntilExit()
        XCTAssertEqual(writer.terminationStatus, 130)
        let reader = try RunLogReader(url: url)
        XCTAssertEqual(try reader.events().last?.kind, "stopped")
        // A cleanly closed file opens without SWMR too: h5dump reads it.
        let dump = Process()
        dump.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        dump.arguments = ["h5dump", "-H", url.path]
        dump.standardOutput = FileHandle.nullDevice
        try dump.run()
        dump.waitUntilExit()
        XCTAssertEqual(dump.terminationStatus, 0)
    }

    /// A reader opened while the writer appends sees the new epochs after a refresh.
    func testLiveReaderSeesNewEpochs() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("live-\(UUID()).h5")
        let writer = try startWriter(url, epochs: 400, epochMilliseconds: 20)
        defer { kill(writer.processIdentifier, SIGKILL); writer.waitUntilExit() }
        var reader: RunLogReader?
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let opened = try? RunLogReader(url: url), (try? opened.epochs()) ?? 0 > 0 { reader = opened; break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let live = try XCTUnwrap(reader)
        let before = try live.epochs()
        Thread.sleep(forTimeInterval: 1)
        live.refresh()
        let after = try live.epochs()
        XCTAssertGreaterThan(after, before)
        XCTAssertEqual(try live.metric("loss").count, after)
    }

    func testInspectBadInputIsOneLine() throws {
        let directory = FileManager.default.temporaryDirectory
        let text = directory.appendingPathComponent("not-hdf5-\(UUID()).h5")
        try Data("hello".utf8).write(to: text)
        for (path, expected) in [(text.path, "not an HDF5 file"), (directory.appendingPathComponent("missing.h5").path, "no such file")] {
            let result = try run(["inspect", path])
            XCTAssertEqual(result.status, 1)
            XCTAssertTrue(result.stderr.contains(expected), result.stderr)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        }
        let good = directory.appendingPathComponent("good-\(UUID()).h5")
        XCTAssertEqual(try run(["debug", "write-log", "--out", good.path, "--epochs", "3"]).status, 0)
        let refused = try run(["debug", "write-log", "--out", good.path, "--epochs", "3"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("refusing to overwrite"), refused.stderr)
        let text2 = try run(["inspect", good.path])
        XCTAssertTrue(text2.stdout.contains("3 epochs"), text2.stdout)
        // Replaying a guard needs a config with one, and a run that logged the KL it limits.
        let unguarded = directory.appendingPathComponent("unguarded-\(UUID()).json"), growth = directory.appendingPathComponent("growth-\(UUID()).json")
        try Data(#"{"epochs": 2}"#.utf8).write(to: unguarded)
        try Data(#"{"guard": {"actions": ["stop"], "klGrowth": 0.2}, "kl": {"every": 2}}"#.utf8).write(to: growth)
        for (config, expected) in [(unguarded, "has no guard"), (growth, "logged no KL (kl_mean)")] {
            let result = try run(["inspect", good.path, "--replay-guard", config.path])
            XCTAssertEqual(result.status, 1, result.stdout)
            XCTAssertTrue(result.stderr.contains(expected) && result.stderr.split(separator: "\n").count == 1, result.stderr)
        }
        // A folder lists the runs in it (and skips files that are not runs).
        let folder = directory.appendingPathComponent("runs-\(UUID())")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("a"), withIntermediateDirectories: true)
        XCTAssertEqual(try run(["debug", "write-log", "--out", folder.appendingPathComponent("a/run.h5").path, "--epochs", "2"]).status, 0)
        try Data("x".utf8).write(to: folder.appendingPathComponent("junk.h5"))
        let listing = try run(["inspect", folder.path, "--json"])
        let runs = (try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as! [String: [[String: String]]])["runs"]!
        XCTAssertEqual(runs.count, 1)
        XCTAssertEqual(runs[0]["epochs"], "2")
        // A truncated run, through inspect and report.
        let bytes = try Data(contentsOf: good)
        let truncated = directory.appendingPathComponent("truncated-\(UUID()).h5")
        try bytes.prefix(bytes.count / 3).write(to: truncated)
        for arguments in [["inspect", truncated.path], ["report", truncated.path, "--out", directory.appendingPathComponent("r-\(UUID()).html").path],
                          ["report", text.path, "--out", directory.appendingPathComponent("r-\(UUID()).html").path]] {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        }
    }

    /// A fine-tuning run killed with SIGKILL mid-way and resumed ends with the same weights, byte
    /// for byte, as one never interrupted, and its log holds every finished epoch once.
    func testFinetuneKilledAndResumedEqualsUninterrupted() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cli-finetune-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var rng = RandomGenerator(seed: 3)
        let model = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: WorldGenerator(seed: 0).scenes(.train, count: 2000).map(\.caption)),
                                             using: &rng)
        for p in model.unet.namedParameters() { p.tensor.assign(try p.tensor + Tensor.randn(p.tensor.shape, std: 0.05, using: &rng)) }
        try model.save(to: folder.appendingPathComponent("model"))
        let config = folder.appendingPathComponent("tiny.json")
        try """
        {"model": "\(folder.appendingPathComponent("model").path)", "threads": 1, "epochs": 12, "promptPool": 4, "promptsPerEpoch": 2,
         "imagesPerPrompt": 2, "sampling": {"steps": 4}, "samplingBatch": 4, "trainBatch": 2, "gradientAccumulation": 1,
         "learningRate": 0.01, "statMinCount": 2, "rewards": {"weights": {"alignment_partial": 1, "compressibility": 0.1}},
         "evaluation": {"prompts": 2, "imagesPerPrompt": 1, "every": 4}}
        """.write(to: config, atomically: true, encoding: .utf8)
        let whole = folder.appendingPathComponent("whole"), pieces = folder.appendingPathComponent("pieces")
        let uninterrupted = try run(["finetune", "--config", config.path, "--out", whole.path])
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)
        XCTAssertTrue(uninterrupted.stderr.contains("epoch 12/12"), uninterrupted.stderr)

        let process = Process()
        process.executableURL = binary
        process.arguments = ["finetune", "--config", config.path, "--out", pieces.path]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let log = pieces.appendingPathComponent("run.h5")
        let seen = waitForEpochs(4, in: log, seconds: 60, poll: 0.02)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        XCTAssertGreaterThanOrEqual(seen, 4)
        XCTAssertLessThan(seen, 12, "the run ended before it was killed")
        let refused = try run(["finetune", "--config", config.path, "--out", pieces.path])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("--resume"), refused.stderr)
        let resumed = try run(["finetune", "--config", config.path, "--out", pieces.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resumed from"), resumed.stderr)
        let a = try Data(contentsOf: whole.appendingPathComponent("model/unet.safetensors"))
        let b = try Data(contentsOf: pieces.appendingPathComponent("model/unet.safetensors"))
        XCTAssertEqual(a, b, "resumed weights differ from the uninterrupted run's")
        let reader = try RunLogReader(url: log)
        XCTAssertEqual(try reader.epochs(), 12)
        let epochs = try reader.sampleColumn("epoch")
        XCTAssertEqual(epochs.count, 12 * 4)
        XCTAssertEqual(epochs, (0..<12).flatMap { [Double](repeating: Double($0), count: 4) })
        XCTAssertEqual(try reader.metric("reward_mean"), try RunLogReader(url: whole.appendingPathComponent("run.h5")).metric("reward_mean"))

        // A nearly full disk — here a file-size limit (`ulimit -f`, in KiB under bash): the run stops
        // between epochs while its log can still be closed whole, says so in one line, and resumes
        // once there is room to the uninterrupted result.
        let full = folder.appendingPathComponent("full")
        let limited = Process()
        limited.executableURL = URL(fileURLWithPath: "/bin/bash")
        limited.arguments = ["-c", "ulimit -f 330; exec \"$0\" finetune --config \"$1\" --out \"$2\"", binary.path, config.path, full.path]
        let errors = Pipe()
        limited.standardError = errors
        limited.standardOutput = FileHandle.nullDevice
        try limited.run()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        limited.waitUntilExit()
        XCTAssertEqual(limited.terminationStatus, 1, stderr)
        let failures = stderr.split(separator: "\n").filter { $0.hasPrefix("diffusion-rl:") }
        XCTAssertEqual(failures.count, 1, stderr)
        XCTAssertTrue(failures.first?.contains("KiB left for run.h5") == true && failures.first?.contains("--resume") == true, stderr)
        do {  // the reader closes before the run reopens its log
            let stopped = try RunLogReader(url: full.appendingPathComponent("run.h5"))
            XCTAssertLessThan(try stopped.epochs(), 12)
            XCTAssertEqual(try stopped.events().last?.kind, "stopped")
        }
        let afterFull = try run(["finetune", "--config", config.path, "--out", full.path, "--resume"])
        XCTAssertEqual(afterFull.status, 0, afterFull.stderr)
        XCTAssertEqual(try Data(contentsOf: full.appendingPathComponent("model/unet.safetensors")), a, "resumed after a full disk")
    }

    /// Runs `arguments` (which write the run folder `out`) to the end; again, killed with SIGKILL
    /// once its log holds `killAfter` rows; then with `--resume`: the files `compare` (relative to
    /// the folder) must equal the uninterrupted run's byte for byte, and the log hold every row once.
    private func assertKilledAndResumedEqualsUninterrupted(_ arguments: [String], out: URL, killAfter: Int, compare: [String],
                                                           file: StaticString = #filePath, line: UInt = #line) throws {
        let whole = out.appendingPathExtension("whole")
        let uninterrupted = try run(arguments + ["--out", whole.path])
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr, file: file, line: line)
        let rows = try RunLogReader(url: whole.appendingPathComponent("run.h5")).epochs()
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments + ["--out", out.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let seen = waitForEpochs(killAfter, in: out.appendingPathComponent("run.h5"), seconds: 60, poll: 0.01)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "the run ended before it was killed", file: file, line: line)
        XCTAssertLessThan(seen, rows, file: file, line: line)
        let resumed = try run(arguments + ["--out", out.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
        for name in compare {
            XCTAssertEqual(try Data(contentsOf: whole.appendingPathComponent(name)), try Data(contentsOf: out.appendingPathComponent(name)),
                           "\(name) differs from the uninterrupted run's", file: file, line: line)
        }
        let reader = try RunLogReader(url: out.appendingPathComponent("run.h5")), reference = try RunLogReader(url: whole.appendingPathComponent("run.h5"))
        XCTAssertEqual(try reader.epochs(), rows, file: file, line: line)
        for metric in reference.metricNames where !metric.contains("second") {
            // Bit patterns, so that the NaN of a phase that does not log a metric compares equal.
            XCTAssertEqual(try reader.metric(metric).map(\.bitPattern), try reference.metric(metric).map(\.bitPattern), metric, file: file, line: line)
        }
    }

    /// `pretrain` and `reward pretrain` killed with SIGKILL mid-run resume to the uninterrupted result.
    func testPretrainersKilledAndResumedEqualUninterrupted() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cli-kill-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var config = PretrainConfig()
        config.model = .tiny
        config.vaeSteps = 60
        config.vaeBatch = 4
        config.diffusionSteps = 60
        config.diffusionBatch = 4
        config.warmupSteps = 2
        config.logEvery = 3
        config.checkpointEvery = 6
        config.threads = 1
        let pretrainConfig = folder.appendingPathComponent("pretrain.json")
        try ConfigLoader.json(config).write(to: pretrainConfig, atomically: true, encoding: .utf8)
        try assertKilledAndResumedEqualsUninterrupted(["pretrain", "--config", pretrainConfig.path], out: folder.appendingPathComponent("base"),
                                                      killAfter: 25, compare: ["model/unet.safetensors", "model/vae.safetensors"])
        let captionConfig = folder.appendingPathComponent("caption.json")
        try """
        {"model": {"imageSize": 16, "patchSize": 4, "visionWidth": 8, "visionLayers": 1, "visionHeads": 2, "width": 16, "layers": 1,
                   "heads": 2}, "steps": 120, "batch": 4, "logEvery": 2, "checkpointEvery": 4, "threads": 1}
        """.write(to: captionConfig, atomically: true, encoding: .utf8)
        try assertKilledAndResumedEqualsUninterrupted(["reward", "pretrain", "--config", captionConfig.path], out: folder.appendingPathComponent("mllm"),
                                                      killAfter: 20, compare: ["decoder/decoder.safetensors"])
    }

    /// A fuzz smoke: 5,000 mutated inputs for each parser of users' files, none crashing the
    /// process, some accepted and most rejected (so the mutations reach past the first check).
    func testFuzzSmokeCrashesNoParser() throws {
        let result = try run(["debug", "fuzz", "--inputs", "5000", "--seed", "7", "--json"])
        XCTAssertEqual(result.status, 0, "a parser crashed: \(result.stderr.suffix(300))")
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        XCTAssertEqual(rows.compactMap { $0["parser"] as? String }, ["safetensors", "png", "config", "preferences", "caption", "runlog"])
        for row in rows {
            XCTAssertEqual(row["inputs"] as? Int, 5000)
            XCTAssertEqual(row["crashes"] as? [Int], [], "\(row)")
            XCTAssertEqual(row["hangs"] as? [Int], [], "\(row)")
            XCTAssertGreaterThan(row["accepted"] as? Int ?? 0, 0, "\(row): no mutated input parsed, so the mutations only test the first check")
            XCTAssertGreaterThan(row["rejected"] as? Int ?? 0, 2500, "\(row)")
        }
    }

    /// The run-log parser runs in child processes: a crash or a hang on an input is counted with
    /// its index, and the next child goes on from the input after it.
    func testFuzzContainsCrashesAndHangsOfChildProcesses() throws {
        let result = try run(["debug", "fuzz", "--parser", "containment", "--inputs", "8", "--hang-seconds", "1", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
        XCTAssertEqual(rows.first?["crashes"] as? [Int], [3])
        XCTAssertEqual(rows.first?["hangs"] as? [Int], [5])
        XCTAssertEqual(rows.first?["accepted"] as? Int, 6)
    }

    func testFinetuneRefusesEtaZeroAndEmptyPromptFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cli-bad-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let eta = folder.appendingPathComponent("eta.json"), prompts = folder.appendingPathComponent("none.txt")
        try #"{"sampling": {"eta": 0}}"#.write(to: eta, atomically: true, encoding: .utf8)
        try "".write(to: prompts, atomically: true, encoding: .utf8)
        let empty = folder.appendingPathComponent("empty.json")
        try #"{"prompts": "\#(prompts.path)"}"#.write(to: empty, atomically: true, encoding: .utf8)
        for (file, expected) in [(eta, "η = 0"), (empty, "no prompts")] {
            let result = try run(["finetune", "--config", file.path, "--out", folder.appendingPathComponent("out").path])
            XCTAssertEqual(result.status, 1)
            XCTAssertTrue(result.stderr.contains(expected), result.stderr)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        }
    }

    /// The reward model's commands end to end on tiny sizes: pretrain the decoder by captioning,
    /// make preference data from a tiny diffusion model, relabel it, train heads, evaluate, score;
    /// and each refuses to clobber an earlier result.
    func testRewardModelCommandsEndToEnd() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cli-reward-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var rng = RandomGenerator(seed: 5)
        let diffusion = try LatentDiffusionModel(config: .tiny, tokenizer: Tokenizer(captions: WorldGenerator(seed: 0).scenes(.train, count: 2000).map(\.caption)),
                                                 using: &rng)
        try diffusion.save(to: folder.appendingPathComponent("diffusion"))
        // `eval` on the tiny diffusion model: one JSON object, and progress lines that count images.
        let evaluated = try run(["eval", "--model", folder.appendingPathComponent("diffusion").path, "--n-prompts", "2",
                                 "--images-per-prompt", "2", "--steps", "2", "--threads", "1", "--json"])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        // Two prompts may hold no multi-object one: that estimate's mean is null, not an error.
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(evaluated.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(evaluated.stderr.split(separator: "\n"), ["  4/4 images judged"])
        // `eval --compare` of a model with itself: the same seeds, so every paired difference is exactly 0.
        let compared = try run(["eval", "--model", folder.appendingPathComponent("diffusion").path, "--compare",
                                folder.appendingPathComponent("diffusion").path, "--n-prompts", "2", "--images-per-prompt", "2",
                                "--steps", "2", "--threads", "1", "--json"])
        XCTAssertEqual(compared.status, 0, compared.stderr)
        let comparison = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(compared.stdout.utf8)) as? [String: Any])
        let alignment = try XCTUnwrap((comparison["scores"] as? [String: Any])?["alignment"] as? [String: [String: Any]])
        XCTAssertEqual(alignment["difference"]?["mean"] as? Double, 0)
        XCTAssertEqual(alignment["difference"]?["standardError"] as? Double, 0)
        XCTAssertEqual(alignment["first"]?["clusters"] as? Int, 2)
        // Best-of-3 by the gold judge (the oracle) against plain sampling, from one round of
        // candidates: never worse on the perspective it selects by, image by image.
        let selected = try run(["eval", "--model", folder.appendingPathComponent("diffusion").path, "--best-of", "3",
                                "--select-by", "alignment_partial,fidelity", "--n-prompts", "2", "--images-per-prompt", "2",
                                "--steps", "2", "--threads", "1", "--json"])
        XCTAssertEqual(selected.status, 0, selected.stderr)
        let selections = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(selected.stdout.utf8)) as? [String: Any])?["selections"] as? [String: Any])
        XCTAssertEqual(Set(selections.keys), ["alignment_partial", "fidelity"])
        for name in ["alignment_partial", "fidelity"] {
            let scores = try XCTUnwrap((selections[name] as? [String: Any])?["scores"] as? [String: Any])
            let gain = try XCTUnwrap(((scores[name] as? [String: Any])?["difference"] as? [String: Any])?["mean"] as? Double)
            XCTAssertGreaterThanOrEqual(gain, 0, name)
        }
        XCTAssertEqual(try run(["eval", "--model", "M", "--select-by", "alignment"]).status, 2, "--select-by without --best-of")
        // --also-score: brightness of every kept image, compared paired like a judge score; best of 3
        // by brightness is, image by image, at least as bright as the plain sample it started from.
        let alsoScored = try run(["eval", "--model", folder.appendingPathComponent("diffusion").path, "--compare",
                                  folder.appendingPathComponent("diffusion").path, "--best-of", "3", "--select-by", "brightness",
                                  "--also-score", "brightness,compressibility", "--n-prompts", "2", "--images-per-prompt", "2",
                                  "--steps", "2", "--threads", "1", "--json"])
        XCTAssertEqual(alsoScored.status, 0, alsoScored.stderr)
        let extra = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(alsoScored.stdout.utf8)) as? [String: Any])?["scores"] as? [String: Any])
        let brightness = try XCTUnwrap(extra["brightness"] as? [String: [String: Any]])
        XCTAssertGreaterThan(try XCTUnwrap(brightness["difference"]?["mean"] as? Double), 0)
        XCTAssertEqual(brightness["first"]?["count"] as? Int, 4)
        XCTAssertNotNil(extra["compressibility"])
        let unknownProxy = try run(["eval", "--model", folder.appendingPathComponent("diffusion").path, "--also-score", "proxy_alignment",
                               "--n-prompts", "1", "--images-per-prompt", "1", "--steps", "1", "--threads", "1"])
        XCTAssertEqual(unknownProxy.status, 1, "a proxy perspective without --reward-model")
        XCTAssertTrue(unknownProxy.stderr.contains("proxy_alignment"), unknownProxy.stderr)
        // Feynman–Kac steering with 3 particles against best-of-3 by the same oracle perspective.
        let steered = try run(["eval", "--model", folder.appendingPathComponent("diffusion").path, "--steer-particles", "3",
                               "--steer-every", "1", "--select-by", "alignment_partial", "--n-prompts", "2", "--images-per-prompt", "2",
                               "--steps", "3", "--threads", "1", "--json"])
        XCTAssertEqual(steered.status, 0, steered.stderr)
        let steering = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(steered.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(Set(steering.keys), ["bestOf", "steering", "steeringVersusBestOf", "unetForwardsEach", "meanSurvivors", "seconds"])
        XCTAssertEqual(steering["unetForwardsEach"] as? Int, 2 * 2 * 3 * 3 * 2)
        for (arguments, why) in [(["--steer-particles", "3"], "no --select-by"), (["--steer-particles", "3", "--select-by", "alignment,fidelity"], "two perspectives"),
                                 (["--steer-particles", "1", "--select-by", "alignment"], "one particle"),
                                 (["--steer-particles", "3", "--select-by", "alignment", "--best-of", "3"], "with --best-of")] {
            XCTAssertEqual(try run(["eval", "--model", "M"] + arguments).status, 2, why)
        }
        let pretrainConfig = folder.appendingPathComponent("pretrain.json")
        try """
        {"model": {"imageSize": 16, "patchSize": 4, "visionWidth": 8, "visionLayers": 1, "visionHeads": 2, "width": 16, "layers": 1,
                   "heads": 2}, "steps": 4, "batch": 4, "logEvery": 2, "threads": 1}
        """.write(to: pretrainConfig, atomically: true, encoding: .utf8)
        let mllm = folder.appendingPathComponent("mllm")
        let pretrain = try run(["reward", "pretrain", "--config", pretrainConfig.path, "--out", mllm.path])
        XCTAssertEqual(pretrain.status, 0, pretrain.stderr)
        XCTAssertTrue(pretrain.stderr.contains("step 4/4"), pretrain.stderr)
        XCTAssertEqual(try RunLogReader(url: mllm.appendingPathComponent("run.h5")).metric("caption_loss").count, 2)
        let again = try run(["reward", "pretrain", "--config", pretrainConfig.path, "--out", mllm.path])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("--force") || again.stderr.contains("exists"), again.stderr)
        // Under `mpirun -np 2` (4 captions a step, 2 per rank): the one process's decoder to 1e-5, its loss to 1e-5.
        if let together = try runUnderMPI(["reward", "pretrain", "--config", pretrainConfig.path, "--out", folder.appendingPathComponent("mllm-ranks").path]) {
            XCTAssertEqual(together.status, 0, together.stderr)
            XCTAssertLessThan(try relativeDistance(mllm.appendingPathComponent("decoder/decoder.safetensors"),
                                                   folder.appendingPathComponent("mllm-ranks/decoder/decoder.safetensors")), 1e-5)
            let lossA = try RunLogReader(url: mllm.appendingPathComponent("run.h5")).metric("caption_loss")
            let lossB = try RunLogReader(url: folder.appendingPathComponent("mllm-ranks/run.h5")).metric("caption_loss")
            XCTAssertEqual(lossA.count, lossB.count)
            for (x, y) in zip(lossA, lossB) { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x)) }
        }

        let dataConfig = folder.appendingPathComponent("data.json")
        try #"{"generatedPerPrompt": 2, "contrastiveGenerated": 1, "contrastiveRenders": 1, "sampling": {"steps": 2}}"#.write(to: dataConfig, atomically: true, encoding: .utf8)
        let data = folder.appendingPathComponent("data")
        let made = try run(["reward", "make-data", "--model", folder.appendingPathComponent("diffusion").path, "--config", dataConfig.path,
                            "--out", data.path, "--prompts", "3", "--threads", "1"])
        XCTAssertEqual(made.status, 0, made.stderr)
        // 6 images per prompt (2 generated, 1 generated for a contrastive prompt, the rendered
        // scene, a corrupted copy, a contrastive scene): 15 pairs (unless all aspects tie) and 6
        // safety labels.
        let records = try PreferenceData.read(data.appendingPathComponent("data.jsonl"))
        XCTAssertEqual(records.filter { !$0.isPair }.count, 18)
        XCTAssertLessThanOrEqual(records.filter(\.isPair).count, 45)
        // The gold judge prefers the prompt's own rendered scene to the scene of a prompt with one thing changed.
        let cleanAgainstContrast = records.first { $0.images == ["images/000003.png", "images/000005.png"] }
        XCTAssertEqual(cleanAgainstContrast?.goldPreferred?["alignment"], 0)
        XCTAssertEqual(try run(["reward", "make-data", "--model", folder.appendingPathComponent("diffusion").path, "--out", data.path]).status, 1)
        let relabeled = try run(["reward", "make-data", "--relabel", data.appendingPathComponent("data.jsonl").path, "--out", "noiseless.jsonl",
                                 "--noise", "0", "--saturation-bias", "0"])
        XCTAssertEqual(relabeled.status, 0, relabeled.stderr)
        XCTAssertTrue(relabeled.stdout.contains("alignment 1.000, fidelity 1.000, overall 1.000"), relabeled.stdout)

        let reward = folder.appendingPathComponent("reward")
        let train = try run(["reward", "train", "--decoder", mllm.appendingPathComponent("decoder").path, "--data",
                             data.appendingPathComponent("noiseless.jsonl").path, "--out", reward.path, "--threads", "1"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stderr.contains("SkipCA on"), train.stderr)
        let refused = try run(["reward", "train", "--decoder", mllm.appendingPathComponent("decoder").path, "--data",
                               data.appendingPathComponent("data.jsonl").path, "--out", reward.path])
        XCTAssertEqual(refused.status, 1)
        // Stopped before its second epoch and resumed, preference training ends with the same model,
        // byte for byte, as a run never interrupted.
        var trainConfig = PreferenceTrainConfig()
        trainConfig.decoder = mllm.appendingPathComponent("decoder").path
        trainConfig.data = data.appendingPathComponent("noiseless.jsonl").path
        trainConfig.epochs = 3
        trainConfig.logEvery = 3
        trainConfig.threads = 1
        try PreferenceTrainer(config: trainConfig, output: folder.appendingPathComponent("r-whole"), commandLine: "test", overwrite: false).run { _ in }
        do {
            let first = try PreferenceTrainer(config: trainConfig, output: folder.appendingPathComponent("r-pieces"), commandLine: "test", overwrite: false)
            first.stopBefore = 2
            XCTAssertThrowsError(try first.run { _ in })
        }
        try PreferenceTrainer(config: trainConfig, output: folder.appendingPathComponent("r-pieces"), commandLine: "test", overwrite: false,
                              resume: true).run { _ in }
        XCTAssertEqual(try Data(contentsOf: folder.appendingPathComponent("r-whole/model/reward_model.safetensors")),
                       try Data(contentsOf: folder.appendingPathComponent("r-pieces/model/reward_model.safetensors")))
        XCTAssertEqual(try RunLogReader(url: folder.appendingPathComponent("r-pieces/run.h5")).metric("loss"),
                       try RunLogReader(url: folder.appendingPathComponent("r-whole/run.h5")).metric("loss"))
        // Under `mpirun -np 2` (batches of 3 prompts, split 2 + 1): the one process's model to a
        // relative 1e-5 and its logged figures, the run folder written once.
        var parallelConfig = trainConfig
        parallelConfig.promptsPerBatch = 3
        parallelConfig.logEvery = 1
        let parallelFile = folder.appendingPathComponent("train-parallel.json")
        try ConfigLoader.json(parallelConfig).write(to: parallelFile, atomically: true, encoding: .utf8)
        let alone = try run(["reward", "train", "--config", parallelFile.path, "--out", folder.appendingPathComponent("r-alone").path])
        XCTAssertEqual(alone.status, 0, alone.stderr)
        if let together = try runUnderMPI(["reward", "train", "--config", parallelFile.path, "--out", folder.appendingPathComponent("r-ranks").path]) {
            XCTAssertEqual(together.status, 0, together.stderr)
            XCTAssertLessThan(try relativeDistance(folder.appendingPathComponent("r-alone/model/reward_model.safetensors"),
                                                   folder.appendingPathComponent("r-ranks/model/reward_model.safetensors")), 1e-5)
            let logA = try RunLogReader(url: folder.appendingPathComponent("r-alone/run.h5"))
            let logB = try RunLogReader(url: folder.appendingPathComponent("r-ranks/run.h5"))
            for name in logA.metricNames where name.hasPrefix("loss") || name.hasPrefix("accuracy") || name == "grad_norm" {
                for (x, y) in zip(try logA.metric(name), try logB.metric(name)) where !(x.isNaN && y.isNaN) {
                    XCTAssertEqual(x, y, accuracy: 1e-4 * max(abs(x), 1), name)
                }
            }
            XCTAssertEqual(try logB.epochs(), try logA.epochs())
            XCTAssertEqual(try logB.events().filter { $0.message.contains("data-parallel over 2 ranks") }.count, 1)
        }
        // Killed with SIGKILL mid-run and resumed from its newest checkpoint: the same model.
        trainConfig.epochs = 80
        trainConfig.logEvery = 1
        let killConfig = folder.appendingPathComponent("train-kill.json")
        try ConfigLoader.json(trainConfig).write(to: killConfig, atomically: true, encoding: .utf8)
        try assertKilledAndResumedEqualsUninterrupted(["reward", "train", "--config", killConfig.path], out: folder.appendingPathComponent("r-killed"),
                                                      killAfter: 15, compare: ["model/reward_model.safetensors"])
        let unknown = try run(["reward", "train", "--decoder", mllm.appendingPathComponent("decoder").path, "--data",
                               data.appendingPathComponent("data.jsonl").path, "--out", folder.appendingPathComponent("r2").path,
                               "--perspectives", "alignment,beauty"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.stderr.contains("'beauty'"), unknown.stderr)

        let evaluation = try run(["reward", "eval", "--model", reward.appendingPathComponent("model").path, "--data",
                                  data.appendingPathComponent("data.jsonl").path, "--json"])
        XCTAssertEqual(evaluation.status, 0, evaluation.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(evaluation.stdout.utf8)) as? [String: [String: Any]]
        XCTAssertEqual(json?["safety"]?["goldLabels"] as? Int, 18)
        // Paired with itself: the same accuracy as alone and a difference of exactly 0; with another
        // model, the difference of the two accuracies.
        for other in [reward, folder.appendingPathComponent("r-killed")] {
            let compared = try run(["reward", "eval", "--model", reward.appendingPathComponent("model").path, "--compare",
                                    other.appendingPathComponent("model").path, "--data", data.appendingPathComponent("data.jsonl").path, "--json"])
            XCTAssertEqual(compared.status, 0, compared.stderr)
            let paired = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(compared.stdout.utf8)) as? [String: [String: Double]])
            XCTAssertFalse(paired.isEmpty)
            for (name, figures) in paired {
                XCTAssertEqual(figures["accuracy"]!, json?[name]?["goldPairAccuracy"] as? Double ?? .nan, accuracy: 1e-12, name)
                XCTAssertEqual(figures["difference"]!, figures["accuracy"]! - figures["baselineAccuracy"]!, accuracy: 1e-12, name)
                if other == reward { XCTAssertEqual(figures["difference"], 0, name); XCTAssertEqual(figures["differenceSE"], 0, name) }
            }
        }
        let zeroShot = try run(["reward", "eval", "--caption-likelihood", mllm.appendingPathComponent("decoder").path, "--data",
                                data.appendingPathComponent("data.jsonl").path, "--json"])
        XCTAssertEqual(zeroShot.status, 0, zeroShot.stderr)
        let zeroShotJSON = try JSONSerialization.jsonObject(with: Data(zeroShot.stdout.utf8)) as? [String: [String: Any]]
        XCTAssertEqual(zeroShotJSON.map { Set($0.keys) }, ["alignment"])
        XCTAssertEqual(try run(["reward", "eval", "--caption-likelihood", mllm.appendingPathComponent("decoder").path,
                                "--model", reward.appendingPathComponent("model").path, "--data", data.appendingPathComponent("data.jsonl").path]).status, 2,
                       "a usage error: --model and --caption-likelihood exclude each other")
        let score = try run(["reward", "score", data.appendingPathComponent("images/000000.png").path, "--prompt", "a red circle",
                             "--model", reward.appendingPathComponent("model").path, "--json"])
        XCTAssertEqual(score.status, 0, score.stderr)
        let scores = try JSONSerialization.jsonObject(with: Data(score.stdout.utf8)) as? [String: Double]
        XCTAssertEqual(scores.map { Set($0.keys) }, ["alignment", "fidelity", "safety", "overall"])
        // The two best-of-N studies on the tiny models: one folder each, resumable, never clobbered.
        let diffusionPath = folder.appendingPathComponent("diffusion").path, rewardPath = reward.appendingPathComponent("model").path
        let studyOptions = ["--model", diffusionPath, "--n-prompts", "2", "--images-per-prompt", "2", "--steps", "2", "--threads", "1", "--json"]
        let perspectivesStudy = folder.appendingPathComponent("study-perspectives").path
        let studied = try run(["study", "perspectives", "--reward-model", rewardPath, "--best-of", "3", "--out", perspectivesStudy] + studyOptions)
        XCTAssertEqual(studied.status, 0, studied.stderr)
        XCTAssertTrue(studied.stderr.contains("candidate 3/3"), studied.stderr)
        let perspectivesResult = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(studied.stdout.utf8)) as? [String: Any])
        let selectorNames = (perspectivesResult["selectors"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        XCTAssertEqual(selectorNames, ["proxy_alignment", "proxy_fidelity", "proxy_safety", "proxy_overall", "all", "all_but_alignment",
                                       "all_but_fidelity", "all_but_safety", "all_but_overall"])
        for file in ["run.h5", "study.json", "study.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: perspectivesStudy + "/" + file), file)
        }
        XCTAssertEqual(try run(["study", "perspectives", "--reward-model", rewardPath, "--best-of", "3", "--out", perspectivesStudy] + studyOptions).status, 1,
                       "an existing study without --force or --resume")
        let resumedStudy = try run(["study", "perspectives", "--reward-model", rewardPath, "--best-of", "3", "--out", perspectivesStudy, "--resume"] + studyOptions)
        XCTAssertEqual(resumedStudy.status, 0, resumedStudy.stderr)
        XCTAssertFalse(resumedStudy.stderr.contains("candidate 1/3"), "a finished study resumed draws nothing")
        let resumedResult = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(resumedStudy.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(resumedResult["selectors"] as? NSArray, perspectivesResult["selectors"] as? NSArray, "the same results, read from the log")
        // --finetune: one self-training run per selector, its heads (standardized) the reward; each
        // fine-tuned model is drawn on the study's plain seeds and scored against the base. Resumed,
        // the finished runs are not trained again.
        let template = folder.appendingPathComponent("perspectives-finetune.json")
        try #"{"model": "\#(diffusionPath)", "objective": "selfTraining", "epochs": 1, "promptPool": 4, "promptsPerEpoch": 2, "imagesPerPrompt": 2,"#
            .appending(#" "sampling": {"steps": 2}, "samplingBatch": 4, "trainBatch": 2, "evaluation": {"prompts": 0}, "kl": {"every": 1, "samples": 0},"#)
            .appending(#" "selfTraining": {"k": 1, "threshold": -100, "anchorShare": 0}}"#).write(to: template, atomically: true, encoding: .utf8)
        let finetuneStudy = folder.appendingPathComponent("study-finetune").path
        let finetuned = try run(["study", "perspectives", "--reward-model", rewardPath, "--best-of", "2", "--finetune", template.path,
                                 "--out", finetuneStudy] + studyOptions)
        XCTAssertEqual(finetuned.status, 0, finetuned.stderr)
        let finetunedResult = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(finetuned.stdout.utf8)) as? [String: Any])
        let finetunedRuns = try XCTUnwrap(finetunedResult["runs"] as? [[String: Any]])
        XCTAssertEqual(finetunedRuns.count, 9)
        for point in finetunedRuns {
            let run = try XCTUnwrap(point["run"] as? String)
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/model/unet.safetensors"), run)
            XCTAssertNotNil((point["gains"] as? [String: Any])?["gold_alignment"], run)
        }
        XCTAssertTrue(try String(contentsOfFile: finetuneStudy + "/study.html", encoding: .utf8).contains("fine-tuned with each selector"))
        let refinetuned = try run(["study", "perspectives", "--reward-model", rewardPath, "--best-of", "2", "--finetune", template.path,
                                   "--out", finetuneStudy, "--resume"] + studyOptions)
        XCTAssertEqual(refinetuned.status, 0, refinetuned.stderr)
        XCTAssertFalse(refinetuned.stderr.contains("fine-tuning on"), refinetuned.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(refinetuned.stdout.utf8)) as? [String: Any])?["runs"] as? NSArray,
                       finetunedResult["runs"] as? NSArray)
        // Under mpirun the ranks share each candidate's batches (40 images: batches of 32 and 8) and rank 0 writes: the same study.
        let sharedStudy = ["study", "perspectives", "--reward-model", rewardPath, "--best-of", "3", "--model", diffusionPath, "--n-prompts", "8",
                           "--images-per-prompt", "5", "--steps", "2", "--threads", "1", "--json"]
        let aloneStudy = try run(sharedStudy + ["--out", folder.appendingPathComponent("study-alone").path])
        XCTAssertEqual(aloneStudy.status, 0, aloneStudy.stderr)
        if let together = try runUnderMPI(sharedStudy + ["--out", folder.appendingPathComponent("study-shared").path]) {
            XCTAssertEqual(together.status, 0, together.stderr)
            let a = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(aloneStudy.stdout.utf8)) as? [String: Any])
            let b = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(together.stdout.utf8)) as? [String: Any])
            XCTAssertEqual(b["selectors"] as? NSArray, a["selectors"] as? NSArray, "a study over 2 ranks differs from one process")
            XCTAssertEqual(try RunLogReader(url: folder.appendingPathComponent("study-shared/run.h5")).epochs(), 3)
        }
        // A "run" whose model is the base itself: on the study's plain seeds its gains are exactly 0.
        let sameModelRun = folder.appendingPathComponent("same-model-run")
        try FileManager.default.createDirectory(at: sameModelRun, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: diffusionPath), to: sameModelRun.appendingPathComponent("model"))
        let overoptimization = try run(["study", "overoptimization", "--reward-model", "\(rewardPath),\(folder.appendingPathComponent("r-whole/model").path)",
                                        "--max-n", "3", "--runs", sameModelRun.path,
                                        "--out", folder.appendingPathComponent("study-overoptimization").path] + studyOptions)
        XCTAssertEqual(overoptimization.status, 0, overoptimization.stderr)
        let overoptimizationResult = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(overoptimization.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((overoptimizationResult["selectors"] as? [[String: Any]])?.compactMap { $0["name"] as? String },
                       ["rm1_proxy_alignment", "rm2_proxy_alignment", "gold_alignment"])
        let klBound = try XCTUnwrap(overoptimizationResult["klBound"] as? [Double])
        for (value, expected) in zip(klBound, [0, log(2.0) - 0.5, log(3.0) - 2.0 / 3]) { XCTAssertEqual(value, expected, accuracy: 1e-12) }
        XCTAssertEqual(klBound.count, 3)
        let runPoint = try XCTUnwrap((overoptimizationResult["runs"] as? [[String: Any]])?.first)
        let runGain = try XCTUnwrap((runPoint["gains"] as? [String: [String: Any]])?["gold_alignment"])
        XCTAssertEqual(runGain["mean"] as? Double, 0)
        XCTAssertEqual(runGain["standardError"] as? Double, 0)
        XCTAssertTrue(runPoint["kl"] is NSNull, "a run without a log has no KL")
        XCTAssertEqual(try run(["study", "overoptimization", "--reward-model", "\(rewardPath),\(rewardPath)", "--out", folder.appendingPathComponent("s3").path]).status, 2)
        let wrongSize = try run(["reward", "score", data.appendingPathComponent("images/000000.png").path, "--prompt", "a red circle",
                                 "--model", folder.appendingPathComponent("nothing").path])
        XCTAssertEqual(wrongSize.status, 1)
        XCTAssertTrue(wrongSize.stderr.contains("config.json"), wrongSize.stderr)
    }
}
