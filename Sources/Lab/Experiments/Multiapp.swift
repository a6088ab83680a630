import Analysis
import Emulation
import Foundation

/// Goal 1 of the multi-app design note: FG/BG enforced across apps, across multisockets in one app, and
/// within one multisocket. One app sends only FG, one only BG; the FG app starts once BG traffic is
/// flowing; FG latency should start slow (BG bytes already queued) and quickly improve.
public struct MultiappExperiment: Experiment {
    public let name = "multiapp"
    public let version = 1
    public let summary = "FG app joins a busy BG app on cellular: two apps, two multisockets in one app, one multisocket"
    public let expectation = "in every variant FG latency starts slow and quickly improves: the median of the last half of FG requests is below the first request's latency and within 2x of the link's idle request time"

    public init() {}

    /// The three layouts of the note.
    public enum Layout: String, CaseIterable, Sendable {
        case twoApps = "two-apps"
        case twoMultisockets = "two-multisockets"
        case oneMultisocket = "one-multisocket"
    }

    struct Timing {
        var fgStart: Double
        var duration: Double
    }

    func timing(_ o: ExperimentOptions) -> Timing {
        o.quick ? Timing(fgStart: 5, duration: 20) : Timing(fgStart: 10, duration: 50)
    }

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        // Per trial: the apps' duration plus about 5 s to bring up, stop, tear down and analyse.
        Double(Layout.allCases.count * o.trials) * (timing(o).duration + 5) + 5
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        let t = timing(o)
        var plans: [TrialPlan] = []
        for layout in Layout.allCases {
            for trial in 1...o.trials {
                let fgArgs = ["--interval", "1", "--request-bytes", "128"]
                let bgArgs = ["--chunk-bytes", "262144", "--depth", "4"]
                var fg = AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1,
                                   startDelaySeconds: t.fgStart, arguments: fgArgs)
                var bg = AppLaunch(name: "bg", kind: .bgClient, variant: .intnw, appId: 2, arguments: bgArgs)
                if layout != .twoApps {
                    fg.process = "fgbg"
                    bg.process = "fgbg"
                    fg.shareMultisocket = layout == .oneMultisocket
                    bg.shareMultisocket = fg.shareMultisocket
                }
                var plan = TrialPlan(experiment: name, variant: layout.rawValue, trial: trial,
                                     trace: Conditions.cellularOnly(seconds: t.duration + 30),
                                     durationSeconds: t.duration, apps: [fg, bg])
                plan.notifyDelaySeconds = 0 // WiFi is absent from the start: the OS knows.
                plan.apply(o)
                plans.append(plan)
            }
        }
        return plans
    }

    /// Idle request time on the cellular link: one RTT plus serializing request and reply headers.
    static let idleRequestMs = Conditions.cellular.rttMilliseconds
        + Double(128 + 24 + 52) / Conditions.cellular.upBytesPerSecond * 1000
        + Double(64 + 24 + 52) / Conditions.cellular.downBytesPerSecond * 1000

    public func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric] {
        var out: [KeyMetric] = []
        for layout in Layout.allCases {
            let apps = outcomes.filter { $0.plan.variant == layout.rawValue }.compactMap(\.analysis).flatMap(\.result.apps)
            let p95 = apps.filter { $0.name == "fg" }.compactMap { $0.fg?.latencyMs?.p95Ms }
            let bg = apps.filter { $0.name == "bg" && $0.throughput.activeSeconds > 0 }
                .map { Double($0.throughput.uplinkBytes) / $0.throughput.activeSeconds }
            // Requests answered: latency on the wire cannot see a request held back inside the sender
            // (behind BG data in its socket), but fewer answered requests shows it.
            let answered = apps.filter { $0.name == "fg" }.compactMap { $0.fg.map { Double($0.replies) } }
            if !answered.isEmpty {
                out.append(KeyMetric(name: "multiapp.\(layout.rawValue).fg_answered", value: answered.reduce(0, +) / Double(answered.count),
                                     unit: "requests", better: .higher))
            }
            if !p95.isEmpty {
                out.append(KeyMetric(name: "multiapp.\(layout.rawValue).fg_p95_ms", value: p95.reduce(0, +) / Double(p95.count),
                                     unit: "ms", better: .lower))
            }
            if !bg.isEmpty {
                out.append(KeyMetric(name: "multiapp.\(layout.rawValue).bg_bytes_per_s", value: bg.reduce(0, +) / Double(bg.count),
                                     unit: "B/s", better: .higher))
            }
        }
        return out
    }

    public func evaluate(_ outcomes: [TrialOutcome], options: ExperimentOptions) -> Verdict {
        var held = true
        var lines: [String] = []
        for layout in Layout.allCases {
            for o in outcomes where o.plan.variant == layout.rawValue {
                guard let a = o.analysis else {
                    held = false
                    lines.append("\(layout.rawValue) trial \(o.plan.trial): no analysis")
                    continue
                }
                let fg = a.latencies.filter { $0.app == "fg" }.sorted { $0.requestNanoseconds < $1.requestNanoseconds }
                let ms = fg.map { Double($0.latencyNanoseconds) / 1e6 }
                guard ms.count >= 4, let first = ms.first, let late = Array(ms[(ms.count / 2)...]).percentile(0.5) else {
                    held = false
                    lines.append("\(layout.rawValue) trial \(o.plan.trial): only \(ms.count) FG requests answered on the wire")
                    continue
                }
                let bgBytes = Int(a.result.apps.first { $0.name == "bg" }?.bg?.chunkPayloadBytes ?? 0)
                let ok = late < first && late <= 2 * Self.idleRequestMs
                held = held && ok
                lines.append(String(format: "%@ trial %d: first FG request %.0f ms, median of last half %.0f ms (idle link %.0f ms), %d requests, BG %d bytes: %@",
                                    layout.rawValue, o.plan.trial, first, late, Self.idleRequestMs, ms.count, bgBytes,
                                    ok ? "starts slow, improves" : "does not improve"))
            }
        }
        return Verdict(held: held, lines: lines)
    }
}
