import Foundation
import XCTest
import Images
@testable import RunLog

private func temporaryRun() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID()).h5")
}

private let info = RunInfo(config: #"{"learning_rate": 0.001, "note": "ünïcödé"}"#, commandLine: "diffusion-rl test",
                           gitCommit: "abc123", seed: 42, versions: "test", host: "host", startTime: "2026-01-01T00:00:00Z")

final class RunLogRoundTripTests: XCTestCase {
    func testEveryKindOfRecordRoundTrips() throws {
        let url = temporaryRun()
        let layout = RunLayout(metrics: ["loss", MetricSpec("reward/alignment".replacingOccurrences(of: "/", with: "_")), "kl"],
                               sampleColumns: ["reward", "gold"], prompts: ["a red circle", "two blue squares", "ünïcödé prompt"],
                               imageSize: [4, 5])
        let writer = try RunLogWriter(url: url, layout: layout, info: info)
        let image = RGBImage(width: 5, height: 4, channels: 3, pixels: (0..<60).map { UInt8($0 * 4) })
        for epoch in 0..<3 {
            try writer.record("loss", Double(epoch) + 0.5)
            if epoch != 1 { try writer.record("kl", Double(epoch) * 2) }
            try writer.appendSamples(epoch: epoch, prompts: [0, 2], seeds: [7, Int64(epoch)], columns: ["reward": [1, -1], "gold": [0.5, 0.25]])
            try writer.appendImages(epoch: epoch, prompts: [1], images: [image])
            try writer.event(epoch: epoch, kind: "warn", "KL rose at epoch \(epoch)")
            try writer.endEpoch()
        }
        try writer.checkpoint(epoch: 2, path: "Logs/run/epoch-2.safetensors", sha256: SHA256.hex(Data("x".utf8)))
        try writer.close()

        let reader = try RunLogReader(url: url)
        XCTAssertEqual(reader.attributes["config"], info.config)
        XCTAssertEqual(reader.attributes["seed"], "42")
        XCTAssertEqual(reader.attributes["git_commit"], "abc123")
        XCTAssertEqual(reader.layout, layout)
        XCTAssertEqual(try reader.epochs(), 3)
        XCTAssertEqual(try reader.metric("loss"), [0.5, 1.5, 2.5])
        let kl = try reader.metric("kl")
        XCTAssertEqual(kl[0], 0); XCTAssertTrue(kl[1].isNaN); XCTAssertEqual(kl[2], 4)
        XCTAssertTrue(try reader.metric("reward_alignment").allSatisfy(\.isNaN))
        XCTAssertEqual(try reader.prompts(), layout.prompts)
        XCTAssertEqual(try reader.sampleColumn("epoch"), [0, 0, 1, 1, 2, 2])
        XCTAssertEqual(try reader.sampleColumn("prompt"), [0, 2, 0, 2, 0, 2])
        XCTAssertEqual(try reader.sampleColumn("seed"), [7, 0, 7, 1, 7, 2])
        XCTAssertEqual(try reader.sampleColumn("reward"), [1, -1, 1, -1, 1, -1])
        XCTAssertEqual(try reader.sampleColumn("gold"), [0.5, 0.25, 0.5, 0.25, 0.5, 0.25])
        let images = try reader.images()
        XCTAssertEqual(images.map(\.epoch), [0, 1, 2])
        XCTAssertEqual(images.map(\.prompt), [1, 1, 1])
        XCTAssertEqual(images[2].image, image)
        XCTAssertEqual(try reader.events().map(\.message), ["KL rose at epoch 0", "KL rose at epoch 1", "KL rose at epoch 2"])
        XCTAssertEqual(try reader.events().map(\.kind), ["warn", "warn", "warn"])
        XCTAssertEqual(try reader.checkpoints(), [RunCheckpoint(epoch: 2, path: "Logs/run/epoch-2.safetensors",
                                                                sha256: "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")])
    }

