import Foundation
import Testing
@testable import Analysis
import SyntheticTraffic

@Suite final class ReportTests {
    let dir = tempDir("report")
    /// INTNW_DEMO_DIR keeps a demo report for a human to look at.
    let keep = ProcessInfo.processInfo.environment["INTNW_DEMO_DIR"]
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func demoRun(_ name: String, seed: UInt64) throws -> String {
        var spec = SyntheticRunSpec()
        spec.durationSeconds = 12
        spec.fgApps = 2
        spec.bgApps = 2
        spec.bgBytesPerSecond = 400_000
        spec.seed = seed
        spec.mixIntNW = true
        let run = (keep ?? dir) + "/" + name
        try SyntheticRun.write(spec, to: run)
        return run
    }

    static var renderers: [any PlotRenderer] {
        var r: [any PlotRenderer] = [BuiltinSVGRenderer()]
        if let g = GnuplotRenderer.detect() { r.append(g) }
        return r
    }

    @Test func fullReportWithEveryRenderer() throws {
        let runs = [try demoRun("trial1", seed: 1), try demoRun("trial2", seed: 2), try demoRun("trial3", seed: 3)]
        let (results, trials) = try Analyzer.analyze(trials: runs.map { try TrialInput.runDirectory($0) })
        #expect(results.trials.count == 3)
        for t in results.trials {
            #expect(Set(t.apps.map(\.name)) == ["fg1", "fg2", "bg1", "bg2"])
            #expect(t.apps.first { $0.name == "fg1" }?.fg?.unanswered ?? 99 <= 1)
            #expect(t.connections.allSatisfy { $0.framingErrors == 0 && $0.uplink.gaps == 0 })
            // fg2 and bg2 are the IntNW apps: decoded from IROBs, with their labels.
            #expect(t.connections.filter { $0.protocol == .intnw }.compactMap(\.app).sorted() == ["bg2", "fg2"])
            #expect(t.connections.filter { $0.protocol == .toy }.compactMap(\.app).sorted() == ["bg1", "fg1"])
            let fg2 = try #require(t.apps.first { $0.name == "fg2" })
            #expect(fg2.variant == .intnw && fg2.labeledForeground == 2 * (fg2.fg?.requests ?? 0) && fg2.labelMismatches == 0)
            #expect(t.apps.first { $0.name == "bg2" }.map { $0.labeledBackground > 0 && ($0.bg?.completeChunks ?? 0) > 0 } == true)
            #expect(t.intnwConnections == 2)
        }
        let agg = try #require(results.aggregate.apps.first { $0.name == "fg1" })
        #expect(agg.trials == 3 && agg.fgLatencyMeanMs?.halfWidth != nil)
        #expect(results.aggregate.bgThroughputJain?.n == 3)

        for r in Self.renderers {
            let out = (keep ?? dir) + "/analysis-\(r.name)"
            let files = try ReportWriter(renderer: r).write(results, trials: trials, to: out)
            if keep != nil, let g = r as? GnuplotRenderer {
                // PNG previews for a human check.
                try g.renderPNG(StandardPlots.latencyOverTime(trials[0]), to: out + "/latency_over_time.png")
                try g.renderPNG(StandardPlots.latencyCDF(trials[0]), to: out + "/latency_cdf.png")
                try g.renderPNG(StandardPlots.appThroughput(trials[0]), to: out + "/throughput_apps.png")
                try g.renderPNG(StandardPlots.interfaceThroughput(trials[0]), to: out + "/throughput_interfaces.png")
            }
            for f in ["results.json", "summary.md", "latency.csv", "throughput_100ms.csv", "throughput_1s.csv", "report.html"] {
                #expect(files.contains(f))
            }
            let svgs = files.filter { $0.hasSuffix(".svg") }
            #expect(svgs.count == 12)
            for s in svgs {
                let text = try String(contentsOfFile: out + "/" + s, encoding: .utf8)
                #expect(text.contains("<svg"), "\(s) is not SVG")
                #expect(text.contains("(s)") || text.contains("(ms)"), "\(s) lacks axis units")
            }
            let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
            for s in svgs { #expect(html.contains("src=\"\(s)\"")) }
            let latency = try String(contentsOfFile: out + "/latency.csv", encoding: .utf8).split(separator: "\n")
            #expect(latency.first == "trial,app,sequence,request_time_s,reply_time_s,latency_ms,app_latency_ms")
            #expect(latency.count == 1 + trials.map(\.latencies.count).reduce(0, +))
        }
    }

    @Test func gnuplotLabelsAreDataNotProgramText() throws {
        let evil = "a'\nsystem \"touch \(dir)/PWNED\"\n#`touch \(dir)/BT` @x \u{2028}EOD"
        let spec = PlotSpec(title: evil, xLabel: "time (s) " + evil, yLabel: evil,
                            series: [PlotSeries(name: evil, x: [0, 1], y: [1, 2]), PlotSeries(name: "EOD", x: [0], y: [3])])
        let g = GnuplotRenderer(executable: "/usr/bin/gnuplot")
        let script = g.script(spec, terminal: "svg", output: dir + "/o'\n!touch \(dir)/OUT\n.svg")
        let lines = script.split(separator: "\n", omittingEmptySubsequences: false)
        // The text block comes first: one line per label, each prefixed, none of them "EOD".
        #expect(lines.first == "$T << EOD")
        let end = try #require(lines.firstIndex(of: "EOD"))
        #expect(end == 7, "output + title + 2 axis labels + 2 series names, then EOD")
        #expect(lines[1 ..< end].allSatisfy { $0.hasPrefix("L") })
        // After it, the program holds no caller text at all.
        let program = lines[(end + 1)...].joined(separator: "\n")
        for needle in ["system", "touch", "PWNED", "OUT", "`", "@x"] { #expect(!program.contains(needle), "\(needle) in program text") }
        #expect(program.contains("set title $T[2][2:] noenhanced"))
        // Rendering it really runs no command and draws the label.
        if let real = GnuplotRenderer.detect() {
            let out = dir + "/evil.svg"
            try real.renderSVG(spec, to: out)
            for f in ["PWNED", "BT", "OUT"] { #expect(!FileManager.default.fileExists(atPath: dir + "/" + f)) }
            #expect(try String(contentsOfFile: out, encoding: .utf8).contains("touch"))
        }
    }

    @Test func resultsJSONHasStableKeys() throws {
        let run = try demoRun("keys", seed: 9)
        let (results, _) = try Analyzer.analyze(trials: [try TrialInput.runDirectory(run)])
        let json = try ReportWriter.json(results)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(Set(obj.keys) == ["schemaVersion", "generator", "trials", "aggregate", "warnings"])
        #expect(obj["schemaVersion"] as? Int == 2)
        let trial = try #require((obj["trials"] as? [[String: Any]])?.first)
        #expect(Set(trial.keys) == ["name", "originNanoseconds", "durationSeconds", "captures", "connections", "apps",
                                    "interfaces", "fairness", "intnwConnections", "toyConnections", "accountingViolations"])
        let app = try #require((trial["apps"] as? [[String: Any]])?.first { $0["name"] as? String == "fg1" })
        for k in ["name", "role", "variant", "appId", "connections", "messages", "labelMismatches", "fg", "throughput"] {
            #expect(app[k] != nil, "app lacks \(k)")
        }
        let lat = try #require((app["fg"] as? [String: Any])?["latencyMs"] as? [String: Any])
        #expect(Set(lat.keys) == ["count", "meanMs", "stddevMs", "minMs", "p50Ms", "p95Ms", "p99Ms", "maxMs"])
        let tp = try #require(app["throughput"] as? [String: Any])
        #expect(Set(tp.keys) == ["uplinkBytes", "downlinkBytes", "activeSeconds", "windowSeconds", "uplinkBytesPerSecond", "downlinkBytesPerSecond",
                                 "totalBytesPerSecond"])
        let cap = try #require((trial["captures"] as? [[String: Any]])?.first)
        for k in ["file", "interface", "side", "linkType", "packets", "tcpPackets", "skippedMalformed"] { #expect(cap[k] != nil, "capture lacks \(k)") }
        // Decodes back into the same types.
        let back = try JSONDecoder().decode(AnalysisResults.self, from: Data(json.utf8))
        #expect(back.trials.first?.apps.count == results.trials.first?.apps.count)
    }

