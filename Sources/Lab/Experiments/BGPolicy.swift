import Analysis
import Emulation
import Foundation
import ToyProtocol

/// The BG policies side by side (docs/testbed.md, Experiments, issue 4): FG latency against BG throughput
/// for each policy, in the three layouts of the multi-app design (docs/scheduling.md) (two apps, two multisockets in one
/// app, one multisocket), on the cellular-only 3G link and on a window of a vehicular trace where
/// WiFi comes and goes. Every condition also runs the FG app alone: the yardstick for "FG
/// latency unharmed".
public struct BGPolicyExperiment: Experiment {
    public let name = "bgpolicy"
    public let version = 2
    public let summary = "BG policies side by side, cellular-only and vehicular: FG latency vs BG throughput in three layouts"
    public let expectation = "on cellular only, anticipatory keeps FG p95 within 2x of FG alone while BG moves at least 10% of the uplink in every layout, and permissive makes FG p95 at least 3x worse than anticipatory in one multisocket; each policy's distance from the goal (FG p95 within 1.25x of FG alone, BG at least half the capacity FG leaves unused) is reported"

    public init() {}

    /// The policies compared, as INTNW_BG_POLICY values: the four of the original design, the two other
    /// readings of anticipatory's "socket buffer is empty", and our delay-target policy.
    public static let policies = ["exclusive", "permissive", "anticipatory", "trickle", "delay-target",
                                  "anticipatory:empty=unsent", "anticipatory:empty=unacked"]

    public enum Condition: String, CaseIterable, Sendable {
        case cellular
        case vehicular
    }

    /// Vehicular window: 90 s of the Ann Arbor trace from 295 s, cellular only for 15 s, strong
    /// WiFi for 55 s, then a gap and a weak WiFi encounter.
    public var vehicularTracePath = "traces/annarbor.trace"
    public var vehicularWindow = (fromSeconds: 295.0, seconds: 90.0)

    typealias Layout = MultiappExperiment.Layout

    struct Timing {
        var fgStart: Double
        var duration: Double
    }

    func timing(_ o: ExperimentOptions, _ c: Condition) -> Timing {
        switch c {
        case .cellular: o.quick ? Timing(fgStart: 5, duration: 30) : Timing(fgStart: 5, duration: 60)
        case .vehicular: Timing(fgStart: 5, duration: o.quick ? 45 : vehicularWindow.seconds)
        }
    }

    func policies(_ o: ExperimentOptions) -> [String] { o.bgPolicy.map { [$0] } ?? Self.policies }