    func testLongStringsAreCutAtACharacterBoundary() throws {
        let url = temporaryRun()
        let writer = try RunLogWriter(url: url, layout: RunLayout(metrics: ["loss"]), info: info)
        let long = String(repeating: "é", count: 400)   // 800 bytes of UTF-8
        try writer.event(epoch: 0, kind: "info", long)
        try writer.endEpoch()
        try writer.close()
        let message = try RunLogReader(url: url).events()[0].message
        XCTAssertEqual(message, String(repeating: "é", count: RunLayout.eventMessageWidth / 2))
    }

    func testRefusesToOverwriteUnlessAskedAndRejectsUndeclaredNames() throws {
        let url = temporaryRun()
        let writer = try RunLogWriter(url: url, layout: RunLayout(metrics: ["loss"], sampleColumns: ["reward"]), info: info)
        XCTAssertThrowsError(try writer.record("accuracy", 1)) { XCTAssertTrue("\($0)".contains("'accuracy'"), "\($0)") }
        XCTAssertThrowsError(try writer.appendSamples(epoch: 0, prompts: [0], seeds: [0], columns: ["gold": [1]]))
        XCTAssertThrowsError(try writer.appendImages(epoch: 0, prompts: [0], images: [RGBImage(width: 2, height: 2, fill: [0, 0, 0])]))
        try writer.close()
        XCTAssertThrowsError(try RunLogWriter(url: url, layout: RunLayout(metrics: ["loss"]), info: info)) {
            XCTAssertTrue("\($0)".contains("refusing to overwrite"), "\($0)")
        }
        XCTAssertNoThrow(try RunLogWriter(url: url, layout: RunLayout(metrics: ["loss"]), info: info, overwrite: true))
        XCTAssertThrowsError(try RunLogWriter(url: temporaryRun(), layout: RunLayout(metrics: ["a", "a"]), info: info))
        XCTAssertThrowsError(try RunLogWriter(url: temporaryRun(), layout: RunLayout(metrics: ["a/b"]), info: info))
    }

    func testBadFilesAreOneLineErrors() throws {
        let text = temporaryRun()
        try Data("not hdf5 at all".utf8).write(to: text)
        XCTAssertThrowsError(try RunLogReader(url: text)) { XCTAssertTrue("\($0)".contains("not an HDF5 file"), "\($0)") }
        XCTAssertThrowsError(try RunLogReader(url: temporaryRun())) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
        // A valid run, truncated.
        let url = temporaryRun()
        let writer = try RunLogWriter(url: url, layout: RunLayout(metrics: ["loss"]), info: info)
        for epoch in 0..<5 { try writer.record("loss", Double(epoch)); try writer.endEpoch() }
        try writer.close()
        let bytes = try Data(contentsOf: url)
        let truncated = temporaryRun()
        try bytes.prefix(bytes.count / 2).write(to: truncated)
        XCTAssertThrowsError(try RunLogReader(url: truncated).metric("loss"))
        // An HDF5 file that holds no run.
        let empty = temporaryRun()
        try makeForeignHDF5(at: empty)
        XCTAssertThrowsError(try RunLogReader(url: empty)) { XCTAssertTrue("\($0)".contains("no DiffusionRL run"), "\($0)") }
    }

    /// `h5dump` (Debian's hdf5-tools) reads a file the project wrote.
    func testH5dumpReadsOurFiles() throws {
        let url = temporaryRun()
        let writer = try RunLogWriter(url: url, layout: RunLayout(metrics: ["loss"], prompts: ["a red circle"]), info: info)
        for epoch in 0..<4 { try writer.record("loss", 1 / Double(epoch + 1)); try writer.endEpoch() }
        try writer.event(epoch: 3, kind: "stop", "guard stopped the run")
        try writer.close()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["h5dump", "-d", "/metrics/loss", "-d", "/events/message", "-d", "/prompts", "-a", "/seed", url.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, output)
        XCTAssertTrue(output.contains("(0): 1, 0.5, 0.333333, 0.25"), output)
        XCTAssertTrue(output.contains("guard stopped the run"), output)
        XCTAssertTrue(output.contains("a red circle"), output)
        XCTAssertTrue(output.contains("42"), output)
    }

