import Analysis
import Foundation

/// The final table an experiment prints: one row per variant, means across trials. FG latency is
/// given both as the app felt it (its log) and on the wire; BG rate is the app's bytes on the wire
/// over the trial window (docs/analysis.md).
public enum ExperimentTable {
    public static func render(_ r: ExperimentRunner.Result) -> String {
        var rows: [[String]] = [["variant", "trials", "app", "FG app p50 ms", "FG app p95 ms", "FG wire p50 ms", "FG wire p95 ms", "FG answered (wire)", "BG up kB/s"]]
        var variants: [String] = []
        for o in r.outcomes where !variants.contains(o.plan.variant) { variants.append(o.plan.variant) }
        for v in variants {
            let trials = r.outcomes.filter { $0.plan.variant == v }
            let apps = trials.compactMap(\.analysis).flatMap(\.result.apps)
            var names: [String] = []
            for a in apps where !names.contains(a.name) { names.append(a.name) }
            for n in names {
                let mine = apps.filter { $0.name == n }
                func mean(_ xs: [Double]) -> String { xs.isEmpty ? "-" : String(format: "%.0f", xs.reduce(0, +) / Double(xs.count)) }
                let p50 = mine.compactMap { $0.fg?.latencyMs?.p50Ms }
                let p95 = mine.compactMap { $0.fg?.latencyMs?.p95Ms }
                let appP50 = mine.compactMap { $0.fg?.appLatencyMs?.p50Ms }
                let appP95 = mine.compactMap { $0.fg?.appLatencyMs?.p95Ms }
                let answered = mine.compactMap { $0.fg.map { "\($0.replies)/\($0.requests)" } }.joined(separator: ",")
                let bg = mine.compactMap { a -> Double? in
                    guard a.role == .bg else { return nil }
                    return a.throughput.uplinkBytesPerSecond / 1000
                }
                rows.append([v, "\(trials.count)", n, mean(appP50), mean(appP95), mean(p50), mean(p95), answered.isEmpty ? "-" : answered, mean(bg)])
            }
            if names.isEmpty { rows.append([v, "\(trials.count)", "-", "-", "-", "-", "-", "-", "-"]) }
        }
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max()! }
        return rows.map { row in
            row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
