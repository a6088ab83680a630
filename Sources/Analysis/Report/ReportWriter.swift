import Foundation

/// Writes an analysis to a directory:
///
/// | file | content |
/// |---|---|
/// | `results.json` | `AnalysisResults` (stable keys, `schemaVersion`) |
/// | `summary.md` | tables per trial, aggregate across trials, warnings |
/// | `latency.csv` | `trial,app,sequence,request_time_s,reply_time_s,latency_ms,app_latency_ms` (wire latency, and the app's own where logged) |
/// | `throughput_100ms.csv`, `throughput_1s.csv` | `trial,kind,name,direction,time_s,bytes,bytes_per_second` |
/// | `plots/*.svg` | latency over time, latency CDF, throughput per app, throughput per interface |
/// | `report.html` | everything above on one page |
///
/// Times in CSVs are seconds since the trial's origin (its first captured packet).
///
/// An experiment run passes its verdict: it opens summary.md and report.html (the report is
/// written once, after the verdict, never patched).
public struct ReportWriter {
    public var renderer: any PlotRenderer

    public init(renderer: any PlotRenderer = PlotRenderers.best()) { self.renderer = renderer }

    /// Names of the files written, relative to `directory`.
    @discardableResult
    public func write(_ results: AnalysisResults, trials: [TrialAnalysis], to directory: String,
                      verdict: ReportVerdict? = nil) throws(AnalysisError) -> [String] {
        let fm = FileManager.default
        let plotsDir = (directory as NSString).appendingPathComponent("plots")
        do {
            try fm.createDirectory(atPath: plotsDir, withIntermediateDirectories: true)
        } catch {
            throw .output(path: directory, detail: "\(error)")
        }
        var written: [String] = []
        func put(_ name: String, _ text: String) throws(AnalysisError) {
            let path = (directory as NSString).appendingPathComponent(name)
            do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
                throw .output(path: path, detail: "\(error)")
            }
            written.append(name)
        }

        try put("results.json", Self.json(results))
        try put("latency.csv", Self.latencyCSV(trials))
        try put("throughput_100ms.csv", Self.throughputCSV(trials, factor: 1))
        try put("throughput_1s.csv", Self.throughputCSV(trials, factor: 10))