    /// The gnuplot case used to fall back to the built-in renderer silently when gnuplot was missing.
    /// Catches: a missing gnuplot under CI (CI=true or INTNW_REQUIRE_NETNS=1) and a "gnuplot" plot
    /// that gnuplot did not draw.
    @Test(arguments: [true, false])
    func metricVsAppsPlot(builtin: Bool) throws {
        var renderer: any PlotRenderer = BuiltinSVGRenderer()
        if !builtin {
            if let g = GnuplotRenderer.detect() {
                renderer = g
            } else if ToolGate.ci {
                Issue.record("gnuplot is not installed (make setup installs it)")
                return
            } else {
                print("gnuplot not installed: its case is skipped (CI=true makes this a failure)")
                return
            }
        }
        var plain: [(apps: Int, value: MeanWithCI)] = []
        var intnw: [(apps: Int, value: MeanWithCI)] = []
        for n in 1 ... 4 {
            let x = Double(n)
            plain.append((n, Statistics.meanWithCI([50 * x, 55 * x, 45 * x])!))
            intnw.append((n, Statistics.meanWithCI([40 * x])!))
        }
        let path = (keep ?? dir) + "/fairness-\(renderer.name).svg"
        try StandardPlots.renderMetricVsApps(title: "FG latency vs number of apps", yLabel: "mean FG latency (ms)",
                                             series: [("plain TCP", plain), ("IntNW", intnw)], to: path, renderer: renderer)
        let svg = try String(contentsOfFile: path, encoding: .utf8)
        #expect(svg.contains("number of apps") && svg.contains("plain TCP") && svg.contains("IntNW"))
        // gnuplot's SVG terminal names itself; the built-in renderer does not.
        #expect(svg.contains("Gnuplot") == !builtin, "renderer \(renderer.name) produced the wrong kind of SVG")
    }

    @Test func builtinSVGHasAxesLegendAndNoData() {
        let spec = PlotSpec(title: "t", xLabel: "time (s)", yLabel: "rate (kB/s)",
                            series: [PlotSeries(name: "a<b", x: [0, 1, 2], y: [1, 3, 2], style: .steps)])
        let svg = BuiltinSVGRenderer().svg(spec)
        #expect(svg.contains("time (s)") && svg.contains("rate (kB/s)") && svg.contains("a&lt;b"))
        let empty = BuiltinSVGRenderer().svg(PlotSpec(title: "t", xLabel: "x", yLabel: "y", series: []))
        #expect(empty.contains("no data"))
        #expect(niceTicks(0, 97) == [0, 20, 40, 60, 80])
        #expect(niceTicks(0.5, 4.5, integer: true) == [1, 2, 3, 4])
    }
}
