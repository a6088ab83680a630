import Analysis
import Foundation

/// The final table an experiment prints: one row per variant, means across trials.
public enum ExperimentTable {
    public static func render(_ r: ExperimentRunner.Result) -> String {
        var rows: [[String]] = [["variant", "trials", "app", "FG p50 ms", "FG p95 ms", "FG answered", "BG KB/s"]]
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
                let answered = mine.compactMap { $0.fg.map { "\($0.replies)/\($0.requests)" } }.joined(separator: ",")
                let bg = mine.compactMap { a -> Double? in
                    guard a.role == .bg, a.throughput.activeSeconds > 0 else { return nil }
                    return Double(a.throughput.uplinkBytes) / a.throughput.activeSeconds / 1000
                }
                rows.append([v, "\(trials.count)", n, mean(p50), mean(p95), answered.isEmpty ? "-" : answered, mean(bg)])
            }
            if names.isEmpty { rows.append([v, "\(trials.count)", "-", "-", "-", "-", "-"]) }
        }
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max()! }
        return rows.map { row in
            row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
