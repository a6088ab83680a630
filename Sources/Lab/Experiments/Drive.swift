import Analysis
import Emulation
import Foundation
import ToyProtocol

/// A vehicular trace (by default the synthetic Ann Arbor one; `--trace traces/annarbor-downtown.trace`
/// for the real downtown drive) with an FG and a BG app: IntNW against what a system without IntNW would
/// do. The first four strategies run the same apps over IntNW multisockets and differ only in labels:
/// - `intnw`: FG/BG labels, IntNW chooses networks and schedules BG (the real thing);
/// - `wifi-preferred`: no FG/BG distinction, every message prefers WiFi and falls back to cellular;
/// - `cellular-only`: every message restricted to cellular (never uses WiFi);
/// - `no-labels`: IntNW without application hints (everything treated alike).
/// The last two run the plain-TCP toy apps over Linux Multipath TCP sockets (`IPPROTO_MPTCP`, in-kernel
/// path manager configured with `ip mptcp endpoint`), what a user would pick today instead of IntNW:
/// - `mptcp-backup`: a WiFi subflow and cellular as a `backup` subflow;
/// - `mptcp-subflow`: cellular as a normal subflow next to WiFi.
/// They are left out, with a stated reason, on a kernel without MPTCP.
///
/// Figures are app-perceived, from the apps' own logs as the analyzer read them (so they mean the same for IntNW and MPTCP, whose
/// subflows a capture cannot put back together): per trial the FG latency p50, p95 and mean over
/// answered requests, the share of requests answered, and the BG bytes acknowledged per second of the
/// trial; per strategy the mean of those over trials with a 95% Student-t interval.
public struct DriveExperiment: Experiment {
    public let name = "drive"
    public let version = 2
    public let summary = "Vehicular drive: IntNW vs WiFi-preferred, cellular-only, unlabeled traffic and Linux MPTCP (backup / subflow)"
    public let expectation = "IntNW's FG p95 latency is at least 2x lower than WiFi-preferred's and MPTCP-backup's, and its BG throughput is at least 80% of the best alternative's"

    public init() {}

    public enum Strategy: String, CaseIterable, Sendable {
        case intnw
        case wifiPreferred = "wifi-preferred"
        case cellularOnly = "cellular-only"
        case noLabels = "no-labels"
        case mptcpBackup = "mptcp-backup"
        case mptcpSubflow = "mptcp-subflow"

        /// Extra `intnw-app` options for the strategy.
        var appArguments: [String] {
            switch self {
            case .intnw, .mptcpBackup, .mptcpSubflow: return []
            case .wifiPreferred: return ["--unlabeled", "--restrict", "wifi-preferred"]
            case .cellularOnly: return ["--restrict", "cellular-only"]
            case .noLabels: return ["--unlabeled"]
            }
        }

        var mptcp: MPTCPMode? {
            switch self {
            case .mptcpBackup: return .backup
            case .mptcpSubflow: return .subflow
            default: return nil
            }
        }
    }

    /// Thresholds of the verdict.
    public static let fgP95Factor = 2.0
    public static let bgShareOfBest = 0.8

    /// Trace file relative to the repository (the harness runs from there).
    public var tracePath = "traces/annarbor.trace"

    func duration(_ o: ExperimentOptions, trace: Trace) -> Double {
        o.quick ? min(90, trace.durationSeconds) : trace.durationSeconds
    }

