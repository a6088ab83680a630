import Analysis
import Emulation
import Foundation

/// A whole vehicular trace with an FG and a BG app, IntNW against simple strategies a non-IntNW system
/// would use. Every strategy runs the same apps over IntNW multisockets; only the labels differ:
/// - `intnw`: FG/BG labels, IntNW chooses networks and schedules BG (the real thing);
/// - `wifi-preferred`: no FG/BG distinction, every message prefers WiFi and falls back to cellular;
/// - `cellular-only`: every message restricted to cellular (never uses WiFi);
/// - `no-labels`: IntNW without application hints (everything treated alike).
public struct DriveExperiment: Experiment {
    public let name = "drive"
    public let version = 1
    public let summary = "Ann Arbor-style drive: IntNW vs WiFi-preferred, cellular-only and unlabeled traffic"
    public let expectation = "IntNW gives the lowest FG median latency of all strategies while moving at least as many BG bytes as cellular-only"

    public init() {}

    public enum Strategy: String, CaseIterable, Sendable {
        case intnw
        case wifiPreferred = "wifi-preferred"
        case cellularOnly = "cellular-only"
        case noLabels = "no-labels"

        /// Extra `intnw-app` options for the strategy.
        var appArguments: [String] {
            switch self {
            case .intnw: return []
            case .wifiPreferred: return ["--unlabeled", "--restrict", "wifi-preferred"]
            case .cellularOnly: return ["--restrict", "cellular-only"]
            case .noLabels: return ["--unlabeled"]
            }
        }
    }

    /// Trace file relative to the repository (the harness runs from there).
    public var tracePath = "traces/annarbor.trace"

    func duration(_ o: ExperimentOptions, trace: Trace) -> Double {
        o.quick ? min(90, trace.durationSeconds) : trace.durationSeconds
    }

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        let d = (try? TraceParser.parse(contentsOfFile: tracePath)).map { duration(o, trace: $0) } ?? (o.quick ? 90 : 900)
        return Double(Strategy.allCases.count * o.trials) * (d + 5) + 5
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        let trace = try TraceParser.parse(contentsOfFile: tracePath)
        let d = duration(o, trace: trace)
        var plans: [TrialPlan] = []
        for s in Strategy.allCases {
            for trial in 1...o.trials {
                let fg = AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1,
                                   arguments: ["--interval", "1", "--request-bytes", "128"] + s.appArguments)
                let bg = AppLaunch(name: "bg", kind: .bgClient, variant: .intnw, appId: 2,
                                   arguments: ["--chunk-bytes", "65536", "--depth", "4"] + s.appArguments)
                var plan = TrialPlan(experiment: name, variant: s.rawValue, trial: trial, trace: trace,
                                     durationSeconds: d, apps: [fg, bg])
                plan.apply(o)
                plans.append(plan)
            }
        }
        return plans
    }

    struct Summary {
        var fgMedianMs: Double?
        var fgAnswered: Double
        var bgBytes: Double
    }

    static func summary(_ outcomes: [TrialOutcome], _ s: Strategy) -> Summary? {
        let apps = outcomes.filter { $0.plan.variant == s.rawValue }.compactMap(\.analysis).flatMap(\.result.apps)
        guard !apps.isEmpty else { return nil }
        let fg = apps.filter { $0.name == "fg" }
        let medians = fg.compactMap { $0.fg?.latencyMs?.p50Ms }
        let answered = fg.map { Double($0.fg?.replies ?? 0) / Double(max(1, $0.fg?.requests ?? 0)) }
        let bg = apps.filter { $0.name == "bg" }.map { Double($0.bg?.chunkPayloadBytes ?? 0) }
        return Summary(fgMedianMs: medians.isEmpty ? nil : medians.reduce(0, +) / Double(medians.count),
                       fgAnswered: answered.reduce(0, +) / Double(max(1, answered.count)),
                       bgBytes: bg.reduce(0, +) / Double(max(1, bg.count)))
    }

    public func evaluate(_ outcomes: [TrialOutcome], options: ExperimentOptions) -> Verdict {
        var lines: [String] = []
        var byStrategy: [Strategy: Summary] = [:]
        for s in Strategy.allCases {
            guard let sum = Self.summary(outcomes, s) else { lines.append("\(s.rawValue): no results"); continue }
            byStrategy[s] = sum
            lines.append(String(format: "%@: FG median %@ ms, %.0f%% of requests answered, BG %.0f KB",
                                s.rawValue, sum.fgMedianMs.map { String(format: "%.0f", $0) } ?? "-",
                                sum.fgAnswered * 100, sum.bgBytes / 1000))
        }
        guard let mine = byStrategy[.intnw], let myFG = mine.fgMedianMs else {
            return Verdict(held: false, lines: lines)
        }
        let othersFG = byStrategy.filter { $0.key != .intnw }.compactMap(\.value.fgMedianMs)
        let lowest = othersFG.allSatisfy { myFG <= $0 }
        let bgOK = mine.bgBytes >= (byStrategy[.cellularOnly]?.bgBytes ?? 0)
        return Verdict(held: lowest && bgOK, lines: lines)
    }

    public func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric] {
        guard let s = Self.summary(outcomes, .intnw) else { return [] }
        var m = [KeyMetric(name: "drive.intnw.bg_kbytes", value: s.bgBytes / 1000, unit: "KB", better: .higher)]
        if let f = s.fgMedianMs { m.append(KeyMetric(name: "drive.intnw.fg_p50_ms", value: f, unit: "ms", better: .lower)) }
        return m
    }
}
