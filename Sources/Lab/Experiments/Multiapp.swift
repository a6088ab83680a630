import Analysis
import Emulation
import Foundation

/// Goal 1 of the multi-app design note: FG/BG enforced across apps, across multisockets in one app, and
/// within one multisocket. One app sends only FG, one only BG; the FG app starts once BG traffic is
/// flowing. FG should start slow (BG bytes already queued) and quickly improve, and BG should keep
/// using what FG leaves of the link. An FG-alone trial on the same link measures "FG alone" in the
/// same run.
public struct MultiappExperiment: Experiment {
    public let name = "multiapp"
    public let version = 2
    public let summary = "FG app joins a busy BG app on cellular: two apps, two multisockets in one app, one multisocket (+ FG alone)"
    public let expectation = """
        premise: the uplink is loaded (BG ≥ 50% of its capacity in the 3 s before FG's first request). In every layout and trial, \
        with app-perceived FG latency (the FG app's log: submit to reply; unanswered = infinitely slow): the first FG request is slow \
        (≥ 1.5× FG-alone p50), FG is back within 1.25× FG-alone p50 within 3 requests, from then on FG p95 ≤ 1.25× FG-alone p95, \
        and BG (its bytes on the wire) keeps ≥ 50% of the uplink capacity FG leaves unused while FG runs
        """

    public init() {}

    /// The three layouts of the multi-app design (docs/scheduling.md).
    public enum Layout: String, CaseIterable, Sendable {
        case twoApps = "two-apps"
        case twoMultisockets = "two-multisockets"
        case oneMultisocket = "one-multisocket"

