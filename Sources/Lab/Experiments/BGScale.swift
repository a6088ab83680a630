import Analysis
import Emulation
import Foundation

/// One FG app and n BG apps, each its own process, on the cellular-only 3G link (n = 1, 2, 4, 8 up
/// to `--max-apps`), plus the FG app alone: whether FG stays unharmed and BG still gets the spare
/// capacity however many BG processes share it (the interface-wide BG budget of docs/scheduling.md).
/// Both directions: `up` (BG uploads 256 KB chunks, FG requests get 64-byte replies) and `down`
/// (BG apps send header-only chunks the server answers with 256 KB acks, so BG downloads; FG
/// replies are 16 KB, large enough to meet BG in the downlink queue).
public struct BGScaleExperiment: Experiment {
    public let name = "bgscale"
    public let version = 1
    public let summary = "1 FG app + n BG apps (processes) on 3G, BG uploading and downloading: FG latency and total BG throughput vs n"
    public let expectation = "in both directions and at every n, FG p95 (as the app saw it) is within 1.25x of FG alone and the BG apps together move at least 60% of the capacity FG leaves unused in BG's direction"

    public init() {}

    public enum Direction: String, CaseIterable, Sendable {
        case up, down
    }

    struct Timing {
        var fgStart: Double
        var duration: Double
    }

    func timing(_ o: ExperimentOptions) -> Timing {
        o.quick ? Timing(fgStart: 3, duration: 30) : Timing(fgStart: 3, duration: 60)
    }

    /// The n values: 1, 2, 4, 8, ... up to `--max-apps`.
    func counts(_ o: ExperimentOptions) -> [Int] {
        var out: [Int] = []
        var n = 1
        while n <= max(1, o.maxApps) {
            out.append(n)
            n *= 2
        }
        return out
    }

    static func variant(_ d: Direction, _ n: Int?) -> String { "\(d.rawValue).\(n.map { "bg\($0)" } ?? "fg-alone")" }

