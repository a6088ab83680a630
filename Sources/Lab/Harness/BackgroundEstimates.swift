import Analysis
import Emulation
import Foundation

/// What the background policies estimate the link to be, against what the trace says it is.
/// Every IntNW process of a trial records its background link estimates over time
/// (`INTNW_BG_ESTIMATE_LOG={trial}/bg-estimates-%p.jsonl`); the trial runner also writes the
/// trace's capacity as an oracle schedule (`oracle.txt`), which `--estimator oracle` hands to the
/// policies instead of their own estimate (`INTNW_BG_ORACLE`), so that estimator error and policy
/// effect can be told apart.
public enum BackgroundEstimates {
    /// Which estimate background policies scale with in an experiment.
    public enum Estimator: String, CaseIterable, Sendable, Codable {
        /// The library's own (delivery-rate tracking).
        case measured
        /// The trace's capacity at each moment (oracle.txt).
        case oracle
    }

    public static let logPattern = "bg-estimates-%p.jsonl"
    public static let oracleFile = "oracle.txt"

    /// The environment a plan's processes get for `estimator`.
    public static func environment(_ estimator: Estimator) -> [String: String] {
        var env = ["INTNW_BG_ESTIMATE_LOG": "\(TrialPlan.trialDirectoryPlaceholder)/\(logPattern)"]
        if estimator == .oracle { env["INTNW_BG_ORACLE"] = "\(TrialPlan.trialDirectoryPlaceholder)/\(oracleFile)" }
        return env
    }

    /// The oracle schedule of `trace` on `spec`'s interfaces, trace time 0 at `startMonotonicNs`
    /// (the format of `IntNW.OracleSchedule`), with the rates the shaper applies. `sliceStarts` are
    /// the slices the replayer applies and when (its `timeline()`): a replay longer than the trace
    /// loops it, and the schedule must say so, or a trial that drains past the trace's end is
    /// judged against the last slice while the emulator runs the first ones again. nil: the
    /// trace once.
    public static func oracleText(trace: Trace, spec: TopologySpec, startMonotonicNs: UInt64,
                                  sliceStarts: [(seconds: Double, slice: Int)]? = nil) -> String {
        let starts = sliceStarts ?? trace.slices.enumerated().map { (seconds: $0.element.startSeconds, slice: $0.offset) }
        var out = "# the trace's capacity per interface (\(trace.source)), as replayed\nstart_ns \(startMonotonicNs)\n"
        for (k, name) in trace.links.enumerated() {
            guard let link = spec.link(named: name) else { continue }
            for (seconds, index) in starts where trace.slices.indices.contains(index) {
                let s = trace.slices[index]
                let c = s.conditions[k]
                // The rates the shaper applies (`DirectionParameters.from`: an available link keeps
                // a floor, so "0 B/s" on cellular still drains 1 kB/s), not the trace's raw figures.
                let available = trace.isAvailable(link: k, in: s)
                let up = DirectionParameters.from(c, direction: .uplink, available: available).bytesPerSecond ?? 0
                let down = DirectionParameters.from(c, direction: .downlink, available: available).bytesPerSecond ?? 0
                out += "link \(link.interface) \(seconds) \(up) \(down) \(c.rttMilliseconds) \(available ? 1 : 0)\n"
            }
        }
        return out
    }

    /// One recorded estimate.
    public struct Sample: Sendable {
        public var seconds: Double
        public var side: String
        public var interface: String
        public var bytesPerSecond: Double
        public var source: String
    }