        /// The FG app (id 1, starting at `fgStart`) and the BG app (id 2) over IntNW, placed as this
        /// layout says: separate processes, one process with two multisockets, or one multisocket.
        func apps(fgStart: Double, fgArgs: [String], bgArgs: [String]) -> [AppLaunch] {
            var fg = AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1,
                               startDelaySeconds: fgStart, arguments: fgArgs)
            var bg = AppLaunch(name: "bg", kind: .bgClient, variant: .intnw, appId: 2, arguments: bgArgs)
            if self != .twoApps {
                fg.process = "fgbg"
                bg.process = "fgbg"
                fg.shareMultisocket = self == .oneMultisocket
                bg.shareMultisocket = fg.shareMultisocket
            }
            return [fg, bg]
        }
    }

    /// The reference variant: the FG app alone on the same link.
    public static let fgAlone = "fg-alone"

    struct Timing {
        var fgStart: Double
        var duration: Double
    }

    func timing(_ o: ExperimentOptions) -> Timing {
        o.quick ? Timing(fgStart: 5, duration: 20) : Timing(fgStart: 10, duration: 50)
    }

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        // Per trial: the apps' duration plus about 5 s to bring up, stop, tear down and analyse.
        Double((Layout.allCases.count + 1) * o.trials) * (timing(o).duration + 5) + 5
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        let t = timing(o)
        var plans: [TrialPlan] = []
        let fgArgs = ["--interval", "1", "--request-bytes", "128"]
        let bgArgs = ["--chunk-bytes", "262144", "--depth", "4"]
        func plan(_ variant: String, _ trial: Int, _ apps: [AppLaunch]) -> TrialPlan {
            var p = TrialPlan(experiment: name, variant: variant, trial: trial,
                              trace: Conditions.cellularOnly(seconds: t.duration + 30),
                              durationSeconds: t.duration, apps: apps)
            p.notifyDelaySeconds = 0 // WiFi is absent from the start: the OS knows.
            p.apply(o)
            return p
        }
        for layout in Layout.allCases {
            for trial in 1...o.trials {
                plans.append(plan(layout.rawValue, trial, layout.apps(fgStart: t.fgStart, fgArgs: fgArgs, bgArgs: bgArgs)))
            }
        }
        for trial in 1...o.trials {
            plans.append(plan(Self.fgAlone, trial, [AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1,
                                                              startDelaySeconds: t.fgStart, arguments: fgArgs)]))
        }
        return plans
    }

    /// Uplink capacity of the cellular link, bytes per second.
    static let uplinkCapacity = Conditions.cellular.upBytesPerSecond

    // MARK: - Figures and verdict

    /// What one trial measured, in the terms of the verdict.
    struct TrialFigures: Equatable {
        /// App-perceived FG latency per request in submit order (ms); +∞ for unanswered requests.
        var fgMs: [Double]
        /// Submit time of each request, seconds since the trial's origin.
        var fgSendSeconds: [Double]
        /// Wire latency of each request (ms), nil when the wire did not see it answered.
        var fgWireMs: [Double?]
        /// BG and FG app bytes sent (client → server) per bin, and the bin width in seconds.
        var bgUplinkBins: [UInt64]
        var fgUplinkBins: [UInt64]
        var binSeconds: Double

        /// Bytes per second of `bins` over [from, to) seconds (bins overlapping the window).
        func rate(_ bins: [UInt64], from: Double, to: Double) -> Double? {
            guard to > from else { return nil }
            let lo = max(0, Int((from / binSeconds).rounded(.down))), hi = Int((to / binSeconds).rounded(.up))
            guard hi > lo else { return nil }
            let sum = (lo ..< hi).reduce(UInt64(0)) { $0 + ($1 < bins.count ? bins[$1] : 0) }
            return Double(sum) / (Double(hi - lo) * binSeconds)
        }
    }

    /// The FG app's requests as it logged them (app-perceived), and both apps' wire bytes. nil
    /// when the FG app left no log (the verdict needs the app's view).
    static func figures(_ a: TrialAnalysis) -> TrialFigures? {
        let logged = a.appLatencies.filter { $0.app == "fg" }.sorted { $0.sendNanoseconds < $1.sendNanoseconds }
        guard !logged.isEmpty else { return nil }
        let origin = a.result.originNanoseconds
        let up = a.series.filter { $0.kind == .app && $0.direction == "uplink" }
        let width = Double(up.first?.binWidthNanoseconds ?? 100_000_000) / 1e9
        return TrialFigures(
            fgMs: logged.map { $0.latencyNanoseconds.map { Double($0) / 1e6 } ?? .infinity },
            fgSendSeconds: logged.map { $0.sendNanoseconds >= origin ? Double($0.sendNanoseconds - origin) / 1e9 : 0 },
            fgWireMs: logged.map { $0.wireLatencyNanoseconds.map { Double($0) / 1e6 } },
            bgUplinkBins: up.first { $0.name == "bg" }?.bytesPerBin ?? [],
            fgUplinkBins: up.first { $0.name == "fg" }?.bytesPerBin ?? [],
            binSeconds: width)
    }

    /// FG alone: app-perceived p50 and p95 over every request of every FG-alone trial.
    struct Reference: Equatable {
        var p50Ms: Double
        var p95Ms: Double
        var requests: Int
    }

    static func reference(_ alone: [TrialFigures]) -> Reference? {
        let all = alone.flatMap(\.fgMs)
        guard let p50 = all.percentile(0.5), let p95 = all.percentile(0.95) else { return nil }
        return Reference(p50Ms: p50, p95Ms: p95, requests: all.count)
    }

    /// One layout trial against the FG-alone reference: held or not, and the numbers.
    static func judge(_ f: TrialFigures, reference r: Reference, capacity: Double = uplinkCapacity) -> (held: Bool, line: String) {
        func ms(_ v: Double) -> String { v.isFinite ? String(format: "%.0f ms", v) : "unanswered" }
        func kBps(_ v: Double) -> String { String(format: "%.1f kB/s", v / 1000) }
        guard let first = f.fgMs.first, let firstSend = f.fgSendSeconds.first else { return (false, "no FG request logged") }
        var parts: [String] = []
        var held = true
        // Premise: the link is loaded, BG flowing, when FG starts.
        let before = f.rate(f.bgUplinkBins, from: max(0, firstSend - 3), to: firstSend) ?? 0
        let premise = before >= 0.5 * capacity
        held = held && premise
        parts.append("premise (link loaded, BG flowing): BG \(kBps(before)) in the 3 s before FG's first request, needs ≥ \(kBps(0.5 * capacity)): \(premise ? "met" : "NOT MET")")
        // 1. The first request is slow.
        let slow = first >= 1.5 * r.p50Ms
        held = held && slow
        parts.append("first FG request \(ms(first)) app-perceived (wire \(f.fgWireMs.first.flatMap { $0 }.map(ms) ?? "–")), needs ≥ 1.5 × \(ms(r.p50Ms)) = \(ms(1.5 * r.p50Ms)): \(slow ? "yes" : "NO")")
        // 2. Back within 1.25× FG-alone p50 within 3 requests.
        let target = 1.25 * r.p50Ms
        let recovered = (1 ..< min(4, f.fgMs.count)).first { f.fgMs[$0] <= target }
        held = held && recovered != nil
        if let k = recovered {
            parts.append("back within 1.25 × FG-alone p50 = \(ms(target)) at request \(k + 1) (\(ms(f.fgMs[k])), needs ≤ 3 requests after the first): yes")
        } else {
            parts.append("not back within \(ms(target)) in the 3 requests after the first (\(f.fgMs.dropFirst().prefix(3).map(ms).joined(separator: ", "))): NO")
        }
        // 3. From then on: FG p95 and BG's share of the spare uplink.
        let from = recovered ?? 1
        let rest = Array(f.fgMs[min(from, f.fgMs.count)...])
        if let p95 = rest.percentile(0.95) {
            let ok = p95 <= 1.25 * r.p95Ms
            held = held && ok
            let unanswered = rest.filter { !$0.isFinite }.count
            parts.append("then FG p95 \(ms(p95)) over \(rest.count) requests\(unanswered > 0 ? " (\(unanswered) unanswered)" : ""), needs ≤ 1.25 × FG-alone p95 \(ms(r.p95Ms)) = \(ms(1.25 * r.p95Ms)): \(ok ? "yes" : "NO")")
        } else {
            held = false
            parts.append("no FG requests after recovery: NO")
        }
        let start = f.fgSendSeconds[min(from, f.fgSendSeconds.count - 1)]
        let end = f.fgSendSeconds.last! + 1
        if let bg = f.rate(f.bgUplinkBins, from: start, to: end) {
            let fg = f.rate(f.fgUplinkBins, from: start, to: end) ?? 0
            let spare = max(capacity - fg, 0)
            let share = spare > 0 ? bg / spare : 0
            let ok = share >= 0.5
            held = held && ok
            parts.append("BG \(kBps(bg)) on the wire while FG ran (\(String(format: "%.1f", start))–\(String(format: "%.1f", end)) s), spare uplink \(kBps(spare)) → \(String(format: "%.0f", share * 100))%, needs ≥ 50%: \(ok ? "yes" : "NO")")
        } else {
            held = false
            parts.append("no window to measure BG while FG ran: NO")
        }
        return (held, parts.joined(separator: "; "))
    }

    public func evaluate(_ outcomes: [TrialOutcome], options: ExperimentOptions) -> Verdict {
        var lines: [String] = []
        var held = true
        let alone = outcomes.filter { $0.plan.variant == Self.fgAlone }.compactMap { $0.analysis.flatMap(Self.figures) }
        guard let r = Self.reference(alone) else {
            return Verdict(held: false, lines: ["no FG-alone reference (the fg-alone trials have no FG app log): cannot judge"])
        }
        lines.append(String(format: "FG alone (%d requests, app-perceived): p50 %.0f ms, p95 %.0f ms", r.requests, r.p50Ms, r.p95Ms))
        for layout in Layout.allCases {
            let trials = outcomes.filter { $0.plan.variant == layout.rawValue }
            if trials.isEmpty {
                held = false
                lines.append("\(layout.rawValue): no trial")
            }
            for o in trials {
                guard let a = o.analysis else {
                    held = false
                    lines.append("\(layout.rawValue) trial \(o.plan.trial): no analysis")
                    continue
                }
                guard let f = Self.figures(a) else {
                    held = false
                    lines.append("\(layout.rawValue) trial \(o.plan.trial): the FG app logged no requests")
                    continue
                }
                let (ok, line) = Self.judge(f, reference: r)
                held = held && ok
                lines.append("\(layout.rawValue) trial \(o.plan.trial): \(ok ? "HELD" : "NOT HELD"): \(line)")
            }
        }
        return Verdict(held: held, lines: lines)
    }

    /// The figures a paper would print, every variant on one plot: FG latency over time as the app
    /// felt it (trial 1 of each variant; unanswered requests drawn at the top of the axis), and BG
    /// throughput over time (1 s bins of the BG app's bytes on the wire) on a log axis, so
    /// starved and healthy BG both show.
    public func experimentPlots(_ outcomes: [TrialOutcome], directory: String) throws -> [String] {
        let variants = Layout.allCases.map(\.rawValue) + [Self.fgAlone]
        var fgSeries: [PlotSeries] = [], bgSeries: [PlotSeries] = []
        var top = 0.0
        for v in variants {
            guard let o = outcomes.filter({ $0.plan.variant == v }).sorted(by: { $0.plan.trial < $1.plan.trial }).first,
                  let f = o.analysis.flatMap(Self.figures) else { continue }
            top = max(top, f.fgMs.filter(\.isFinite).max() ?? 0)
            fgSeries.append(PlotSeries(name: "\(v) (trial \(o.plan.trial))", x: f.fgSendSeconds, y: f.fgMs, style: .linePoints))
            if v != Self.fgAlone {
                let perSecond = stride(from: 0.0, to: Double(f.bgUplinkBins.count) * f.binSeconds, by: 1).map {
                    (x: $0, y: (f.rate(f.bgUplinkBins, from: $0, to: $0 + 1) ?? 0) / 1000)
                }
                bgSeries.append(PlotSeries(name: "\(v) (trial \(o.plan.trial))", x: perSecond.map(\.x), y: perSecond.map(\.y), style: .steps))
            }
        }
        guard !fgSeries.isEmpty else { return [] }
        // Unanswered requests at the top of the axis instead of dropped.
        let ceiling = max(top * 1.1, 1)
        fgSeries = fgSeries.map { s in PlotSeries(name: s.name, x: s.x, y: s.y.map { $0.isFinite ? $0 : ceiling }, style: s.style) }
        try FileManager.default.createDirectory(atPath: "\(directory)/plots", withIntermediateDirectories: true)
        let renderer = PlotRenderers.best()
        var fg = PlotSpec(title: "FG latency over time, app-perceived (its log: submit to reply), every variant",
                          xLabel: "time since capture start (s)", yLabel: "FG request latency, app-perceived (ms)", series: fgSeries)
        fg.logY = top > 0 && top / max(fgSeries.flatMap(\.y).filter { $0 > 0 }.min() ?? top, 1) > 20
        var files: [String] = []
        try renderer.renderSVG(fg, to: "\(directory)/plots/multiapp_fg_latency_all.svg")
        files.append("plots/multiapp_fg_latency_all.svg")
        if !bgSeries.isEmpty {
            var bg = PlotSpec(title: "BG throughput over time (its bytes on the wire, 1 s bins), every variant, log axis",
                              xLabel: "time since capture start (s)", yLabel: "BG uplink (kB/s, log scale)", series: bgSeries)
            bg.logY = true
            try renderer.renderSVG(bg, to: "\(directory)/plots/multiapp_bg_throughput_all.svg")
            files.append("plots/multiapp_bg_throughput_all.svg")
        }
        return files
    }

    /// Per variant, pooled over its trials: app-perceived FG p95 (requests after the first; the
    /// unanswered ones are counted by `fg_answered`; samples: the requests), wire FG p50 (samples:
    /// the requests), BG rate on the wire while FG runs (samples: one rate per trial), FG requests
    /// answered (samples: one count per trial).
    public func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric] {
        var out: [KeyMetric] = []
        // FG alone is the verdict's reference, not a metric: no BG policy touches it, and its p95
        // (15 requests per trial) moved by 29-43% between runs of the same tree on the loaded machine.
        for variant in Layout.allCases.map(\.rawValue) {
            let figs = outcomes.filter { $0.plan.variant == variant }.compactMap { $0.analysis.flatMap(Self.figures) }
            guard !figs.isEmpty else { continue }
            let app = figs.flatMap { $0.fgMs.dropFirst().filter(\.isFinite) }
            let wire = figs.flatMap { $0.fgWireMs.compactMap { $0 } }
            let perTrial = figs.map { Double($0.fgMs.filter(\.isFinite).count) }
            out.append(KeyMetric(name: "multiapp.\(variant).fg_answered", value: perTrial.reduce(0, +) / Double(figs.count),
                                 unit: "requests", better: .higher, samples: perTrial))
            if let p95 = app.percentile(0.95) {
                out.append(KeyMetric(name: "multiapp.\(variant).fg_p95_ms", value: p95, unit: "ms", better: .lower, samples: app))
            }
            if let p50 = wire.percentile(0.5) {
                out.append(KeyMetric(name: "multiapp.\(variant).fg_wire_p50_ms", value: p50, unit: "ms", better: .lower, samples: wire))
            }
            // One rate per trial: most seconds while FG runs carry no BG at all, so per-second
            // samples (ties at zero) hide a BG regression from the rank test.
            let rates = figs.compactMap { f -> Double? in
                guard let s = f.fgSendSeconds.first, let e = f.fgSendSeconds.last else { return nil }
                return f.rate(f.bgUplinkBins, from: s, to: e + 1)
            }
            if !rates.isEmpty {
                out.append(KeyMetric(name: "multiapp.\(variant).bg_bytes_per_s", value: rates.reduce(0, +) / Double(rates.count),
                                     unit: "B/s", better: .higher, samples: rates))
            }
        }
        return out
    }
}