    func testResumingACleanlyClosedRunAppendsEpochs() throws {
        let url = temporaryRun()
        let layout = RunLayout(metrics: ["loss"], sampleColumns: ["reward"], prompts: ["p"])
        let writer = try RunLogWriter(url: url, layout: layout, info: info)
        for epoch in 0..<3 {
            try writer.record("loss", Double(epoch))
            try writer.appendSamples(epoch: epoch, prompts: [0], seeds: [0], columns: ["reward": [1]])
            try writer.endEpoch()
        }
        // Rows of an epoch that never ended are dropped on resume.
        try writer.appendSamples(epoch: 3, prompts: [0], seeds: [0], columns: ["reward": [9]])
        try writer.event(epoch: 3, kind: "info", "in flight")
        try writer.close()
        let resumed = try RunLogWriter(resuming: url)
        XCTAssertEqual(resumed.epochs, 3)
        XCTAssertEqual(resumed.resumeNotes.count, 1, "\(resumed.resumeNotes)")
        try resumed.record("loss", 3)
        try resumed.appendSamples(epoch: 3, prompts: [0], seeds: [0], columns: ["reward": [2]])
        try resumed.endEpoch()
        try resumed.close()
        let reader = try RunLogReader(url: url)
        XCTAssertEqual(try reader.metric("loss"), [0, 1, 2, 3])
        XCTAssertEqual(try reader.sampleColumn("reward"), [1, 1, 1, 2])
        XCTAssertEqual(try reader.events().count, 0)
    }

    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hex(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex(Data(repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

import CHDF5
/// An HDF5 file with one group and nothing of a run.
private func makeForeignHDF5(at url: URL) throws {
    let file = H5Fcreate(url.path, chdf5_f_acc_trunc(), chdf5_p_default(), chdf5_p_default())
    XCTAssertGreaterThanOrEqual(file, 0)
    let group = H5Gcreate2(file, "other", chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
    H5Gclose(group)
    H5Fclose(file)
}

final class ReportTests: XCTestCase {
    func testReportIsSelfContainedWithChartsImagesAndEvents() throws {
        var readers: [RunReport.Run] = []
        for (index, name) in ["base", "ablation"].enumerated() {
            let url = temporaryRun()
            let writer = try RunLogWriter(url: url, layout: RunLayout(metrics: [MetricSpec("loss", better: .lower, kind: .loss), MetricSpec("reward_alignment", better: .higher, kind: .reward),
                                                                                MetricSpec("kl", better: .lower, kind: .kl)], prompts: ["a <red> circle"],
                                                                      imageSize: [4, 4]), info: info)
            for epoch in 0..<6 {
                try writer.record("loss", 1 / Double(epoch + 1 + index))
                try writer.record("reward_alignment", Double(epoch) / 6)
                try writer.record("kl", epoch == 3 ? .nan : Double(epoch))
                try writer.appendImages(epoch: epoch, prompts: [0], images: [RGBImage(width: 4, height: 4, fill: [200, 0, 0])])
                try writer.endEpoch()
            }
            try writer.event(epoch: 5, kind: "guard", "stopped & restored")
            try writer.close()
            readers.append(RunReport.Run(name: name, reader: try RunLogReader(url: url)))
        }
        let html = try RunReport.html(readers, maxImageEpochs: 3)
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http"), "external reference")
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4, "three metric charts and one reward-vs-√KL chart")
        XCTAssertTrue(html.contains("reward_alignment vs √kl"))
        XCTAssertEqual(html.components(separatedBy: "data:image/png;base64,").count - 1, 6, "3 epochs × 2 runs")
        XCTAssertTrue(html.contains("a &lt;red&gt; circle"))
        XCTAssertTrue(html.contains("stopped &amp; restored"))
        XCTAssertTrue(html.contains(">ablation<"))
        XCTAssertEqual(RunReport.pickEvenly([0, 1, 2, 3, 4, 5], count: 3), [0, 2, 5])
    }

    /// The report of a small run, rendered by headless Chromium (which `make test` installs as
    /// root): the page loads without a console message, the screenshot is not blank, and a metric
    /// that was never given a finite value gets a line, not an empty chart.
    func testReportRendersInHeadlessChromium() throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("Chromium is not installed (make test installs Debian's chromium when run as root): the report was not rendered")
        }
        let url = temporaryRun()
        let writer = try RunLogWriter(url: url, layout: RunLayout(metrics: [MetricSpec("reward_alignment", better: .higher, kind: .reward),
                                                                            MetricSpec("kl", better: .lower, kind: .kl),
                                                                            MetricSpec("eval_alignment", better: .higher, kind: .evaluation)],
                                                                  prompts: ["a red circle"], imageSize: [4, 4]), info: info)
        for epoch in 0..<12 {
            try writer.record("reward_alignment", 0.3 + 0.02 * Double(epoch))
            try writer.record("kl", epoch % 4 == 0 ? 10 * Double(epoch) : .nan)
            try writer.record("eval_alignment", .nan)
            try writer.appendImages(epoch: epoch, prompts: [0], images: [RGBImage(width: 4, height: 4, fill: [200, 0, 0])])
            try writer.endEpoch()
        }
        try writer.close()
        let html = try RunReport.html([RunReport.Run(name: "run", reader: try RunLogReader(url: url))], maxImageEpochs: 3)
        XCTAssertTrue(html.contains("never given a finite value: eval_alignment"), "an empty chart instead of a line")
        XCTAssertFalse(html.contains("no finite values"))
        let page = url.deletingPathExtension().appendingPathExtension("html"), shot = url.deletingPathExtension().appendingPathExtension("png")
        try html.write(to: page, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: chromium)
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--window-size=1000,1400",
                             "--screenshot=\(shot.path)", page.absoluteString]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, log)
        let console = log.split(separator: "\n").filter { $0.contains("CONSOLE") || $0.contains("Uncaught") }
        XCTAssertEqual(console, [], "the page logged to the console")
        let image = try PNG.read(shot)
        XCTAssertEqual(image.width, 1000)
        let rgb = image.rgb().pixels
        var inked = 0, colors = Set<Int>()
        for i in stride(from: 0, to: rgb.count, by: 3) {
            let (r, g, b) = (Int(rgb[i]), Int(rgb[i + 1]), Int(rgb[i + 2]))
            if r + g + b < 600 { inked += 1 }
            colors.insert(r << 16 | g << 8 | b)
        }
        XCTAssertGreaterThan(Double(inked) / Double(rgb.count / 3), 0.01, "the screenshot is blank")
        XCTAssertGreaterThan(colors.count, 20, "the screenshot shows no charts")
    }

