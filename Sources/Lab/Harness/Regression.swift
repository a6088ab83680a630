import Foundation

/// `regress/baseline.json`: the committed key metrics with the tolerance each may move before it counts
/// as a regression. Tolerances are relative (0.5 = 50% worse than baseline) with an absolute floor, so
/// small numbers do not flap.
public struct Baseline: Codable, Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        public var name: String
        public var value: Double
        public var unit: String
        public var better: KeyMetric.Better
        /// Allowed relative change in the bad direction.
        public var relativeTolerance: Double
        /// Allowed absolute change in the bad direction (whichever of the two is larger applies).
        public var absoluteTolerance: Double
    }

    public var schemaVersion = 1
    /// How the baseline was made (commit, date, command).
    public var recorded: String
    public var metrics: [Entry]

    public static func load(_ path: String) throws -> Baseline {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RegressionError.baselineMissing(path)
        }
        do {
            let b = try JSONDecoder().decode(Baseline.self, from: data)
            guard b.schemaVersion == 1 else { throw RegressionError.baselineInvalid(path, "schemaVersion \(b.schemaVersion), expected 1") }
            return b
        } catch let e as RegressionError {
            throw e
        } catch {
            throw RegressionError.baselineInvalid(path, "\(error)")
        }
    }

    public func write(_ path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(self).write(to: URL(fileURLWithPath: path))
    }

    /// Default tolerances for a new baseline entry: latencies may grow 50% (at least 50 ms), throughputs
    /// may fall 35%, anything else 50%. Runs on a shared 2-core machine vary; these catch real breakage
    /// (a scheduler that lets BG in front of FG makes FG p95 several times worse) without flapping.
    public static func defaultTolerance(for m: KeyMetric) -> (relative: Double, absolute: Double) {
        switch (m.unit, m.better) {
        case ("ms", .lower): return (0.5, 50)
        // Detection, failover and recovery times: the goals are "well under a second".
        case ("s", .lower): return (0.5, 0.5)
        // False trouble: the acceptance bound is one declaration per minute.
        case ("1/min", .lower): return (0.5, 1)
        case ("requests", .higher): return (0.2, 2)
        case (_, .higher): return (0.35, 0)
        default: return (0.5, 0)
        }
    }
}

/// One row of the regression table.
public struct RegressionRow: Sendable {
    public enum Verdict: String, Sendable { case ok, improved, regressed, missing, new }
    public var name: String
    public var unit: String
    public var baseline: Double?
    public var now: Double?
    public var limit: Double?
    public var verdict: Verdict
}

public enum RegressionError: Error, CustomStringConvertible {
    case baselineMissing(String)
    case baselineInvalid(String, String)
    public var description: String {
        switch self {
        case .baselineMissing(let p): return "no baseline at \(p): run `intnw-lab regress --update-baseline` to record one"
        case .baselineInvalid(let p, let why): return "\(p) is not a valid baseline: \(why)"
        }
    }
}

public enum Regression {
    /// Compares measured metrics with the baseline. A metric the baseline has but the run did not
    /// produce is a regression too (something stopped working).
    public static func compare(_ metrics: [KeyMetric], with baseline: Baseline) -> [RegressionRow] {
        var rows: [RegressionRow] = []
        for e in baseline.metrics {
            guard let m = metrics.first(where: { $0.name == e.name }) else {
                rows.append(RegressionRow(name: e.name, unit: e.unit, baseline: e.value, now: nil, limit: nil, verdict: .missing))
                continue
            }
            let slack = max(abs(e.value) * e.relativeTolerance, e.absoluteTolerance)
            let limit = e.better == .lower ? e.value + slack : e.value - slack
            let worse = e.better == .lower ? m.value > limit : m.value < limit
            let better = e.better == .lower ? m.value < e.value - slack : m.value > e.value + slack
            rows.append(RegressionRow(name: e.name, unit: e.unit, baseline: e.value, now: m.value, limit: limit,
                                      verdict: worse ? .regressed : better ? .improved : .ok))
        }
        for m in metrics where !baseline.metrics.contains(where: { $0.name == m.name }) {
            rows.append(RegressionRow(name: m.name, unit: m.unit, baseline: nil, now: m.value, limit: nil, verdict: .new))
        }
        return rows
    }

    public static func failed(_ rows: [RegressionRow]) -> Bool {
        rows.contains { $0.verdict == .regressed || $0.verdict == .missing }
    }

    /// metric / baseline / now / limit / verdict, aligned.
    public static func table(_ rows: [RegressionRow]) -> String {
        func f(_ v: Double?) -> String { v.map { String(format: $0.magnitude >= 100 ? "%.0f" : "%.2f", $0) } ?? "-" }
        var lines = [["metric", "unit", "baseline", "now", "limit", "verdict"]]
        for r in rows {
            lines.append([r.name, r.unit, f(r.baseline), f(r.now), f(r.limit), r.verdict == .regressed ? "REGRESSED" : r.verdict.rawValue])
        }
        let widths = lines[0].indices.map { i in lines.map { $0[i].count }.max()! }
        return lines.map { row in
            row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// A new baseline from `metrics`, keeping existing tolerances where an entry already exists. With
    /// `keepUnmeasured`, entries this run did not measure (a partial run) stay as they were.
    public static func baseline(from metrics: [KeyMetric], previous: Baseline?, recorded: String,
                                keepUnmeasured: Bool = false) -> Baseline {
        let kept = keepUnmeasured ? (previous?.metrics ?? []).filter { e in !metrics.contains { $0.name == e.name } } : []
        return Baseline(recorded: recorded, metrics: kept + metrics.map { m in
            if let old = previous?.metrics.first(where: { $0.name == m.name }) {
                return Baseline.Entry(name: m.name, value: m.value, unit: m.unit, better: m.better,
                                      relativeTolerance: old.relativeTolerance, absoluteTolerance: old.absoluteTolerance)
            }
            let t = Baseline.defaultTolerance(for: m)
            return Baseline.Entry(name: m.name, value: m.value, unit: m.unit, better: m.better,
                                  relativeTolerance: t.relative, absoluteTolerance: t.absolute)
        }.sorted { $0.name < $1.name }).sortedByName()
    }
}

extension Baseline {
    func sortedByName() -> Baseline {
        var b = self
        b.metrics.sort { $0.name < $1.name }
        return b
    }
}