    /// The strategies this kernel can run, and why any is left out.
    static func strategies() -> (run: [Strategy], skipped: String?) {
        if let why = MPTCPMode.kernelSupport {
            return (Strategy.allCases.filter { $0.mptcp == nil }, "MPTCP strategies skipped: \(why)")
        }
        return (Strategy.allCases, nil)
    }

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        let d = o.durationSeconds ?? (try? TraceParser.parse(contentsOfFile: tracePath)).map { duration(o, trace: $0) } ?? (o.quick ? 90 : 900)
        return Double(Self.strategies().run.count * o.trials) * (d + 8) + 5
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        let trace = try TraceParser.parse(contentsOfFile: tracePath)
        let d = duration(o, trace: trace)
        var plans: [TrialPlan] = []
        for s in Self.strategies().run {
            for trial in 1...o.trials {
                let variant: ToyVariant = s.mptcp == nil ? .intnw : .plain
                let fg = AppLaunch(name: "fg", kind: .fgClient, variant: variant, appId: 1,
                                   arguments: ["--interval", "1", "--request-bytes", "128"] + s.appArguments)
                let bg = AppLaunch(name: "bg", kind: .bgClient, variant: variant, appId: 2,
                                   arguments: ["--chunk-bytes", "65536", "--depth", "4"] + s.appArguments)
                var plan = TrialPlan(experiment: name, variant: s.rawValue, trial: trial, trace: trace,
                                     durationSeconds: d, apps: [fg, bg])
                plan.apply(o)
                if let mode = s.mptcp {
                    plan.mptcp = mode
                    plan.environment["INTNW_PLAIN_MPTCP"] = "1"
                }
                plans.append(plan)
            }
        }
        return plans
    }

    // MARK: figures from the apps' logs

    /// One trial's app-perceived figures.
    struct TrialFigures {
        var fgLatenciesMs: [Double]
        var fgRequests: Int
        var bgBytes: Double
        var seconds: Double

        var fgP50: Double? { fgLatenciesMs.percentile(0.5) }
        var fgP95: Double? { fgLatenciesMs.percentile(0.95) }
        var fgMean: Double? { fgLatenciesMs.isEmpty ? nil : fgLatenciesMs.reduce(0, +) / Double(fgLatenciesMs.count) }
        var bgBytesPerSecond: Double { seconds > 0 ? bgBytes / seconds : 0 }
    }

    /// A trial's app-perceived figures from the apps' logs as the analyzer decoded them (the `fg` and
    /// `bg` apps' `AppLogCheck` and logged requests): FG latency per answered request (reply time less
    /// send time), the number of requests sent (the FG summary's `requests_sent`, or the answered ones
    /// when there is no summary), and the BG bytes acknowledged. Nil when either app has no readable log.
    static func figures(_ analysis: TrialAnalysis, seconds: Double) -> TrialFigures? {
        guard let fg = analysis.appLog("fg"), let bg = analysis.appLog("bg") else { return nil }
        let latencies = analysis.loggedRequests(app: "fg").compactMap(\.latencyNanoseconds).map { Double($0) / 1e6 }
        let requests = fg.loggedRequestsSent.map { Int($0) } ?? latencies.count
        return TrialFigures(fgLatenciesMs: latencies, fgRequests: max(requests, latencies.count), bgBytes: Double(bg.loggedChunkBytes),
                            seconds: seconds)
    }

    /// Per strategy: means over trials (95% intervals) of each trial's FG p50/p95/mean, answered share
    /// and BG bytes/s.
    public struct StrategySummary: Sendable {
        public var trials: Int
        public var fgP50: MeanWithCI?
        public var fgP95: MeanWithCI?
        public var fgMean: MeanWithCI?
        public var answered: MeanWithCI?
        public var bgBytesPerSecond: MeanWithCI?
    }

    static func summary(_ outcomes: [TrialOutcome], _ s: Strategy) -> StrategySummary? {
        let all = outcomes.filter { $0.plan.variant == s.rawValue }
            .compactMap { o in o.analysis.flatMap { Self.figures($0, seconds: o.plan.durationSeconds) } }
        guard !all.isEmpty else { return nil }
        return StrategySummary(
            trials: all.count,
            fgP50: Statistics.meanWithCI(all.compactMap(\.fgP50)),
            fgP95: Statistics.meanWithCI(all.compactMap(\.fgP95)),
            fgMean: Statistics.meanWithCI(all.compactMap(\.fgMean)),
            answered: Statistics.meanWithCI(all.map { Double($0.fgLatenciesMs.count) / Double(max(1, $0.fgRequests)) }),
            bgBytesPerSecond: Statistics.meanWithCI(all.map(\.bgBytesPerSecond)))
    }

    static func show(_ m: MeanWithCI?, scale: Double = 1, digits: Int = 0) -> String {
        guard let m else { return "-" }
        let f = "%.\(digits)f"
        return String(format: f, m.mean * scale) + (m.halfWidth.map { " ±" + String(format: f, $0 * scale) } ?? "")
    }

    /// The comparison table (one row per strategy) as text lines.
    static func table(_ sums: [(Strategy, StrategySummary)]) -> [String] {
        let header = ["strategy", "trials", "FG p50 ms", "FG p95 ms", "FG mean ms", "answered %", "BG kB/s"]
        let rows = sums.map { s, m in
            [s.rawValue, String(m.trials), show(m.fgP50), show(m.fgP95), show(m.fgMean), show(m.answered, scale: 100),
             show(m.bgBytesPerSecond, scale: 0.001, digits: 1)]
        }
        var widths = header.map(\.count)
        for r in rows { for (i, f) in r.enumerated() { widths[i] = max(widths[i], f.count) } }
        func line(_ r: [String]) -> String {
            r.enumerated().map { i, f in i == 0 ? f.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[i] - f.count) + f }.joined(separator: "  ")
        }
        return [line(header)] + rows.map(line)
    }

    public func evaluate(_ outcomes: [TrialOutcome], options: ExperimentOptions) -> Verdict {
        let (run, skipped) = Self.strategies()
        var lines: [String] = []
        if let skipped { lines.append(skipped) }
        // A trial whose apps left no readable log is no data point: named, and out of the means.
        for o in outcomes where o.analysis.flatMap({ Self.figures($0, seconds: o.plan.durationSeconds) }) == nil {
            lines.append("left out \(o.plan.variant) trial \(o.plan.trial): " + (o.analysis == nil ? "not analysed" : "no readable fg and bg app log"))
        }
        var sums: [Strategy: StrategySummary] = [:]
        for s in run {
            if let m = Self.summary(outcomes, s) { sums[s] = m } else { lines.append("\(s.rawValue): no results") }
        }
        let ordered = run.compactMap { s in sums[s].map { (s, $0) } }
        lines += Self.table(ordered).map { "`\($0)`" }
        lines.append("means over trials of each trial's figure, ± the 95% Student-t half-width; FG latency over answered requests, app-perceived (from the apps' logs)")
        guard let mine = sums[.intnw], let myP95 = mine.fgP95?.mean, let myBG = mine.bgBytesPerSecond?.mean else {
            lines.append("IntNW has no results: nothing to compare")
            return Verdict(held: false, lines: lines)
        }
        var held = true
        // The paper's form: FG latency N x lower than each alternative, BG within X%.
        for (s, m) in ordered where s != .intnw {
            guard let p95 = m.fgP95?.mean, let bg = m.bgBytesPerSecond?.mean else { continue }
            let meanFactor = (m.fgMean?.mean).flatMap { alt in mine.fgMean.map { alt / max($0.mean, 1e-9) } }
            let bgPart = bg > 0 ? String(format: "BG %.0f%% of %@'s", myBG / bg * 100, s.rawValue) : "BG: \(s.rawValue) moved none"
            lines.append(String(format: "vs %@: FG p95 %.2fx lower, FG mean %@x lower; %@",
                                s.rawValue, p95 / max(myP95, 1e-9), meanFactor.map { String(format: "%.2f", $0) } ?? "-", bgPart))
        }
        for s in [Strategy.wifiPreferred, .mptcpBackup] where run.contains(s) {
            guard let p95 = sums[s]?.fgP95?.mean else {
                lines.append("check: \(s.rawValue) has no FG latency: cannot compare (fails)")
                held = false
                continue
            }
            let ok = p95 >= Self.fgP95Factor * myP95
            held = held && ok
            lines.append(String(format: "check: IntNW FG p95 %.0f ms x %.0f <= %@ FG p95 %.0f ms: %@", myP95, Self.fgP95Factor,
                                s.rawValue, p95, ok ? "yes" : "NO"))
        }
        if let (best, bestBG) = ordered.filter({ $0.0 != .intnw }).compactMap({ s, m in m.bgBytesPerSecond.map { (s, $0.mean) } })
            .max(by: { $0.1 < $1.1 }) {
            let ok = myBG >= Self.bgShareOfBest * bestBG
            held = held && ok
            lines.append(String(format: "check: IntNW BG %.0f B/s >= %.0f%% of the best alternative's (%@, %.0f B/s): %@",
                                myBG, Self.bgShareOfBest * 100, best.rawValue, bestBG, ok ? "yes" : "NO"))
        }
        return Verdict(held: held, lines: lines)
    }

    public func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric] {
        guard let s = Self.summary(outcomes, .intnw) else { return [] }
        var m: [KeyMetric] = []
        if let b = s.bgBytesPerSecond { m.append(KeyMetric(name: "drive.intnw.bg_Bps", value: b.mean, unit: "B/s", better: .higher)) }
        if let f = s.fgP95 { m.append(KeyMetric(name: "drive.intnw.fg_p95_ms", value: f.mean, unit: "ms", better: .lower)) }
        return m
    }
}
