import Foundation
import Images

/// One self-contained HTML page for one or more runs: an SVG line chart per metric (runs overlaid,
/// with a legend), reward against √KL, the KL to the reference by sampling step, sample grids by
/// epoch as embedded PNGs with their prompts, and the events. No scripts and no network: it opens
/// anywhere, and can be mailed.
public enum RunReport {
    /// A run to report, with the name it goes by in legends.
    public struct Run {
        public var name: String
        public var reader: RunLogReader
        public init(name: String, reader: RunLogReader) { self.name = name; self.reader = reader }
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]

    /// A result the caller adds after the summary: a table (first row the header) and images with
    /// captions, e.g. a model before and after fine-tuning on the same seeds.
    public struct Section {
        public var title: String
        public var table: [[String]]
        public var images: [(caption: String, image: RGBImage)]
        /// Line charts drawn under the table (a study's gain against √KL, say).
        public var charts: [Chart]
        /// A paragraph under the title (what the table shows, a finding).
        public var note: String
        public init(title: String, note: String = "", table: [[String]] = [], images: [(caption: String, image: RGBImage)] = [],
                    charts: [Chart] = []) {
            self.title = title
            self.note = note
            self.table = table
            self.images = images
            self.charts = charts
        }
    }

    /// A line chart of a section: one line per label, points (x, y) in order (non-finite ones skipped).
    public struct Chart {
        public var title: String
        public var xLabel: String
        public var lines: [(label: String, points: [(Double, Double)])]
        public init(title: String, xLabel: String, lines: [(label: String, points: [(Double, Double)])]) {
            self.title = title
            self.xLabel = xLabel
            self.lines = lines
        }
    }

