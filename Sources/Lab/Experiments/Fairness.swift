import Analysis
import Emulation
import Foundation
import ToyProtocol

/// Goals 2 and 3 of the multi-app design note, as scaling runs. Every app is one process with an FG
/// part (small requests) and a BG part (bulk chunks): the note's worst case, all apps using the network
/// heavily. Setups, for n = 1...N apps:
/// - `plain`: n plain-TCP apps (the reference curve for both goals);
/// - `intnw`: n IntNW apps (goal 2: should track `plain`);
/// - `mixed`: 1 plain-TCP app + (n-1) IntNW apps (goal 3: the plain app must not do worse than in `plain`).
public struct FairnessExperiment: Experiment {
    public let name = "fairness"
    public let version = 1
    public let summary = "n = 1..N apps: plain TCP vs IntNW vs 1 plain + (n-1) IntNW; latency, throughput, Jain's index vs n"
    public let expectation = "IntNW curves track the plain-TCP curves (per-app FG median within 1.5x and BG throughput within 0.67-1.5x of plain at every n) and the plain app among IntNW apps does no worse than among plain apps (FG median at most 1.5x, BG throughput at least 0.67x)"

    public init() {}

    public enum Setup: String, CaseIterable, Sendable {
        case plain, intnw, mixed
    }

    func duration(_ o: ExperimentOptions) -> Double { o.quick ? 12 : 25 }

