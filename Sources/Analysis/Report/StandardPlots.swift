import Foundation

/// The plots every analysis produces, and the "metric vs number of apps" plot the fairness
/// experiment draws across runs.
public enum StandardPlots {
    /// FG latency of each request against the time it was sent: as the app felt it (its log,
    /// submit to reply) where logged, and on the wire, as separate series.
    public static func latencyOverTime(_ t: TrialAnalysis) -> PlotSpec {
        let origin = t.result.originNanoseconds
        var series: [PlotSeries] = []
        var appOrder: [String] = []
        var byApp: [String: [AppLatencySample]] = [:]
        for s in t.appLatencies where s.receiveNanoseconds != nil {
            if byApp[s.app] == nil { appOrder.append(s.app) }
            byApp[s.app, default: []].append(s)
        }
        for app in appOrder {
            let xs = byApp[app]!
            series.append(PlotSeries(name: "\(app) (app-perceived)", x: xs.map { secondsBetween(origin, $0.sendNanoseconds) },
                                     y: xs.map { Double($0.latencyNanoseconds!) / 1e6 }, style: .points))
        }
        series += groupByApp(t.latencies).map { app, samples in
            PlotSeries(name: "\(app) (wire)", x: samples.map { secondsBetween(origin, $0.requestNanoseconds) },
                       y: samples.map { Double($0.latencyNanoseconds) / 1e6 }, style: .points)
        }
        var spec = PlotSpec(title: "FG request latency over time (app-perceived and wire)", xLabel: "time since capture start (s)",
                            yLabel: "request latency (ms)", series: series)
        spec.xRange = 0 ... max(t.result.durationSeconds, series.flatMap(\.x).max() ?? 0, 1)
        return spec
    }

    /// Cumulative distribution of FG latency per app, on the wire.
    public static func latencyCDF(_ t: TrialAnalysis) -> PlotSpec {
        let series = groupByApp(t.latencies).map { app, samples in
            let sorted = samples.map { Double($0.latencyNanoseconds) / 1e6 }.sorted()
            let n = Double(sorted.count)
            // Step CDF: each sample raises the fraction by 1/n.
            var x: [Double] = [sorted.first ?? 0], y: [Double] = [0]
            for (i, v) in sorted.enumerated() { x.append(v); y.append(Double(i + 1) / n) }
            return PlotSeries(name: app, x: x, y: y, style: .steps)
        }
        var spec = PlotSpec(title: "FG request latency CDF (wire)", xLabel: "request latency on the wire (ms)",
                            yLabel: "fraction of requests", series: series)
        spec.yRange = 0 ... 1.02
        return spec
    }

    /// Throughput per app and direction in 1-second bins (directions with under 1% of the app's
    /// bytes are left out so the plot stays readable).
    public static func appThroughput(_ t: TrialAnalysis, binFactor: Int = 10) -> PlotSpec {
        throughput(t.series.filter { $0.kind == .app }, title: "Throughput per app (\(binLabel(t, binFactor)) bins)", binFactor: binFactor)
    }

    /// Throughput per captured interface and direction (all payload bytes, retransmissions included).
    public static func interfaceThroughput(_ t: TrialAnalysis, binFactor: Int = 10) -> PlotSpec {
        throughput(t.series.filter { $0.kind == .interface }, title: "Throughput per interface (\(binLabel(t, binFactor)) bins)", binFactor: binFactor)
    }

    /// One point per run size: a metric (mean with 95% CI error bars) against the number of apps.
    /// - Parameter series: e.g. ["plain TCP": [(1, ci), (2, ci)], "IntNW": ...].
    public static func metricVsApps(title: String, yLabel: String,
                                    series: [(name: String, points: [(apps: Int, value: MeanWithCI)])]) -> PlotSpec {
        let ps = series.map { s -> PlotSeries in
            let pts = s.points.sorted { $0.apps < $1.apps }
            let hasCI = pts.contains { $0.value.halfWidth != nil }
            return PlotSeries(name: s.name, x: pts.map { Double($0.apps) }, y: pts.map(\.value.mean), style: .linePoints,
                              yLow: hasCI ? pts.map { $0.value.low ?? $0.value.mean } : nil,
                              yHigh: hasCI ? pts.map { $0.value.high ?? $0.value.mean } : nil)
        }
        var spec = PlotSpec(title: title, xLabel: "number of apps", yLabel: yLabel, series: ps)
        spec.integerX = true
        let xs = ps.flatMap(\.x)
        if let lo = xs.min(), let hi = xs.max() { spec.xRange = (lo - 0.5) ... (hi + 0.5) }
        return spec
    }

    /// Renders `metricVsApps` to `path` (SVG) with the best available renderer.
    public static func renderMetricVsApps(title: String, yLabel: String,
                                          series: [(name: String, points: [(apps: Int, value: MeanWithCI)])],
                                          to path: String, renderer: any PlotRenderer = PlotRenderers.best()) throws {
        try renderer.renderSVG(metricVsApps(title: title, yLabel: yLabel, series: series), to: path)
    }

    private static func binLabel(_ t: TrialAnalysis, _ factor: Int) -> String {
        let w = Double((t.series.first?.binWidthNanoseconds ?? 100_000_000) * UInt64(factor)) / 1e9
        return w >= 1 ? "\(formatTick(w)) s" : "\(formatTick(w * 1000)) ms"
    }

    private static func throughput(_ all: [ThroughputSeries], title: String, binFactor: Int) -> PlotSpec {
        var byName: [String: UInt64] = [:]
        for s in all { byName[s.name, default: 0] += s.bytesPerBin.reduce(0, +) }
        let series = all.compactMap { s -> PlotSeries? in
            let total = s.bytesPerBin.reduce(0, +)
            guard total > 0, Double(total) >= 0.01 * Double(byName[s.name] ?? 0) else { return nil }
            let pts = s.rebinned(by: binFactor).bytesPerSecondPoints
            // Steps drawn from each bin's start, plus a closing point so the last bin shows.
            var x = pts.map(\.seconds), y = pts.map { $0.bytesPerSecond / 1000 }
            if let lx = x.last, let ly = y.last {
                x.append(lx + Double(s.binWidthNanoseconds * UInt64(binFactor)) / 1e9)
                y.append(ly)
            }
            return PlotSeries(name: "\(s.name) \(s.direction)", x: x, y: y, style: .steps)
        }
        var spec = PlotSpec(title: title, xLabel: "time since capture start (s)", yLabel: "throughput (kB/s, 1 kB = 1000 bytes)", series: series)
        spec.xRange = 0 ... max(series.flatMap(\.x).max() ?? 0, 1)
        return spec
    }

    private static func groupByApp(_ samples: [LatencySample]) -> [(String, [LatencySample])] {
        var order: [String] = []
        var by: [String: [LatencySample]] = [:]
        for s in samples {
            if by[s.app] == nil { order.append(s.app) }
            by[s.app, default: []].append(s)
        }
        return order.map { ($0, by[$0]!) }
    }
}

/// Signed seconds from `origin` to `time` (both ns since the epoch); a capture whose packets are
/// not in time order can put a time before the origin.
func secondsBetween(_ origin: UInt64, _ time: UInt64) -> Double {
    Double(Int64(bitPattern: time &- origin)) / 1e9
}