    /// The HTML page.
    public static func html(_ runs: [Run], maxImageEpochs: Int = 8, sections: [Section] = []) throws -> String {
        // Metrics: the union of the runs' declarations, in first-seen order.
        var specs: [MetricSpec] = []
        for run in runs { for spec in run.reader.metricSpecs where !specs.contains(where: { $0.name == spec.name }) { specs.append(spec) } }
        let names = specs.map(\.name)
        var body = "<h1>DiffusionRL report</h1>\n" + (try summary(runs, specs: specs))
        for section in sections {
            body += "<h2>\(escape(section.title))</h2>\n"
            if !section.note.isEmpty { body += "<p>\(escape(section.note))</p>\n" }
            if let header = section.table.first {
                body += "<table class=results><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>\n"
                for row in section.table.dropFirst() { body += "<tr>" + row.map { "<td>\(escape($0))</td>" }.joined() + "</tr>\n" }
                body += "</table>\n"
            }
            if !section.charts.isEmpty {
                body += "<div class=charts>\n"
                for chart in section.charts {
                    body += lineChart(title: chart.title, xLabel: chart.xLabel, series: chart.lines.enumerated().map {
                        Series(label: $1.label, color: color($0), points: $1.points)
                    }) + "\n"
                }
                body += "</div>\n"
            }
            if !section.images.isEmpty {
                body += "<div class=grid>\n"
                for (caption, image) in section.images {
                    body += "<figure class=wide><img class=wide alt='\(escape(caption))' src='data:image/png;base64,\(PNG.encode(image).base64EncodedString())'>"
                        + "<figcaption>\(escape(caption))</figcaption></figure>\n"
                }
                body += "</div>\n"
            }
        }
        // Per-step KL is one chart per run below, not a chart per step; the curves that matter come
        // first (rewards smoothed with a band, gold, KL, evaluations), the rest folded at the end.
        // A metric no run has a finite value of (an evaluation that never ran) gets no empty chart.
        let logged = try specs.filter { spec in
            try runs.contains { run in
                guard run.reader.metricNames.contains(spec.name) else { return false }
                return try run.reader.metric(spec.name).contains { $0.isFinite }
            }
        }
        let unlogged = specs.filter { !logged.contains($0) }.map(\.name)
        let stepKL = logged.filter { $0.kind == .klStep && $0.step != nil }
        let key = logged.filter { [.reward, .proxy, .gold, .kl, .evaluation].contains($0.kind) }
        func chart(_ spec: MetricSpec) throws -> String {
            let smoothed = [.reward, .proxy, .gold].contains(spec.kind)
            let series = try runs.enumerated().compactMap { index, run -> Series? in
                guard run.reader.metricNames.contains(spec.name) else { return nil }
                var values = try run.reader.metric(spec.name).enumerated().map { (Double($0.offset), $0.element) }
                // Evaluations and KL are logged every few epochs: join their points instead of leaving dots.
                if spec.kind == .evaluation || spec.kind == .kl { values = values.filter { $0.1.isFinite } }
                return Series(label: run.name, color: color(index), points: values, smoothed: smoothed)
            }
            return lineChart(title: spec.name + (smoothed ? " (thin: per epoch; thick: mean of 5; band: ± their s.d.)" : ""),
                             xLabel: "epoch", integerX: true, series: series)
        }
        body += "<h2>Curves</h2>\n<div class=charts>\n"
        for spec in key { body += try chart(spec) + "\n" }
        body += "</div>\n"
        // Reward against √KL, for every reward-like metric when the run logs a KL.
        if let klName = logged.first(where: { $0.kind == .kl })?.name {
            let rewards = logged.filter { [.reward, .proxy, .gold].contains($0.kind) }.map(\.name)
            if !rewards.isEmpty {
                body += "<h2>Reward against √KL</h2>\n<div class=charts>\n"
                for reward in rewards {
                    let series = try runs.enumerated().compactMap { index, run -> Series? in
                        guard run.reader.metricNames.contains(reward), run.reader.metricNames.contains(klName) else { return nil }
                        let kl = try run.reader.metric(klName), r = try run.reader.metric(reward)
                        return Series(label: run.name, color: color(index),
                                      points: zip(kl, r).map { ($0.0 >= 0 ? $0.0.squareRoot() : .nan, $0.1) }, scatter: true)
                    }
                    body += lineChart(title: "\(reward) vs √\(klName)", xLabel: "√\(klName)", series: series) + "\n"
                }
                body += "</div>\n"
            }
        }
        if !stepKL.isEmpty {
            body += "<h2>KL to the reference by sampling step</h2>\n<div class=charts>\n"
            for run in runs {
                let steps = stepKL.filter { run.reader.metricNames.contains($0.name) }
                guard !steps.isEmpty else { continue }
                let byStep = try steps.map { try run.reader.metric($0.name) }
                let measured = (0..<byStep[0].count).filter { epoch in byStep.allSatisfy { epoch < $0.count && $0[epoch].isFinite } }
                let series = pickEvenly(measured, count: 4).enumerated().map { index, epoch in
                    Series(label: "epoch \(epoch)", color: color(index),
                           points: steps.indices.map { (Double(steps[$0].step!), byStep[$0][epoch]) })
                }
                body += lineChart(title: "KL by sampling step — \(run.name)", xLabel: "sampling step", integerX: true, series: series) + "\n"
            }
            body += "</div>\n"
        }
        // A learned proxy reward against the gold judge's score of the same samples, epoch by epoch:
        // points moving up and to the right agree; points moving right only are overoptimization.
        let proxies = logged.filter { $0.kind == .proxy && $0.gold.map(names.contains) == true }
        if !proxies.isEmpty {
            body += "<h2>Proxy reward against gold</h2>\n<div class=charts>\n"
            for spec in proxies {
                let proxy = spec.name, goldName = spec.gold!
                let series = try runs.enumerated().compactMap { index, run -> Series? in
                    guard run.reader.metricNames.contains(proxy), run.reader.metricNames.contains(goldName) else { return nil }
                    return Series(label: run.name, color: color(index),
                                  points: Array(zip(try run.reader.metric(proxy), try run.reader.metric(goldName))), scatter: true)
                }
                body += lineChart(title: "\(goldName) vs \(proxy) (one point per epoch)", xLabel: proxy, series: series) + "\n"
            }
            body += "</div>\n"
        }
        for run in runs {
            let images = try run.reader.images()
            guard !images.isEmpty else { continue }
            let prompts = try run.reader.prompts()
            body += "<h2>Samples — \(escape(run.name))</h2>\n"
            let epochs = Array(Set(images.map(\.epoch))).sorted()
            let shown = pickEvenly(epochs, count: maxImageEpochs)
            for epoch in shown {
                body += "<section class=epoch><h3>epoch \(epoch)</h3>\n<div class=grid>\n"
                for item in images where item.epoch == epoch {
                    let caption = item.prompt >= 0 && item.prompt < prompts.count ? prompts[item.prompt] : "prompt \(item.prompt)"
                    body += "<figure><img alt='\(escape(caption))' src='data:image/png;base64,\(PNG.encode(item.image).base64EncodedString())'>"
                        + "<figcaption>\(escape(caption))</figcaption></figure>\n"
                }
                body += "</div></section>\n"
            }
        }
        body += "<h2>Events</h2>\n"
        var anyEvent = false
        for run in runs {
            let events = try run.reader.events()
            guard !events.isEmpty else { continue }
            anyEvent = true
            body += "<h3>\(escape(run.name))</h3>\n<table class=events><tr><th>epoch</th><th>kind</th><th>message</th></tr>\n"
            for e in events { body += "<tr><td>\(e.epoch)</td><td>\(escape(e.kind))</td><td>\(escape(e.message))</td></tr>\n" }
            body += "</table>\n"
        }
        if !anyEvent { body += "<p>No events.</p>\n" }
        let rest = logged.filter { spec in !key.contains(spec) && !stepKL.contains(spec) }
        if !rest.isEmpty {
            body += "<details><summary>All other metrics (\(rest.count))</summary>\n<div class=charts>\n"
            for spec in rest { body += try chart(spec) + "\n" }
            body += "</div></details>\n"
        }
        if !unlogged.isEmpty { body += "<p>Declared but never given a finite value: \(escape(unlogged.joined(separator: ", ")))</p>\n" }
        body += try identity(runs)
        return """
        <!doctype html>
        <html lang=en><head><meta charset=utf-8><title>DiffusionRL report</title>
        <style>
        details { margin-top: 24px; } summary { font-size: 16px; font-weight: 600; cursor: pointer; }
        table.summary td { vertical-align: top; }
        body { font: 14px/1.4 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
        h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 14px; margin: 12px 0 4px; }
        table { border-collapse: collapse; } td, th { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }
        .charts { display: flex; flex-wrap: wrap; gap: 12px; }
        .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
        .grid { display: flex; flex-wrap: wrap; gap: 8px; }
        section.epoch { display: inline-block; vertical-align: top; margin: 0 18px 8px 0; max-width: 460px; }
        figure { margin: 0; width: 104px; } figcaption { font-size: 11px; color: #555; }
        img { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid #ccc; }
        figure.wide { width: auto; } img.wide { width: auto; height: auto; max-width: 560px; }
        table.results td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
        svg text { font-size: 11px; fill: #333; }
        </style></head><body>
        \(body)</body></html>
        """
    }