    /// Metrics declared as per-step KL become one chart per run with a line per measured epoch
    /// (x = the declared step), not a chart per step; epochs without a KL measurement are left out.
    func testReportChartsKLBySamplingStep() throws {
        let url = temporaryRun()
        let steps = (0..<3).map { String(format: "kl_step_%02d", $0) }
        let specs = [MetricSpec("kl_mean", better: .lower, kind: .kl)] + steps.enumerated().map { MetricSpec($1, better: .lower, kind: .klStep, step: $0) }
        let writer = try RunLogWriter(url: url, layout: RunLayout(metrics: specs), info: info)
        for epoch in 0..<5 {
            let measured = epoch % 2 == 0
            try writer.record("kl_mean", measured ? Double(epoch) : .nan)
            for (step, name) in steps.enumerated() { try writer.record(name, measured ? Double(epoch * (step + 1)) : .nan) }
            try writer.endEpoch()
        }
        try writer.close()
        let html = try RunReport.html([RunReport.Run(name: "drift", reader: try RunLogReader(url: url))])
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 2, "the kl_mean chart and one by-step chart")
        XCTAssertTrue(html.contains("KL by sampling step — drift"))
        XCTAssertFalse(html.contains("aria-label='kl_step_01'"))
        for epoch in [0, 2, 4] { XCTAssertTrue(html.contains(">epoch \(epoch)<"), "epoch \(epoch) in the legend") }
        XCTAssertFalse(html.contains(">epoch 1<"), "epoch 1 has no KL")
        // The same names undeclared (a log written before metrics were declared) are plain charts.
        let plain = temporaryRun()
        let old = try RunLogWriter(url: plain, layout: RunLayout(metrics: ["kl_mean"] + steps.map { MetricSpec($0) }), info: info)
        for name in ["kl_mean"] + steps { try old.record(name, 1) }
        try old.endEpoch()
        try old.close()
        let oldHTML = try RunReport.html([RunReport.Run(name: "old", reader: try RunLogReader(url: plain))])
        XCTAssertEqual(oldHTML.components(separatedBy: "<svg").count - 1, 4)
        XCTAssertEqual(try RunLogReader(url: url).metricSpecs, specs, "the declarations round-trip")
    }

    /// Tick labels at round numbers never repeat, even over a narrow range; a non-negative series
    /// gets no negative axis; the page opens with a summary and folds the secondary metrics.
    func testReadableTicksSummaryAndFolding() throws {
        let narrow = RunReport.ticks(0.9995, 1.0005)
        XCTAssertEqual(Set(narrow.map(\.label)).count, narrow.count, "\(narrow)")
        XCTAssertGreaterThanOrEqual(narrow.count, 3)
        XCTAssertEqual(RunReport.ticks(0, 100).map(\.label), ["0", "20", "40", "60", "80", "100"])
        XCTAssertEqual(RunReport.ticks(0, 1).map(\.label), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        let url = temporaryRun()
        let layout = RunLayout(metrics: [MetricSpec("reward_mean", better: .higher, kind: .reward), MetricSpec("kl_mean", better: .lower, kind: .kl),
                                         MetricSpec("grad_norm"), MetricSpec("seconds", better: .lower, kind: .duration)])
        let writer = try RunLogWriter(url: url, layout: layout, info: info)
        for epoch in 0..<10 {
            try writer.record("reward_mean", Double(epoch))
            try writer.record("kl_mean", Double(epoch) * 0.01)
            try writer.record("grad_norm", 1)
            try writer.record("seconds", 60)
            try writer.endEpoch()
        }
        try writer.event(epoch: 9, kind: "guard", "warning: something")
        try writer.close()
        let html = try RunReport.html([RunReport.Run(name: "run", reader: try RunLogReader(url: url))])
        XCTAssertLessThan(html.range(of: "class=summary")!.lowerBound, html.range(of: "<h2>Curves")!.lowerBound, "the summary comes first")
        XCTAssertTrue(html.contains("<td>10.0</td>"), "ten minutes")
        XCTAssertTrue(html.contains("reward_mean 2 → 7"), "means of the first and last five epochs")
        XCTAssertTrue(html.contains("1 guard"))
        XCTAssertTrue(html.contains("<details><summary>All other metrics (2)</summary>"), "grad_norm and seconds folded")
        XCTAssertFalse(html.contains(">-0.0"), "no negative KL axis")
        XCTAssertTrue(html.contains("fill-opacity='0.15'"), "the reward's band")
        // A caller's results (a table and before/after images) come right after the summary.
        let section = RunReport.Section(title: "Before & after", table: [["score", "change"], ["alignment", "+0.05"]],
                                        images: [(caption: "before", image: RGBImage(width: 4, height: 4, fill: [0, 0, 255]))])
        let withSection = try RunReport.html([RunReport.Run(name: "run", reader: try RunLogReader(url: url))], sections: [section])
        XCTAssertTrue(withSection.contains("<h2>Before &amp; after</h2>"))
        XCTAssertTrue(withSection.contains("<td>alignment</td><td>+0.05</td>"))
        XCTAssertLessThan(withSection.range(of: "Before &amp; after")!.lowerBound, withSection.range(of: "<h2>Curves")!.lowerBound)
        XCTAssertEqual(withSection.components(separatedBy: "data:image/png;base64,").count - 1, 1)
    }

    /// A run with a learned proxy reward gets a gold-against-proxy scatter per proxy metric declared with a gold score.
    func testReportChartsProxyAgainstGold() throws {
        let url = temporaryRun()
        let layout = RunLayout(metrics: [MetricSpec("reward_proxy_alignment", better: .higher, kind: .proxy, gold: "gold_alignment"),
                                         MetricSpec("gold_alignment", better: .higher, kind: .gold),
                                         MetricSpec("reward_proxy_style", better: .higher, kind: .proxy)])
        let writer = try RunLogWriter(url: url, layout: layout, info: info)
        for epoch in 0..<4 {
            try writer.record("reward_proxy_alignment", Double(epoch))
            try writer.record("gold_alignment", 0.3)
            try writer.record("reward_proxy_style", 1)
            try writer.endEpoch()
        }
        try writer.close()
        let html = try RunReport.html([RunReport.Run(name: "proxy", reader: try RunLogReader(url: url))])
        XCTAssertTrue(html.contains("Proxy reward against gold"))
        XCTAssertTrue(html.contains("gold_alignment vs reward_proxy_alignment"))
        XCTAssertFalse(html.contains("vs reward_proxy_style"), "no gold score to compare with")
    }

    /// Logs written before metrics were declared hold bare names in their layout: they still open,
    /// their metrics undeclared.
    func testLayoutsWithBareMetricNamesDecode() throws {
        let json = #"{"metrics": ["loss", "kl_mean"], "sampleColumns": [], "prompts": []}"#
        let layout = try JSONDecoder().decode(RunLayout.self, from: Data(json.utf8))
        XCTAssertEqual(layout.metrics, [MetricSpec("loss"), MetricSpec("kl_mean")])
        XCTAssertEqual(layout.metrics[1].better, .neither)
        XCTAssertEqual(layout.metrics[1].kind, .other)
    }

    /// The commit is read from `.git` itself: a loose ref, a packed ref, a detached HEAD, a
    /// worktree's `.git` file — from the work tree or a folder below it; nil outside a repository.
    func testCheckedOutCommitWithoutGit() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("git-\(UUID())")
        let git = root.appendingPathComponent(".git"), below = root.appendingPathComponent("a/b")
        try FileManager.default.createDirectory(at: git.appendingPathComponent("refs/heads"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: below, withIntermediateDirectories: true)
        let loose = String(repeating: "a1", count: 20), packed = String(repeating: "b2", count: 20), detached = String(repeating: "c3", count: 20)
        try "ref: refs/heads/main\n".write(to: git.appendingPathComponent("HEAD"), atomically: true, encoding: .utf8)
        try "\(loose)\n".write(to: git.appendingPathComponent("refs/heads/main"), atomically: true, encoding: .utf8)
        XCTAssertEqual(checkedOutCommit(in: below), loose)
        try FileManager.default.removeItem(at: git.appendingPathComponent("refs/heads/main"))
        try "# pack-refs with: peeled\n\(packed) refs/heads/main\n".write(to: git.appendingPathComponent("packed-refs"), atomically: true, encoding: .utf8)
        XCTAssertEqual(checkedOutCommit(in: root), packed)
        try "\(detached)\n".write(to: git.appendingPathComponent("HEAD"), atomically: true, encoding: .utf8)
        XCTAssertEqual(checkedOutCommit(in: root), detached)
        let worktree = FileManager.default.temporaryDirectory.appendingPathComponent("worktree-\(UUID())")
        try FileManager.default.createDirectory(at: worktree, withIntermediateDirectories: true)
        try "gitdir: \(git.path)\n".write(to: worktree.appendingPathComponent(".git"), atomically: true, encoding: .utf8)
        XCTAssertEqual(checkedOutCommit(in: worktree), detached)
        XCTAssertNil(checkedOutCommit(in: URL(fileURLWithPath: "/")))
    }
}