    /// The n values to run: 1...N.
    func counts(_ o: ExperimentOptions) -> [Int] { Array(1...max(1, o.maxApps)) }

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        let trials = Double(counts(o).count * Setup.allCases.count * o.trials)
        return trials * (duration(o) + 4) + 10
    }

    /// Shared WiFi (cellular present but slower): apps of either kind end up competing on WiFi.
    static let trace: Trace = {
        var t = Trace.constant(wifi: Conditions.wifi, cellular: Conditions.cellular, durationSeconds: 600)
        t.source = "constant: WiFi 1250000/625000 B/s 40 ms, cellular 128000/64000 B/s 200 ms"
        return t
    }()

    static func variants(_ setup: Setup, apps n: Int) -> [ToyVariant] {
        switch setup {
        case .plain: return Array(repeating: .plain, count: n)
        case .intnw: return Array(repeating: .intnw, count: n)
        case .mixed: return [.plain] + Array(repeating: .intnw, count: n - 1)
        }
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        var plans: [TrialPlan] = []
        for n in counts(o) {
            for setup in Setup.allCases {
                for trial in 1...o.trials {
                    var apps: [AppLaunch] = []
                    for (k, variant) in Self.variants(setup, apps: n).enumerated() {
                        let id = UInt32(k + 1)
                        let process = "app\(id)-\(variant.rawValue)"
                        apps.append(AppLaunch(name: "\(process).fg", kind: .fgClient, variant: variant, appId: 2 * id - 1,
                                              arguments: ["--interval", "0.5", "--request-bytes", "128"], process: process))
                        apps.append(AppLaunch(name: "\(process).bg", kind: .bgClient, variant: variant, appId: 2 * id,
                                              arguments: ["--chunk-bytes", "65536", "--depth", "2"], process: process))
                    }
                    var plan = TrialPlan(experiment: name, variant: "\(setup.rawValue)-n\(n)", trial: trial,
                                         trace: Self.trace, durationSeconds: duration(o), apps: apps)
                    plan.apply(o)
                    plans.append(plan)
                }
            }
        }
        return plans
    }

    /// Per-trial numbers the verdict and the plots use.
    struct Point {
        var setup: Setup
        var n: Int
        /// Mean over the trial's apps of each app's FG median latency, ms.
        var fgMedianMs: Double?
        /// Mean BG uplink throughput per app, bytes/s.
        var bgPerAppBytesPerSecond: Double?
        /// Jain's index of BG throughput across apps.
        var jain: Double?
        /// The plain app's FG median and BG throughput (setups plain and mixed: app 1).
        var plainAppFgMs: Double?
        var plainAppBgBytesPerSecond: Double?
    }

    static func point(_ o: TrialOutcome) -> Point? {
        guard let a = o.analysis else { return nil }
        let parts = o.plan.variant.split(separator: "-")
        guard parts.count == 2, let setup = Setup(rawValue: String(parts[0])), let n = Int(parts[1].dropFirst()) else { return nil }
        let fg = a.result.apps.filter { $0.role == .fg }.compactMap { $0.fg?.latencyMs?.p50Ms }
        let bg = a.result.apps.filter { $0.role == .bg }.map { app -> Double in
            app.throughput.activeSeconds > 0 ? Double(app.throughput.uplinkBytes) / app.throughput.activeSeconds : 0
        }
        let first = a.result.apps.filter { $0.name.hasPrefix("app1-") }
        return Point(setup: setup, n: n,
                     fgMedianMs: fg.isEmpty ? nil : fg.reduce(0, +) / Double(fg.count),
                     bgPerAppBytesPerSecond: bg.isEmpty ? nil : bg.reduce(0, +) / Double(bg.count),
                     jain: Statistics.jainIndex(bg),
                     plainAppFgMs: first.first { $0.role == .fg && $0.variant == .plain }?.fg?.latencyMs?.p50Ms,
                     plainAppBgBytesPerSecond: first.first { $0.role == .bg && $0.variant == .plain }.map {
                         $0.throughput.activeSeconds > 0 ? Double($0.throughput.uplinkBytes) / $0.throughput.activeSeconds : 0
                     })
    }

    /// Mean with CI of `metric` per (setup, n).
    static func curve(_ points: [Point], _ setup: Setup, _ metric: (Point) -> Double?) -> [(apps: Int, value: MeanWithCI)] {
        Set(points.filter { $0.setup == setup }.map(\.n)).sorted().compactMap { n in
            let xs = points.filter { $0.setup == setup && $0.n == n }.compactMap(metric)
            return Statistics.meanWithCI(xs).map { (n, $0) }
        }
    }

    public func evaluate(_ outcomes: [TrialOutcome], options: ExperimentOptions) -> Verdict {
        let points = outcomes.compactMap(Self.point)
        var held = !points.isEmpty
        var lines: [String] = []
        func value(_ setup: Setup, _ n: Int, _ m: (Point) -> Double?) -> Double? {
            Self.curve(points, setup, m).first { $0.apps == n }?.value.mean
        }
        for n in Set(points.map(\.n)).sorted() {
            let pf = value(.plain, n, \.fgMedianMs), pb = value(.plain, n, \.bgPerAppBytesPerSecond)
            let f = value(.intnw, n, \.fgMedianMs), b = value(.intnw, n, \.bgPerAppBytesPerSecond)
            var goal2 = "n/a"
            if let pf, let pb, let f, let b, pb > 0 {
                let ok = f <= 1.5 * pf && b >= 0.67 * pb && b <= 1.5 * pb
                held = held && ok
                goal2 = String(format: "IntNW FG %.0f ms vs plain %.0f ms, BG %.1f vs %.1f KB/s per app: %@", f, pf, b / 1000, pb / 1000, ok ? "tracks" : "differs")
            } else { held = false }
            var goal3 = "n/a"
            if let pf = value(.plain, n, \.plainAppFgMs), let pb = value(.plain, n, \.plainAppBgBytesPerSecond),
               let mf = value(.mixed, n, \.plainAppFgMs), let mb = value(.mixed, n, \.plainAppBgBytesPerSecond), pb > 0 {
                let ok = mf <= 1.5 * pf && mb >= 0.67 * pb
                held = held && ok
                goal3 = String(format: "plain app among IntNW FG %.0f ms (alone-kind %.0f), BG %.1f KB/s (%.1f): %@", mf, pf, mb / 1000, pb / 1000, ok ? "not degraded" : "degraded")
            } else { held = false }
            lines.append("n=\(n): \(goal2); \(goal3)")
        }
        return Verdict(held: held, lines: lines)
    }

    public func experimentPlots(_ outcomes: [TrialOutcome], directory: String) throws -> [String] {
        try Self.plots(outcomes, to: directory)
    }

    /// Fairness plots: FG latency, BG throughput per app and Jain's index against n, one curve per setup.
    public static func plots(_ outcomes: [TrialOutcome], to directory: String) throws -> [String] {
        let points = outcomes.compactMap(point)
        var files: [String] = []
        let specs: [(String, String, String, (Point) -> Double?)] = [
            ("fairness_fg_latency.svg", "FG median latency per app vs number of apps", "latency (ms)", { $0.fgMedianMs }),
            ("fairness_bg_throughput.svg", "BG throughput per app vs number of apps", "throughput (KB/s)", { $0.bgPerAppBytesPerSecond.map { $0 / 1000 } }),
            ("fairness_jain.svg", "Jain's fairness index of BG throughput vs number of apps", "Jain's index", { $0.jain }),
            ("fairness_plain_app_fg_latency.svg", "The plain-TCP app's FG median latency (goal 3)", "latency (ms)", { $0.plainAppFgMs }),
        ]
        try FileManager.default.createDirectory(atPath: "\(directory)/plots", withIntermediateDirectories: true)
        for (file, title, y, metric) in specs {
            let series = Setup.allCases.map { s in (name: Self.label(s), points: curve(points, s, metric)) }.filter { !$0.points.isEmpty }
            guard !series.isEmpty else { continue }
            try StandardPlots.renderMetricVsApps(title: title, yLabel: y, series: series, to: "\(directory)/plots/\(file)")
            files.append("plots/\(file)")
        }
        return files
    }

    static func label(_ s: Setup) -> String {
        switch s {
        case .plain: return "n plain-TCP apps"
        case .intnw: return "n IntNW apps"
        case .mixed: return "1 plain + (n-1) IntNW"
        }
    }
}