    static let chunkBytes = 262_144
    static let downFGReplyBytes = 16_384

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        Double(Direction.allCases.count * (counts(o).count + 1) * o.trials) * (timing(o).duration + 12) + 5
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        let t = timing(o)
        let trace = Conditions.cellularOnly(seconds: t.duration + 30)
        let fgArgs = ["--interval", "1", "--request-bytes", "128"]
        var plans: [TrialPlan] = []
        for d in Direction.allCases {
            let bgArgs = ["--chunk-bytes", d == .up ? String(Self.chunkBytes) : "24", "--depth", "4"]
            for n in [nil] + counts(o).map(Optional.some) {
                for trial in 1...o.trials {
                    var apps = [AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1, startDelaySeconds: t.fgStart, arguments: fgArgs)]
                    for k in 0..<(n ?? 0) {
                        apps.append(AppLaunch(name: "bg\(k + 1)", kind: .bgClient, variant: .intnw, appId: UInt32(k + 2), arguments: bgArgs))
                    }
                    var plan = TrialPlan(experiment: name, variant: Self.variant(d, n), trial: trial, trace: trace,
                                         durationSeconds: t.duration, apps: apps)
                    plan.notifyDelaySeconds = 0
                    if d == .down {
                        plan.serverArguments = ["--reply-bytes", String(Self.downFGReplyBytes), "--ack-bytes", String(Self.chunkBytes)]
                    }
                    plan.apply(o)
                    plans.append(plan)
                }
            }
        }
        return plans
    }

    struct Figures {
        var fgMs: [Double]
        var bgBytesPerSecond: Double
    }

    /// FG latencies as the app logged them (the first request left out: it meets whatever BG
    /// queued before FG existed) and BG throughput in `d`'s direction: the client's TCP payload on
    /// its interfaces less the FG app's, over the run's trace window.
    static func figures(_ outcomes: [TrialOutcome], variant: String, direction d: Direction) -> Figures? {
        var fg: [Double] = []
        var rates: [Double] = []
        for o in outcomes where o.plan.variant == variant {
            guard let a = o.analysis else { continue }
            if let logged = BGPolicyExperiment.loggedLatencies(a, app: "fg") {
                fg += logged.keys.sorted().dropFirst().map { logged[$0]! }
            }
            let client = a.result.interfaces.filter { $0.side == "client" }
            let fgApp = a.result.apps.first { $0.name == "fg" }?.throughput
            let total: UInt64, fgBytes: UInt64
            switch d {
            case .up:
                total = client.reduce(0) { $0 + $1.uplinkBytes - min($1.uplinkBytes, $1.retransmittedBytes) }
                fgBytes = fgApp?.uplinkBytes ?? 0
            case .down:
                // Retransmitted bytes are not split by direction; downlink counts them.
                total = client.reduce(0) { $0 + $1.downlinkBytes }
                fgBytes = fgApp?.downlinkBytes ?? 0
            }
            // Inside the trace's window only (`TraceWindow`; the whole capture without a replay record).
            rates.append(TraceWindow.backgroundRate(o, direction: d == .up ? "uplink" : "downlink", totalBytes: total, fgBytes: fgBytes))
        }
        guard !rates.isEmpty || !fg.isEmpty else { return nil }
        return Figures(fgMs: fg, bgBytesPerSecond: rates.isEmpty ? 0 : rates.reduce(0, +) / Double(rates.count))
    }

    public func evaluate(_ outcomes: [TrialOutcome], options o: ExperimentOptions) -> Verdict {
        var lines: [String] = []
        var held = true
        let t = timing(o)
        for d in Direction.allCases {
            let capacity = d == .up ? Conditions.cellular.upBytesPerSecond : Conditions.cellular.downBytesPerSecond
            guard let alone = Self.figures(outcomes, variant: Self.variant(d, nil), direction: d), let aloneP95 = alone.fgMs.percentile(0.95) else {
                held = false
                lines.append("\(d.rawValue): no FG-alone baseline")
                continue
            }
            // What FG itself moves in BG's direction each second (one request a second), with
            // TCP/IP headers: the rest is BG's to take.
            let fgBytes = d == .up ? Double(128 + 52) : Double(Self.downFGReplyBytes) * 1500 / 1448 + 52
            let spare = capacity - fgBytes
            lines.append(String(format: "%@: FG alone p50 %.0f ms, p95 %.0f ms; capacity %.0f B/s, spare for BG %.0f B/s (BG counted over the whole %.0f s, FG from %.0f s)",
                                d.rawValue, alone.fgMs.percentile(0.5) ?? 0, aloneP95, capacity, spare, t.duration, t.fgStart))
            for n in counts(o) {
                guard let f = Self.figures(outcomes, variant: Self.variant(d, n), direction: d), let p50 = f.fgMs.percentile(0.5),
                      let p95 = f.fgMs.percentile(0.95) else {
                    held = false
                    lines.append("\(d.rawValue) n = \(n): no results")
                    continue
                }
                let share = f.bgBytesPerSecond / spare
                let ok = p95 <= 1.25 * aloneP95 && share >= 0.6
                held = held && ok
                lines.append(String(format: "%@ n = %d BG apps: FG p50 %.0f ms, p95 %.0f ms (%.2fx alone), BG total %.0f B/s (%.0f%% of spare): %@",
                                    d.rawValue, n, p50, p95, p95 / aloneP95, f.bgBytesPerSecond, share * 100, ok ? "met" : "missed"))
            }
        }
        lines += Self.estimateLines(outcomes)
        return Verdict(held: held, lines: lines)
    }

    /// The background link estimate's accuracy per trial (informational: which estimate the
    /// policies used is the run's `--estimator`).
    static func estimateLines(_ outcomes: [TrialOutcome]) -> [String] {
        var lines: [String] = []
        for o in outcomes {
            guard let start = try? ReplayStartRecord.read(from: o.directory) else { continue }
            let files = BackgroundEstimates.samples(dir: o.directory, startMonotonicNs: start.monotonicNs)
            for a in BackgroundEstimates.accuracy(files, trace: o.plan.trace, spec: TopologySpec(prefix: o.plan.prefix)) {
                lines.append(String(format: "%@ trial %d: BG estimate %@ %@: time-weighted median |estimate - capacity| / capacity %.0f%% over %.1f s",
                                    o.plan.variant, o.plan.trial, a.side, a.interface, a.medianRelativeError * 100, a.seconds))
            }
        }
        return lines
    }

    public func experimentPlots(_ outcomes: [TrialOutcome], directory: String) throws -> [String] {
        var out: [String] = []
        for o in outcomes where o.plan.trial == 1 {
            guard let start = try? ReplayStartRecord.read(from: o.directory) else { continue }
            let files = BackgroundEstimates.samples(dir: o.directory, startMonotonicNs: start.monotonicNs)
            out += try BackgroundEstimates.plots(files, trace: o.plan.trace, spec: TopologySpec(prefix: o.plan.prefix),
                                                 durationSeconds: o.plan.durationSeconds, directory: directory, name: o.plan.variant)
        }
        return out
    }

    public func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric] { [] }
}