        var plots: [(trial: String, title: String, file: String)] = []
        var plotErrors: [String] = []
        for t in trials {
            let prefix = trials.count > 1 ? Self.safe(t.result.name) + "-" : ""
            let specs: [(String, PlotSpec)] = [
                ("latency_over_time", StandardPlots.latencyOverTime(t)),
                ("latency_cdf", StandardPlots.latencyCDF(t)),
                ("throughput_apps", StandardPlots.appThroughput(t)),
                ("throughput_interfaces", StandardPlots.interfaceThroughput(t)),
            ]
            for (name, spec) in specs {
                let file = "plots/\(prefix)\(name).svg"
                do {
                    try renderer.renderSVG(spec, to: (directory as NSString).appendingPathComponent(file))
                } catch {
                    // gnuplot failing must not lose the plot: fall back to the built-in writer.
                    plotErrors.append("\(file): \(renderer.name) failed (\(error)); used the built-in SVG writer")
                    do { try BuiltinSVGRenderer().renderSVG(spec, to: (directory as NSString).appendingPathComponent(file)) } catch {
                        throw .output(path: file, detail: "\(error)")
                    }
                }
                written.append(file)
                plots.append((t.result.name, spec.title, file))
            }
        }
        try put("summary.md", (verdict?.markdown ?? "") + Self.summary(results, notes: plotErrors))
        try put("report.html", Self.html(results, plots: plots, renderer: renderer.name, notes: plotErrors, verdict: verdict))
        return written
    }

    /// When there is no analysis to report (every trial failed or was left out): summary.md holds
    /// the verdict alone.
    public static func writeVerdictOnly(_ verdict: ReportVerdict, to directory: String) throws(AnalysisError) {
        let path = (directory as NSString).appendingPathComponent("summary.md")
        do { try verdict.markdown.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw .output(path: path, detail: "\(error)")
        }
    }

    /// Escapes text for HTML element content and attribute values (the report's one escaper).
    static func escapeHTML(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func safe(_ s: String) -> String {
        String(s.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    public static func json(_ results: AnalysisResults) throws(AnalysisError) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return String(decoding: try enc.encode(results), as: UTF8.self) + "\n" } catch {
            throw .output(path: "results.json", detail: "\(error)")
        }
    }

    static func latencyCSV(_ trials: [TrialAnalysis]) -> String {
        var s = "trial,app,sequence,request_time_s,reply_time_s,latency_ms,app_latency_ms\n"
        for t in trials {
            let o = t.result.originNanoseconds
            for l in t.latencies {
                s += "\(csv(t.result.name)),\(csv(l.app)),\(l.sequence),\(fmt(secondsBetween(o, l.requestNanoseconds), 9)),"
                s += "\(fmt(secondsBetween(o, l.replyNanoseconds), 9)),\(fmt(Double(l.latencyNanoseconds) / 1e6, 6)),"
                s += (l.appLatencyNanoseconds.map { fmt(Double($0) / 1e6, 6) } ?? "") + "\n"
            }
        }
        return s
    }

    static func throughputCSV(_ trials: [TrialAnalysis], factor: Int) -> String {
        var s = "trial,kind,name,direction,time_s,bytes,bytes_per_second\n"
        for t in trials {
            for series in t.series {
                let r = factor == 1 ? series : series.rebinned(by: factor)
                let w = Double(r.binWidthNanoseconds) / 1e9
                let head = "\(csv(t.result.name)),\(series.kind.rawValue),\(csv(series.name)),\(series.direction),"
                for (i, b) in r.bytesPerBin.enumerated() {
                    s += head + "\(fmt(Double(i) * w, 3)),\(b),\(fmt(Double(b) / w, 1))\n"
                }
            }
        }
        return s
    }

    static func csv(_ s: String) -> String {
        s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }

    static func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

    static func ms(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "–" }

    static func rate(_ bytesPerSecond: Double) -> String {
        if bytesPerSecond >= 1e6 { return String(format: "%.2f MB/s", bytesPerSecond / 1e6) }
        if bytesPerSecond >= 1e3 { return String(format: "%.1f kB/s", bytesPerSecond / 1e3) }
        return String(format: "%.0f B/s", bytesPerSecond)
    }

    static func ci(_ c: MeanWithCI?, _ f: (Double) -> String) -> String {
        guard let c else { return "–" }
        return c.formatted(f)
    }

    /// Table rows shared by the Markdown and HTML outputs.
    struct Table {
        var title: String
        var header: [String]
        var rows: [[String]]
    }

    static func tables(_ r: AnalysisResults) -> [Table] {
        var out: [Table] = []
        for t in r.trials {
            let name = r.trials.count > 1 ? " — \(t.name)" : ""
            out.append(Table(
                title: "Apps\(name)",
                header: ["app", "role", "variant", "requests", "replies", "unanswered (wire/app log)",
                         "app-perceived p50 ms", "app-perceived p95 ms", "wire p50 ms", "wire p95 ms", "wire p99 ms",
                         "queued in client", "BG chunks", "uplink (past the bottleneck: server side)", "downlink (client side)", "rate (trial window)"],
                rows: t.apps.map { a in
                    [a.name, a.role.rawValue, a.variant.rawValue,
                     a.fg.map { String($0.requests) } ?? "–", a.fg.map { String($0.replies) } ?? "–",
                     a.fg.map { "\($0.unanswered)/\($0.appUnanswered.map(String.init) ?? "–")" } ?? "–",
                     ms(a.fg?.appLatencyMs?.p50Ms), ms(a.fg?.appLatencyMs?.p95Ms),
                     ms(a.fg?.latencyMs?.p50Ms), ms(a.fg?.latencyMs?.p95Ms), ms(a.fg?.latencyMs?.p99Ms),
                     a.fg?.clientQueued.map { String($0.count) } ?? "–",
                     a.bg.map { "\($0.completeChunks)/\($0.chunks)" } ?? "–",
                     "\(a.throughput.uplinkBytes) B", "\(a.throughput.downlinkBytes) B", rate(a.throughput.totalBytesPerSecond)]
                }))
            let queued = t.apps.flatMap { a in (a.fg?.clientQueued ?? []).map { (a.name, $0) } }
            if !queued.isEmpty {
                out.append(Table(
                    title: "FG requests queued in the client\(name) (app-perceived − wire > max(10 ms, 10%))",
                    header: ["app", "request", "app-perceived ms", "wire ms", "difference ms"],
                    rows: queued.map { [$0.0, String($0.1.sequence), ms($0.1.appMs), ms($0.1.wireMs), ms($0.1.differenceMs)] }))
            }
            out.append(Table(
                title: "Interfaces\(name)",
                header: ["capture", "interface", "side", "packets", "TCP packets", "kernel drops", "uplink bytes", "downlink bytes",
                         "duplicate bytes seen here", "mean uplink (trial window; client side: offered to the link)", "mean downlink (trial window)"],
                rows: t.interfaces.enumerated().map { i, f in
                    let c = t.captures[i]
                    return [f.capture, f.interface, f.side, String(c.packets), String(c.tcpPackets),
                            c.kernelDropped.map { String($0) } ?? "n/a", String(f.uplinkBytes), String(f.downlinkBytes),
                            String(f.retransmittedBytes), rate(f.meanUplinkBytesPerSecond), rate(f.meanDownlinkBytesPerSecond)]
                }))
            out.append(Table(
                title: "Connections\(name)",
                header: ["id", "interface", "client", "server", "app", "protocol", "up bytes", "down bytes", "duplicate bytes seen here",
                         "holes (never captured)", "framing errors"],
                rows: t.connections.map { c in
                    [String(c.id), c.interface, c.client, c.server, c.app ?? "–", c.protocol.rawValue,
                     String(c.uplink.uniqueBytes), String(c.downlink.uniqueBytes),
                     String(c.uplink.retransmittedBytes + c.downlink.retransmittedBytes),
                     String(c.uplink.gaps + c.downlink.gaps), String(c.framingErrors)]
                }))
            let f = t.fairness
            out.append(Table(title: "Fairness (Jain's index (Σx)²/(n·Σx²) per role, over the window all apps of the role were active)\(name)",
                             header: ["measure", "index", "common window"],
                             rows: [["BG apps' rate ÷ demand (bulk senders: equal demand)", f.bgThroughputJain.map { String(format: "%.4f", $0) } ?? "–",
                                     f.bgWindowSeconds.map { String(format: "%.1f s", $0) } ?? "–"],
                                    ["FG apps' mean latency (app-perceived; wire without a log)", f.fgLatencyJain.map { String(format: "%.4f", $0) } ?? "–",
                                     f.fgWindowSeconds.map { String(format: "%.1f s", $0) } ?? "–"]]))
        }
        if r.trials.count > 1 {
            out.append(Table(
                title: "Per variant and app across trials (mean [95% CI]; intervals only with ≥ 2 trials: Student t, or a percentile bootstrap where t would go below 0)",
                header: ["experiment variant", "app", "role", "transport", "trials", "wire mean latency ms", "wire p50 ms", "wire p95 ms", "wire p99 ms", "rate"],
                rows: r.aggregate.apps.map { a in
                    [a.experimentVariant ?? "–", a.name, a.role.rawValue, a.variant.rawValue, String(a.trials),
                     ci(a.fgLatencyMeanMs) { String(format: "%.2f", $0) }, ci(a.fgLatencyP50Ms) { String(format: "%.2f", $0) },
                     ci(a.fgLatencyP95Ms) { String(format: "%.2f", $0) }, ci(a.fgLatencyP99Ms) { String(format: "%.2f", $0) },
                     ci(a.totalBytesPerSecond) { rate($0) }]
                }))
        }
        return out
    }

    /// What the numbers mean, at the top of every report.
    static let definitions = "Two FG latencies: app-perceived (the app's own log: request submitted to whole reply; includes time queued in the client) and wire (the request's first byte leaving the client to the reply's last byte arriving there). An app's bytes are the bytes that crossed the wire for it (IntNW DATA payload by the app id in the toy header; toy message bytes on plain TCP), booked when first captured past the link's bottleneck: uplink bytes in the server-side capture, downlink bytes in the client-side capture (a client-side interface's uplink is what was offered to the link, entering its queue); an unfinished message counts only what was sent. Every rate is bytes over the trial window (first to last captured packet), for apps and interfaces alike. \"Duplicate bytes seen here\" are payload bytes this capture point saw more than once (retransmissions that passed it; losses beyond it are not visible); \"holes\" are stream bytes the capture never saw."

    static func summary(_ r: AnalysisResults, notes: [String]) -> String {
        var s = "# IntNW Lab analysis\n\n"
        s += "Trials: \(r.trials.map(\.name).joined(separator: ", ")). " + Self.definitions + "\n\n"
        for t in tables(r) {
            s += "## \(t.title)\n\n| " + t.header.joined(separator: " | ") + " |\n|" + t.header.map { _ in "---" }.joined(separator: "|") + "|\n"
            for row in t.rows { s += "| " + row.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n" }
            s += "\n"
        }
        let checks = r.trials.map { t in
            "- \(t.name): accounting violations (apps > interface in a bin) \(t.accountingViolations); capacity violations (1 s bins above the trace's capacity + 1500 B + 10 ms of rate) "
                + (t.capacityViolations.map(String.init) ?? "not checked (no capacity schedule)") + "\n"
        }
        s += "## Checks\n\n" + checks.joined() + "\n"
        let w = r.warnings + notes
        if !w.isEmpty {
            s += "## Warnings\n\n" + w.map { "- \($0)\n" }.joined() + "\n"
        }
        return s
    }

    static func html(_ r: AnalysisResults, plots: [(trial: String, title: String, file: String)], renderer: String, notes: [String],
                     verdict: ReportVerdict? = nil) -> String {
        let e = escapeHTML
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>IntNW Lab analysis</title>
        <style>
        body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
        table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
        th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
        .warn{background:#fff4e0;border-left:4px solid #f0a000;padding:0.5em 1em}
        figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
        </style></head><body>\(verdict?.html ?? "")
        <h1>IntNW Lab analysis</h1>
        <p>Trials: \(e(r.trials.map(\.name).joined(separator: ", "))). \(e(Self.definitions)) Plots drawn with \(e(renderer)).
        Data: <a href="results.json">results.json</a>, <a href="summary.md">summary.md</a>, <a href="latency.csv">latency.csv</a>, <a href="throughput_100ms.csv">throughput_100ms.csv</a>, <a href="throughput_1s.csv">throughput_1s.csv</a>.</p>

        """
        let w = r.warnings + notes
        if !w.isEmpty {
            h += "<div class=\"warn\"><strong>Warnings</strong><ul>" + w.map { "<li>\(e($0))</li>" }.joined() + "</ul></div>\n"
        }
        h += "<h2>Plots</h2>\n"
        for p in plots {
            h += "<figure><img src=\"\(e(p.file))\" alt=\"\(e(p.title))\"><figcaption>\(e(r.trials.count > 1 ? p.trial + ": " : ""))\(e(p.title)) (<a href=\"\(e(p.file))\">SVG</a>)</figcaption></figure>\n"
        }
        for t in tables(r) {
            h += "<h2>\(e(t.title))</h2>\n<table><tr>" + t.header.map { "<th>\(e($0))</th>" }.joined() + "</tr>\n"
            for row in t.rows { h += "<tr>" + row.map { "<td>\(e($0))</td>" }.joined() + "</tr>\n" }
            h += "</table>\n"
        }
        h += "</body></html>\n"
        return h
    }
}

/// An experiment's verdict as the report shows it: at the top of summary.md and report.html.
public struct ReportVerdict: Sendable, Equatable {
    public var experiment: String
    public var expectation: String
    public var held: Bool
    public var lines: [String]
    /// Experiment-level plots, paths relative to the report directory.
    public var plots: [String]

    public init(experiment: String, expectation: String, held: Bool, lines: [String], plots: [String]) {
        self.experiment = experiment
        self.expectation = expectation
        self.held = held
        self.lines = lines
        self.plots = plots
    }

    var markdown: String {
        "## \(experiment): expectation \(held ? "HELD" : "NOT HELD")\n\n\(expectation)\n\n"
            + lines.map { "- \($0)" }.joined(separator: "\n") + "\n\n"
            + plots.map { "![\($0)](\($0))\n" }.joined() + (plots.isEmpty ? "" : "\n")
    }

    var html: String {
        let e = ReportWriter.escapeHTML
        return "<section><h2>\(e(experiment)): expectation \(held ? "held" : "NOT held")</h2><p>\(e(expectation))</p><ul>"
            + lines.map { "<li>\(e($0))</li>" }.joined() + "</ul>"
            + plots.map { "<figure><img src=\"\(e($0))\" alt=\"\(e($0))\"></figure>" }.joined() + "</section>"
    }
}
