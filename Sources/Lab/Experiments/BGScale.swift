import Analysis
import Emulation
import Foundation

/// One FG app and n BG apps, each its own process, on the cellular-only 3G link (n = 1, 2, 4, 8 up
/// to `--max-apps`), plus the FG app alone: whether FG stays unharmed and BG still gets the spare
/// uplink however many BG processes share it (the interface-wide BG budget of docs/scheduling.md).
public struct BGScaleExperiment: Experiment {
    public let name = "bgscale"
    public let version = 1
    public let summary = "1 FG app + n BG apps (processes) on 3G: FG latency and total BG throughput vs n"
    public let expectation = "at every n, FG p95 (as the app saw it) is within 1.25x of FG alone and the BG apps together move at least 60% of the uplink FG leaves unused"

    public init() {}

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

    static func variant(_ n: Int?) -> String { n.map { "bg\($0)" } ?? "fg-alone" }

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        Double((counts(o).count + 1) * o.trials) * (timing(o).duration + 12) + 5
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        let t = timing(o)
        let trace = Conditions.cellularOnly(seconds: t.duration + 30)
        let fgArgs = ["--interval", "1", "--request-bytes", "128"]
        let bgArgs = ["--chunk-bytes", "262144", "--depth", "4"]
        var plans: [TrialPlan] = []
        for n in [nil] + counts(o).map(Optional.some) {
            for trial in 1...o.trials {
                var apps = [AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1, startDelaySeconds: t.fgStart, arguments: fgArgs)]
                for k in 0..<(n ?? 0) {
                    apps.append(AppLaunch(name: "bg\(k + 1)", kind: .bgClient, variant: .intnw, appId: UInt32(k + 2), arguments: bgArgs))
                }
                var plan = TrialPlan(experiment: name, variant: Self.variant(n), trial: trial, trace: trace,
                                     durationSeconds: t.duration, apps: apps)
                plan.notifyDelaySeconds = 0
                plan.apply(o)
                plans.append(plan)
            }
        }
        return plans
    }

    public func evaluate(_ outcomes: [TrialOutcome], options o: ExperimentOptions) -> Verdict {
        var lines: [String] = []
        var held = true
        let t = timing(o)
        let capacity = Conditions.cellular.upBytesPerSecond
        guard let alone = BGPolicyExperiment.figures(outcomes, variant: Self.variant(nil)), let aloneP95 = alone.fgMs.percentile(0.95) else {
            return Verdict(held: false, lines: ["no FG-alone baseline"])
        }
        // FG: 128 + 24 header bytes a second, plus TCP/IP headers; what is left is BG's to take.
        let fgBytesPerSecond = Double(128 + 24 + 52)
        let spare = capacity - fgBytesPerSecond
        lines.append(String(format: "FG alone: p50 %.0f ms, p95 %.0f ms; uplink %.0f B/s, spare for BG %.0f B/s (BG counted over the whole %.0f s, FG from %.0f s)",
                            alone.fgMs.percentile(0.5) ?? 0, aloneP95, capacity, spare, t.duration, t.fgStart))
        for n in counts(o) {
            guard let f = BGPolicyExperiment.figures(outcomes, variant: Self.variant(n)), let p50 = f.fgMs.percentile(0.5),
                  let p95 = f.fgMs.percentile(0.95) else {
                held = false
                lines.append("n = \(n): no results")
                continue
            }
            let share = f.bgBytesPerSecond / spare
            let ok = p95 <= 1.25 * aloneP95 && share >= 0.6
            held = held && ok
            lines.append(String(format: "n = %d BG apps: FG p50 %.0f ms, p95 %.0f ms (%.2fx alone)%@, BG total %.0f B/s (%.0f%% of spare): %@",
                                n, p50, p95, p95 / aloneP95, f.fromLog ? "" : " [wire]", f.bgBytesPerSecond, share * 100,
                                ok ? "met" : "missed"))
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