    struct Series {
        var label: String
        var color: String
        var points: [(Double, Double)]
        var scatter = false
        /// Drawn thin, under its centered moving mean over 5 points (thick) and a ± s.d. band.
        var smoothed = false
    }

    /// What ran, first: per run its epochs, minutes, the training reward at the start and the end
    /// (means of the first and last 5 epochs), each evaluation's first and last value, the last KL,
    /// and its guard, stop and skip events.
    static func summary(_ runs: [Run], specs: [MetricSpec]) throws -> String {
        var html = "<table class=summary><tr><th>run</th><th>epochs</th><th>minutes</th><th>reward: start → end</th>"
            + "<th>evaluations: first → last</th><th>KL, last</th><th>events</th></tr>\n"
        for (index, run) in runs.enumerated() {
            let reader = run.reader
            func finite(_ name: String) throws -> [Double] { reader.metricNames.contains(name) ? try reader.metric(name).filter(\.isFinite) : [] }
            let declared = reader.metricSpecs
            let seconds = try declared.first { $0.kind == .duration }.map { try finite($0.name).reduce(0, +) }
            let rewardName = declared.first { $0.kind == .reward }?.name
            let reward = try rewardName.map { try finite($0) } ?? []
            func mean(_ v: ArraySlice<Double>) -> Double { v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count) }
            var evaluations: [String] = []
            for spec in declared where spec.kind == .evaluation {
                let values = try finite(spec.name)
                guard let first = values.first, let last = values.last else { continue }
                evaluations.append("\(escape(spec.name)) \(short(first)) → \(short(last))")
            }
            let kl = try declared.first { $0.kind == .kl }.map { try finite($0.name).last } ?? nil
            let events = try reader.events()
            var counts: [String] = []
            for kind in ["guard", "stopped", "skipped"] {
                let n = events.filter { $0.kind == kind }.count
                if n > 0 { counts.append("\(n) \(kind)") }
            }
            html += "<tr><td><span class=swatch style='background:\(color(index))'></span>\(escape(run.name))</td><td>\(try reader.epochs())</td>"
                + "<td>\(seconds.map { String(format: "%.1f", $0 / 60) } ?? "–")</td>"
                + "<td>\(rewardName.map { "\(escape($0)) \(short(mean(reward.prefix(5)))) → \(short(mean(reward.suffix(5))))" } ?? "–")</td>"
                + "<td>\(evaluations.isEmpty ? "–" : evaluations.joined(separator: "<br>"))</td><td>\(kl.map(short) ?? "–")</td>"
                + "<td>\(counts.isEmpty ? "–" : counts.joined(separator: ", "))</td></tr>\n"
        }
        return html + "</table>\n"
    }

    /// The runs' identity (file, commit, seed, start), at the foot of the page.
    static func identity(_ runs: [Run]) throws -> String {
        var html = "<h2>Runs</h2>\n<table class=runs><tr><th>run</th><th>file</th><th>epochs</th><th>commit</th><th>seed</th><th>started</th></tr>\n"
        for (index, run) in runs.enumerated() {
            let a = run.reader.attributes
            html += "<tr><td><span class=swatch style='background:\(color(index))'></span>\(escape(run.name))</td><td>\(escape(run.reader.url.lastPathComponent))</td>"
                + "<td>\(try run.reader.epochs())</td><td>\(escape(String((a["git_commit"] ?? "").prefix(10))))</td>"
                + "<td>\(escape(a["seed"] ?? ""))</td><td>\(escape(a["start_time"] ?? ""))</td></tr>\n"
        }
        return html + "</table>\n"
    }

    /// The centered moving mean and standard deviation over `radius` points each side (finite points only).
    static func movingMean(_ points: [(Double, Double)], radius: Int = 2) -> [(x: Double, mean: Double, sd: Double)] {
        let finite = points.filter { $0.0.isFinite && $0.1.isFinite }
        return finite.indices.map { i in
            let window = finite[max(0, i - radius)...min(finite.count - 1, i + radius)].map(\.1)
            let mean = window.reduce(0, +) / Double(window.count)
            let variance = window.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(window.count)
            return (finite[i].0, mean, variance.squareRoot())
        }
    }

    /// Ticks at round numbers (1, 2 or 5 × 10ᵏ apart) covering [low, high], with the decimals
    /// they need, so that neighbouring labels never read the same.
    static func ticks(_ low: Double, _ high: Double, count: Int = 5) -> [(value: Double, label: String)] {
        // At most `count` intervals, at the finest round step that allows it.
        let raw = (high - low) / Double(max(count - 1, 1))
        guard raw > 0, raw.isFinite else { return [(low, short(low))] }
        let magnitude = pow(10, (log10(raw)).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { (high - low) / $0 <= Double(count) + 1e-9 } ?? 10 * magnitude
        let decimals = max(0, -Int((log10(step)).rounded(.down)))
        var values: [Double] = []
        var v = (low / step).rounded(.up) * step
        while v <= high + step * 1e-9 { values.append(v); v += step }
        return values.map { value in
            let magnitudeOK = Swift.abs(value) < 1e5 && decimals <= 6
            return (value, magnitudeOK ? String(format: "%.\(decimals)f", value == 0 ? 0 : value) : String(format: "%.2e", value))
        }
    }

    static func color(_ index: Int) -> String { palette[index % palette.count] }

    /// An SVG chart of one or more series; non-finite points break lines and are skipped. With
    /// `integerX` the x ticks are whole numbers (epochs, steps).
    static func lineChart(title: String, xLabel: String, integerX: Bool = false, series: [Series]) -> String {
        let (width, height) = (460.0, 250.0), (left, right, top, bottom) = (56.0, 12.0, 26.0, 36.0)
        let finite = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite }
        var svg = "<svg xmlns='http://www.w3.org/2000/svg' width='\(Int(width))' height='\(Int(height))' role='img' aria-label='\(escape(title))'>"
        svg += "<rect width='100%' height='100%' fill='white' stroke='#ccc'/>"
        svg += "<text x='\(left)' y='16' style='font-weight:600'>\(escape(title))</text>"
        guard !finite.isEmpty else { return svg + "<text x='\(left)' y='\(height / 2)'>no finite values</text></svg>" }
        var (x0, x1) = (finite.map(\.0).min()!, finite.map(\.0).max()!)
        var (y0, y1) = (finite.map(\.1).min()!, finite.map(\.1).max()!)
        if x1 == x0 { x0 -= 0.5; x1 += 0.5 }
        if y1 == y0 { y0 -= 0.5; y1 += 0.5 }
        let nonNegative = finite.allSatisfy { $0.1 >= 0 }
        let pad = (y1 - y0) * 0.05
        y0 -= pad; y1 += pad
        // A quantity that cannot be negative (a KL, a rate) gets no negative axis.
        if nonNegative { y0 = Swift.max(y0, 0) }
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (width - left - right) }
        func py(_ y: Double) -> Double { height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom) }
        for tick in ticks(y0, y1) {
            let y = py(tick.value)
            svg += "<line x1='\(left)' x2='\(width - right)' y1='\(f(y))' y2='\(f(y))' stroke='#eee'/>"
            svg += "<text x='\(left - 4)' y='\(f(y + 4))' text-anchor='end'>\(tick.label)</text>"
        }
        for tick in ticks(x0, x1) where !integerX || tick.value == tick.value.rounded() {
            svg += "<text x='\(f(px(tick.value)))' y='\(height - bottom + 14)' text-anchor='middle'>\(tick.label)</text>"
        }
        svg += "<text x='\(f((left + width - right) / 2))' y='\(height - 6)' text-anchor='middle'>\(escape(xLabel))</text>"
        for s in series {
            if s.scatter {
                for (x, y) in s.points where x.isFinite && y.isFinite {
                    svg += "<circle cx='\(f(px(x)))' cy='\(f(py(y)))' r='2.5' fill='\(s.color)' fill-opacity='0.8'/>"
                }
            } else if s.smoothed {
                let smooth = movingMean(s.points)
                if smooth.count > 1 {
                    let upper = smooth.map { "\(f(px($0.x))),\(f(py($0.mean + $0.sd)))" }
                    let lower = smooth.reversed().map { "\(f(px($0.x))),\(f(py($0.mean - $0.sd)))" }
                    svg += "<polygon fill='\(s.color)' fill-opacity='0.15' stroke='none' points='\((upper + lower).joined(separator: " "))'/>"
                    svg += "<polyline fill='none' stroke='\(s.color)' stroke-width='0.8' stroke-opacity='0.6' points='"
                        + s.points.filter { $0.0.isFinite && $0.1.isFinite }.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ") + "'/>"
                    svg += "<polyline fill='none' stroke='\(s.color)' stroke-width='2.2' points='"
                        + smooth.map { "\(f(px($0.x))),\(f(py($0.mean)))" }.joined(separator: " ") + "'/>"
                } else if let point = smooth.first {
                    svg += "<circle cx='\(f(px(point.x)))' cy='\(f(py(point.mean)))' r='2' fill='\(s.color)'/>"
                }
            } else {
                var segment: [String] = []
                func emit() {
                    if segment.count == 1 { svg += "<circle cx='\(segment[0].split(separator: ",")[0])' cy='\(segment[0].split(separator: ",")[1])' r='2' fill='\(s.color)'/>" }
                    if segment.count > 1 { svg += "<polyline fill='none' stroke='\(s.color)' stroke-width='1.6' points='\(segment.joined(separator: " "))'/>" }
                    segment = []
                }
                for (x, y) in s.points { if x.isFinite && y.isFinite { segment.append("\(f(px(x))),\(f(py(y)))") } else { emit() } }
                emit()
            }
        }
        if series.count > 1 || series.first?.label.isEmpty == false {
            for (i, s) in series.enumerated() {
                let y = top + 4 + Double(i) * 14
                svg += "<rect x='\(width - right - 120)' y='\(f(y))' width='10' height='10' fill='\(s.color)'/>"
                svg += "<text x='\(width - right - 105)' y='\(f(y + 9))'>\(escape(String(s.label.prefix(18))))</text>"
            }
        }
        return svg + "</svg>"
    }

    static func pickEvenly(_ values: [Int], count: Int) -> [Int] {
        guard values.count > count, count > 1 else { return values }
        return (0..<count).map { values[$0 * (values.count - 1) / (count - 1)] }
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func short(_ v: Double) -> String {
        let magnitude = Swift.abs(v)
        if magnitude != 0 && (magnitude < 1e-3 || magnitude >= 1e5) { return String(format: "%.1e", v) }
        return String(format: "%.3g", v)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&#39;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