    /// Variant directory name: `cellular.one-multisocket.anticipatory-empty-unsent`, `cellular.fg-alone`.
    static func variant(_ c: Condition, _ layout: Layout?, _ policy: String?) -> String {
        guard let layout, let policy else { return "\(c.rawValue).fg-alone" }
        let p = policy.map { $0 == ":" || $0 == "=" || $0 == "," ? "-" : $0 }
        return "\(c.rawValue).\(layout.rawValue).\(String(p))"
    }

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        let perCondition = Double(Layout.allCases.count * policies(o).count + 1) * Double(o.trials)
        return Condition.allCases.map { perCondition * (timing(o, $0).duration + 12) }.reduce(5, +)
    }

    /// `seconds` of `trace` from `from`, starting at 0.
    public static func window(_ trace: Trace, from: Double, seconds: Double) -> Trace {
        var slices: [TraceSlice] = []
        let first = trace.sliceIndex(at: from)
        slices.append(TraceSlice(startSeconds: 0, conditions: trace.slices[first].conditions))
        for s in trace.slices[(first + 1)...] where s.startSeconds < from + seconds {
            slices.append(TraceSlice(startSeconds: s.startSeconds - from, conditions: s.conditions))
        }
        return Trace(links: trace.links, slices: slices, durationSeconds: seconds,
                     source: "\(trace.source), \(Int(from))-\(Int(from + seconds)) s")
    }

    func trace(_ c: Condition, _ o: ExperimentOptions) throws -> Trace {
        switch c {
        case .cellular: return Conditions.cellularOnly(seconds: timing(o, c).duration + 30)
        case .vehicular:
            let t = try TraceParser.parse(contentsOfFile: vehicularTracePath)
            return Self.window(t, from: vehicularWindow.fromSeconds, seconds: vehicularWindow.seconds)
        }
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        var plans: [TrialPlan] = []
        let fgArgs = ["--interval", "2", "--request-bytes", "128"]
        let bgArgs = ["--chunk-bytes", "262144", "--depth", "4"]
        for c in Condition.allCases {
            let t = timing(o, c)
            let tr = try trace(c, o)
            func plan(_ variant: String, trial: Int, apps: [AppLaunch], policy: String?) -> TrialPlan {
                var p = TrialPlan(experiment: name, variant: variant, trial: trial, trace: tr, durationSeconds: t.duration, apps: apps)
                p.apply(o)
                // WiFi absent from the start on the 3G link: the OS knows at once.
                if c == .cellular { p.notifyDelaySeconds = 0 }
                if let policy { p.environment["INTNW_BG_POLICY"] = policy }
                return p
            }
            for trial in 1...o.trials {
                let fg = AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1, startDelaySeconds: t.fgStart, arguments: fgArgs)
                plans.append(plan(Self.variant(c, nil, nil), trial: trial, apps: [fg], policy: nil))
            }
            for layout in Layout.allCases {
                for policy in policies(o) {
                    for trial in 1...o.trials {
                        let apps = layout.apps(fgStart: t.fgStart, fgArgs: fgArgs, bgArgs: bgArgs)
                        plans.append(plan(Self.variant(c, layout, policy), trial: trial, apps: apps, policy: policy))
                    }
                }
            }
        }
        return plans
    }

    // MARK: - Evaluation

    /// What one variant measured, over its trials.
    struct Figures {
        /// FG latencies as the app saw them (its log: send to reply, socket-buffer waits
        /// included), or on the wire when the log is missing; the first request is left out (it
        /// meets whatever BG queued before FG existed).
        var fgMs: [Double]
        var bgBytesPerSecond: Double
        var fromLog: Bool
    }

    /// FG latencies (ms) of app `app` as it logged them, by sequence number (answered requests only),
    /// from the analyzer's reading of its log; nil when the app has no readable log.
    static func loggedLatencies(_ analysis: TrialAnalysis, app: String) -> [UInt64: Double]? {
        guard analysis.appLog(app) != nil else { return nil }
        var out: [UInt64: Double] = [:]
        for r in analysis.loggedRequests(app: app) {
            if let ns = r.latencyNanoseconds { out[r.sequence] = Double(ns) / 1e6 }
        }
        return out
    }

    /// FG latencies (ms, app-perceived) of `app` by when each request was sent, in tenths of a
    /// second after the trace replay started at `replayStartRealtimeNs`; the first request left
    /// out. With the request grid tied to the replay's start (`--grid-origin-ns`), the FG-alone
    /// trial and a layout's trial send at the same tenths.
    static func latenciesByTraceTime(_ analysis: TrialAnalysis, app: String, replayStartRealtimeNs: UInt64) -> [Int: Double] {
        var out: [Int: Double] = [:]
        for r in analysis.loggedRequests(app: app).sorted(by: { $0.sequence < $1.sequence }).dropFirst() {
            guard let ns = r.latencyNanoseconds, r.sendNanoseconds >= replayStartRealtimeNs else { continue }
            out[Int((Double(r.sendNanoseconds - replayStartRealtimeNs) / 1e8).rounded())] = Double(ns) / 1e6
        }
        return out
    }

    /// What FG lost per request against FG alone at the same moment of the trace: each request's
    /// latency less the FG-alone request sent at the same tenth of a second (trial k against
    /// FG-alone trial k). On a trace whose conditions change every second (an RTT spike, WiFi
    /// appearing) this compares like with like, where p95 over 20 requests mostly repeats the
    /// trace's worst second. Nil when fewer than half of the requests found a partner.
    /// Also the p95 of each side over the paired requests only: the same moments of the trace on
    /// both sides. Unpaired p95s can compare different moments: an FG app that became ready late
    /// (its connection set up behind BG) sends its first request, which is left out, at a later
    /// grid point, and if that is the moment of the trace's worst second, its p95 no longer
    /// contains it while FG alone's does (vehicular trickle: 373 ms against 1,306 ms, "0.29x").
    struct PairedExcess: Equatable {
        var pairs: Int
        var requests: Int
        var p50Ms: Double
        var p95Ms: Double
        var otherP95Ms: Double
        var aloneP95Ms: Double
        /// p95 over the paired requests, x FG alone's over the same moments.
        var p95Ratio: Double { aloneP95Ms > 0 ? otherP95Ms / aloneP95Ms : .infinity }
    }

    static func pairedExcess(alone: [[Int: Double]], other: [[Int: Double]]) -> PairedExcess? {
        var excess: [Double] = [], mine: [Double] = [], theirs: [Double] = []
        var requests = 0
        for (a, o) in zip(alone, other) {
            requests += o.count
            for (t, ms) in o {
                if let base = a[t] {
                    excess.append(ms - base)
                    mine.append(ms)
                    theirs.append(base)
                }
            }
        }
        guard requests > 0, excess.count * 2 >= requests, let p50 = excess.percentile(0.5),
              let p95 = excess.percentile(0.95), let mp = mine.percentile(0.95), let tp = theirs.percentile(0.95) else { return nil }
        return PairedExcess(pairs: excess.count, requests: requests, p50Ms: p50, p95Ms: p95, otherP95Ms: mp, aloneP95Ms: tp)
    }

    /// Per trial (in trial order) of `variant`, its FG app's latencies by trace time (empty for a
    /// trial without a readable log or replay record).
    static func latenciesByTraceTime(_ outcomes: [TrialOutcome], variant: String) -> [[Int: Double]] {
        outcomes.filter { $0.plan.variant == variant }.sorted { $0.plan.trial < $1.plan.trial }.map { o in
            guard let a = o.analysis, let fg = o.plan.apps.first(where: { $0.kind == .fgClient }),
                  let start = try? ReplayStartRecord.read(from: o.directory) else { return [:] }
            return latenciesByTraceTime(a, app: fg.name, replayStartRealtimeNs: start.realtimeNs)
        }
    }

    static func figures(_ outcomes: [TrialOutcome], variant: String) -> Figures? {
        var fg: [Double] = []
        var bgRates: [Double] = []
        var fromLog = true
        var any = false
        for o in outcomes where o.plan.variant == variant {
            guard let a = o.analysis else { continue }
            any = true
            let fgApp = o.plan.apps.first { $0.kind == .fgClient }
            if let fgApp, let logged = loggedLatencies(a, app: fgApp.name), !logged.isEmpty {
                fg += logged.keys.sorted().dropFirst().map { logged[$0]! }
            } else {
                fromLog = false
                let wire = a.latencies.filter { $0.app == "fg" }.sorted { $0.requestNanoseconds < $1.requestNanoseconds }
                fg += wire.dropFirst().map { Double($0.latencyNanoseconds) / 1e6 }
            }
            // BG throughput: everything the client sent (TCP payload on its interfaces, no
            // retransmissions) less the FG app's bytes, inside the trace's window (`TraceWindow`;
            // the whole capture where the trial has no replay record). Finer than counting 256 KB
            // chunks, and the same in every layout (a shared connection carries both apps).
            let sent = a.result.interfaces.filter { $0.side == "client" }
                .reduce(UInt64(0)) { $0 + $1.uplinkBytes - min($1.uplinkBytes, $1.retransmittedBytes) }
            let fgSent = a.result.apps.first { $0.name == "fg" }?.throughput.uplinkBytes ?? 0
            bgRates.append(TraceWindow.backgroundRate(o, direction: "uplink", totalBytes: sent, fgBytes: fgSent))
        }
        guard any else { return nil }
        return Figures(fgMs: fg, bgBytesPerSecond: bgRates.isEmpty ? 0 : bgRates.reduce(0, +) / Double(bgRates.count), fromLog: fromLog)
    }

    /// Mean uplink capacity over a run (bytes/s): cellular plus WiFi where WiFi is usable.
    static func uplinkCapacity(_ trace: Trace, seconds: Double) -> Double {
        var total = 0.0
        for (i, s) in trace.slices.enumerated() where s.startSeconds < seconds {
            let end = min(seconds, trace.endSeconds(ofSlice: i))
            let up = s.conditions.enumerated().reduce(0.0) { acc, link in
                trace.isAvailable(link: link.offset, in: s) ? acc + link.element.upBytesPerSecond : acc
            }
            total += up * max(0, end - s.startSeconds)
        }
        return total / seconds
    }

    public func evaluate(_ outcomes: [TrialOutcome], options o: ExperimentOptions) -> Verdict {
        var lines: [String] = []
        var held = true
        for c in Condition.allCases {
            // The trace and length the trials ran with (a `--trace` window replaces the built-in ones).
            let ran = outcomes.first { $0.plan.variant.hasPrefix(c.rawValue + ".") }?.plan
            // `--variants` without any of this condition's: nothing of it to judge, and the
            // expectation (its clauses are about cellular) is not judged either.
            if ran == nil, let chosen = o.variants, !chosen.contains(where: { $0.hasPrefix(c.rawValue + ".") }) {
                lines.append("\(c.rawValue): not run (--variants); its part of the expectation is not judged")
                held = false
                continue
            }
            guard let tr = ran?.trace ?? (try? trace(c, o)) else {
                lines.append("\(c.rawValue): trace unavailable")
                held = false
                continue
            }
            let seconds = ran?.durationSeconds ?? timing(o, c).duration
            // FG uses 128 + 24 B every 2 s each way: negligible next to the link.
            let unused = Self.uplinkCapacity(tr, seconds: seconds) - 76
            guard let alone = Self.figures(outcomes, variant: Self.variant(c, nil, nil)), let aloneP95 = alone.fgMs.percentile(0.95) else {
                lines.append("\(c.rawValue): no FG-alone baseline")
                held = false
                continue
            }
            lines.append(String(format: "%@: FG alone p50 %.0f ms, p95 %.0f ms; uplink capacity %.0f B/s",
                                c.rawValue, alone.fgMs.percentile(0.5) ?? 0, aloneP95, unused + 76))
            var p95: [String: Double] = [:]
            let aloneByTime = Self.latenciesByTraceTime(outcomes, variant: Self.variant(c, nil, nil))
            func pairedNote(_ e: PairedExcess?) -> String {
                guard let e else { return "; FG against FG alone at the same trace time: too few requests pair" }
                return String(format: "; FG against FG alone at the same trace time (%d of %d requests): +%.0f ms median, +%.0f ms p95 added; p95 %.0f ms against %.0f ms alone (%.2fx)",
                              e.pairs, e.requests, e.p50Ms, e.p95Ms, e.otherP95Ms, e.aloneP95Ms, e.p95Ratio)
            }
            for layout in Layout.allCases {
                for policy in policies(o) {
                    guard let f = Self.figures(outcomes, variant: Self.variant(c, layout, policy)),
                          let p50 = f.fgMs.percentile(0.5), let p = f.fgMs.percentile(0.95) else {
                        lines.append("\(c.rawValue) \(layout.rawValue) \(policy): no results")
                        if c == .cellular && policy == "anticipatory" { held = false }
                        continue
                    }
                    p95["\(layout.rawValue) \(policy)"] = p
                    let share = f.bgBytesPerSecond / unused
                    // The goal judges FG at the same moments of the trace as FG alone where the
                    // requests pair (see PairedExcess), else the p95s as they are.
                    let paired = Self.pairedExcess(alone: aloneByTime, other: Self.latenciesByTraceTime(outcomes, variant: Self.variant(c, layout, policy)))
                    let goal = (paired?.p95Ratio ?? p / aloneP95) <= 1.25 && share >= 0.5
                    lines.append(String(format: "%@ %@ %@: FG p50 %.0f ms, p95 %.0f ms (%.2fx alone)%@, BG %.0f B/s (%.0f%% of unused capacity): goal %@",
                                        c.rawValue, layout.rawValue, policy, p50, p, p / aloneP95, f.fromLog ? "" : " [wire]",
                                        f.bgBytesPerSecond, share * 100, goal ? "met" : "missed") + pairedNote(paired))
                    if let byNetwork = Self.networkLine(outcomes, variant: Self.variant(c, layout, policy)) { lines.append(byNetwork) }
                    if c == .cellular && policy == "anticipatory" {
                        let ok = p <= 2 * aloneP95 && f.bgBytesPerSecond >= 0.1 * Conditions.cellular.upBytesPerSecond
                        held = held && ok
                    }
                }
            }
            if c == .cellular, let a = p95["\(Layout.oneMultisocket.rawValue) anticipatory"],
               let perm = p95["\(Layout.oneMultisocket.rawValue) permissive"] {
                let ok = perm >= 3 * a
                held = held && ok
                lines.append(String(format: "cellular one-multisocket: permissive FG p95 is %.1fx anticipatory's%@", perm / a, ok ? "" : " (expected at least 3x)"))
            }
        }
        lines += BGScaleExperiment.estimateLines(outcomes.filter { Self.isDelayTargetTwoApps($0.plan.variant) })
        return Verdict(held: held, lines: lines)
    }

    /// Whether `variant` runs delay-target, with or without parameters (`--bg-policy
    /// delay-target:path-probe-rtts=20` names it `….two-apps.delay-target-path-probe-rtts-20`), in
    /// the two-apps layout: the variants whose link estimates the run reports and plots.
    static func isDelayTargetTwoApps(_ variant: String) -> Bool {
        let parts = variant.split(separator: ".", maxSplits: 2).map(String.init)
        return parts.count == 3 && parts[1] == Layout.twoApps.rawValue
            && (parts[2] == "delay-target" || parts[2].hasPrefix("delay-target-"))
    }

    /// The policy x layout x condition table of docs/scheduling.md, from this run's figures
    /// (`scheduling-table.md` in the run directory), and the delay-target estimate plots.
    public func experimentPlots(_ outcomes: [TrialOutcome], directory: String) throws -> [String] {
        var md = "<!-- intnw-lab experiment bgpolicy: \(outcomes.count) trials -->\n"
        for c in Condition.allCases {
            guard let alone = Self.figures(outcomes, variant: Self.variant(c, nil, nil)), let aloneP95 = alone.fgMs.percentile(0.95),
                  let tr = outcomes.first(where: { $0.plan.variant.hasPrefix(c.rawValue + ".") })?.plan.trace else { continue }
            let duration = outcomes.first { $0.plan.variant.hasPrefix(c.rawValue + ".") }?.plan.durationSeconds ?? 0
            let unused = Self.uplinkCapacity(tr, seconds: duration) - 76
            md += String(format: "\n%@: FG alone p50 %.0f ms, p95 %.0f ms; uplink capacity %.0f B/s\n\n", c.rawValue,
                         alone.fgMs.percentile(0.5) ?? 0, aloneP95, unused + 76)
            md += "| policy | FG p50 (ms) | FG p95 (ms), x alone | FG at the same trace times as FG alone: added median / p95 (ms) (p95 x alone's) | BG (KB/s, % of capacity FG leaves) |\n|---|---|---|---|---|\n"
            let aloneByTime = Self.latenciesByTraceTime(outcomes, variant: Self.variant(c, nil, nil))
            var policies: [String] = []
            for o in outcomes {
                let parts = o.plan.variant.split(separator: ".", maxSplits: 2).map(String.init)
                if parts.count == 3, parts[0] == c.rawValue, !policies.contains(parts[2]) { policies.append(parts[2]) }
            }
            for policy in policies {
                let figs = Layout.allCases.map { Self.figures(outcomes, variant: "\(c.rawValue).\($0.rawValue).\(policy)") }
                func cell(_ f: (Figures) -> String) -> String { figs.map { $0.map(f) ?? "-" }.joined(separator: " / ") }
                let p50 = cell { String(format: "%.0f", $0.fgMs.percentile(0.5) ?? 0) }
                let p95 = cell { String(format: "%.0f", $0.fgMs.percentile(0.95) ?? 0) }
                let x = cell { String(format: "%.2f", ($0.fgMs.percentile(0.95) ?? 0) / aloneP95) }
                let bg = cell { String(format: "%.1f", $0.bgBytesPerSecond / 1000) }
                let share = cell { String(format: "%.0f%%", $0.bgBytesPerSecond / unused * 100) }
                let paired = Layout.allCases.map { layout -> String in
                    let other = Self.latenciesByTraceTime(outcomes, variant: "\(c.rawValue).\(layout.rawValue).\(policy)")
                    return Self.pairedExcess(alone: aloneByTime, other: other).map { String(format: "%.0f / %.0f (%.2fx)", $0.p50Ms, $0.p95Ms, $0.p95Ratio) } ?? "-"
                }.joined(separator: ", ")
                md += "| \(policy) | \(p50) | \(p95) (\(x)x) | \(paired) | \(bg) (\(share)) |\n"
            }
        }
        md += "\nCells: two apps / two multisockets / one multisocket.\n"
        try md.write(toFile: "\(directory)/scheduling-table.md", atomically: true, encoding: .utf8)
        var out: [String] = []
        for o in outcomes where o.plan.trial == 1 && Self.isDelayTargetTwoApps(o.plan.variant) {
            guard let start = try? ReplayStartRecord.read(from: o.directory) else { continue }
            let files = BackgroundEstimates.samples(dir: o.directory, startMonotonicNs: start.monotonicNs)
            out += try BackgroundEstimates.plots(files, trace: o.plan.trace, spec: TopologySpec(prefix: o.plan.prefix),
                                                 durationSeconds: o.plan.durationSeconds, directory: directory, name: o.plan.variant)
        }
        return out
    }

    public func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric] {
        var m: [KeyMetric] = []
        for layout in Layout.allCases {
            let v = Self.variant(.cellular, layout, "anticipatory")
            guard let f = Self.figures(outcomes, variant: v) else { continue }
            if let p = f.fgMs.percentile(0.95) {
                m.append(KeyMetric(name: "bgpolicy.\(v).fg_p95_ms", value: p, unit: "ms", better: .lower))
            }
            m.append(KeyMetric(name: "bgpolicy.\(v).bg_Bps", value: f.bgBytesPerSecond, unit: "B/s", better: .higher))
        }
        return m
    }
}