    /// The estimates recorded in trial directory `dir`, on the trace's time axis (seconds since
    /// the replay start), per file in time order.
    public static func samples(dir: String, startMonotonicNs: UInt64) -> [[Sample]] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        var out: [[Sample]] = []
        for n in names.sorted() where n.hasPrefix("bg-estimates-") && n.hasSuffix(".jsonl") {
            guard let text = try? String(contentsOfFile: "\(dir)/\(n)", encoding: .utf8) else { continue }
            var list: [Sample] = []
            for line in text.split(separator: "\n") {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let t = (o["t_ns"] as? NSNumber)?.uint64Value, let bw = (o["bw_Bps"] as? NSNumber)?.doubleValue,
                      let side = o["side"] as? String, let iface = o["interface"] as? String else { continue }
                list.append(Sample(seconds: Double(Int64(bitPattern: t &- startMonotonicNs)) / 1e9, side: side,
                                   interface: iface, bytesPerSecond: bw, source: o["source"] as? String ?? "?"))
            }
            if !list.isEmpty { out.append(list.sorted { $0.seconds < $1.seconds }) }
        }
        return out
    }

    /// The trace's capacity of `interface` in `side`'s sending direction at `seconds` (nil: the
    /// link is not available then, or unknown).
    public static func capacity(trace: Trace, spec: TopologySpec, interface: String, side: String, seconds: Double) -> Double? {
        guard let link = spec.links.first(where: { $0.interface == interface }),
              let k = trace.links.firstIndex(of: link.name), !trace.slices.isEmpty else { return nil }
        let s = trace.slices[trace.sliceIndex(at: seconds)]
        guard trace.isAvailable(link: k, in: s) else { return nil }
        let c = s.conditions[k]
        let v = side == "client" ? c.upBytesPerSecond : c.downBytesPerSecond
        return v > 0 ? v : nil
    }

    /// Accuracy of one interface and side over a trial.
    public struct Accuracy: Sendable {
        public var side: String
        public var interface: String
        /// Time-weighted median of |estimate - capacity| / capacity.
        public var medianRelativeError: Double
        /// Seconds of estimates it is computed over.
        public var seconds: Double
    }

    /// Time-weighted median relative error per side and interface: each recorded estimate holds
    /// until the next one of the same process (at most 0.5 s: estimates are recorded every 100 ms
    /// while background is scheduled; a longer gap means background was idle).
    public static func accuracy(_ files: [[Sample]], trace: Trace, spec: TopologySpec) -> [Accuracy] {
        var weighted: [String: [(err: Double, w: Double)]] = [:]
        for list in files {
            for (i, s) in list.enumerated() {
                let next = list[(i + 1)...].first { $0.interface == s.interface && $0.side == s.side }
                let w = min(0.5, (next?.seconds ?? s.seconds + 0.1) - s.seconds)
                guard w > 0, let cap = capacity(trace: trace, spec: spec, interface: s.interface, side: s.side, seconds: s.seconds) else { continue }
                weighted["\(s.side) \(s.interface)", default: []].append((abs(s.bytesPerSecond - cap) / cap, w))
            }
        }
        return weighted.keys.sorted().compactMap { key in
            let pts = weighted[key]!.sorted { $0.err < $1.err }
            let total = pts.reduce(0) { $0 + $1.w }
            guard total > 0 else { return nil }
            var acc = 0.0
            var median = pts.last!.err
            for p in pts {
                acc += p.w
                if acc >= total / 2 { median = p.err; break }
            }
            let parts = key.split(separator: " ")
            return Accuracy(side: String(parts[0]), interface: String(parts[1]), medianRelativeError: median, seconds: total)
        }
    }

    /// Estimates against the trace's capacity over time, one plot per side and interface, written
    /// under `directory/plots`; returns the paths relative to `directory`.
    public static func plots(_ files: [[Sample]], trace: Trace, spec: TopologySpec, durationSeconds: Double,
                             directory: String, name: String) throws -> [String] {
        var keys = Set<String>()
        for l in files { for s in l { keys.insert("\(s.side) \(s.interface)") } }
        guard !keys.isEmpty else { return [] }
        try FileManager.default.createDirectory(atPath: "\(directory)/plots", withIntermediateDirectories: true)
        var out: [String] = []
        for key in keys.sorted() {
            let parts = key.split(separator: " ").map(String.init)
            var series: [PlotSeries] = []
            var xs: [Double] = [], ys: [Double] = []
            var t = 0.0
            while t <= durationSeconds {
                xs.append(t)
                ys.append((capacity(trace: trace, spec: spec, interface: parts[1], side: parts[0], seconds: t) ?? 0) / 1000)
                t += 0.25
            }
            series.append(PlotSeries(name: "trace capacity", x: xs, y: ys, style: .steps))
            for (k, l) in files.enumerated() {
                let pts = l.filter { "\($0.side) \($0.interface)" == key }
                guard !pts.isEmpty else { continue }
                series.append(PlotSeries(name: "estimate, process \(k + 1)", x: pts.map(\.seconds), y: pts.map { $0.bytesPerSecond / 1000 },
                                         style: .points))
            }
            var spec = PlotSpec(title: "BG link estimate vs trace capacity, \(parts[0]) \(parts[1]) (\(name))",
                                xLabel: "time since replay start (s)", yLabel: "bandwidth (KB/s)", series: series)
            spec.xRange = 0...max(1, durationSeconds)
            let file = "plots/bg-estimate-\(name)-\(parts[0])-\(parts[1]).svg"
            try PlotRenderers.best().renderSVG(spec, to: "\(directory)/\(file)")
            out.append(file)
        }
        return out
    }
}
