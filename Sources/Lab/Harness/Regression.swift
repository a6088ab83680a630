import Foundation

/// `regress/baseline.json`: each key metric as recorded over several runs of the regression set.
///
/// The rule (docs/regression.md): a metric with samples (e.g. every FG request's app-perceived
/// latency, every second's BG rate) regresses when a one-sided Mann-Whitney U test says its
/// samples are worse than the baseline's at α = 0.01 **and** its value moved in the bad direction
/// by at least the metric's minimum effect (relative to the baseline's value). Both are needed: the
/// test alone flags tiny shifts between runs of a loaded machine, the effect size alone ignores
/// noise. Metrics without samples (one number per run) fall back to a tolerance band that
/// is at least the spread the baseline runs showed.
public struct Baseline: Codable, Sendable {
    public struct Entry: Codable, Sendable, Equatable {
        public var name: String
        /// Median over the baseline runs of the metric's value.
        public var value: Double
        public var unit: String
        public var better: KeyMetric.Better
        /// Smallest relative change in the bad direction that counts as a regression.
        public var minimumEffect: Double
        /// The value of each baseline run (its spread is shown and bounds the tolerance rule).
        public var runValues: [Double]
        /// Every sample of every baseline run (empty: the metric has no samples).
        public var samples: [Double]
        /// Tolerance rule for metrics without samples: relative, with an absolute floor.
        public var relativeTolerance: Double
        public var absoluteTolerance: Double
    }

    public var schemaVersion = 2
    /// How the baseline was made (commit, date, command, machine state).
    public var recorded: String
    public var metrics: [Entry]

    public static func load(_ path: String) throws -> Baseline {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RegressionError.baselineMissing(path)
        }
        do {
            let b = try JSONDecoder().decode(Baseline.self, from: data)
            guard b.schemaVersion == 2 else { throw RegressionError.baselineInvalid(path, "schemaVersion \(b.schemaVersion), expected 2") }
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

    /// Minimum effect per kind of metric: latencies and rates 25%, requests answered 10%, times
    /// and rates of events (trouble) 50%.
    public static func minimumEffect(for m: KeyMetric) -> Double {
        switch (m.unit, m.better) {
        case ("ms", _), ("B/s", _): return 0.25
        case ("requests", _): return 0.1
        default: return 0.5
        }
    }

    /// Tolerance band for metrics without samples (the floor under the baseline runs' spread).
    public static func defaultTolerance(for m: KeyMetric) -> (relative: Double, absolute: Double) {
        switch (m.unit, m.better) {
        case ("ms", .lower): return (0.5, 50)
        case ("s", .lower): return (0.5, 0.5)
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
    /// Lowest and highest value of the baseline runs.
    public var spread: (Double, Double)?
    public var now: Double?
    /// Relative change of the value, in the bad direction positive.
    public var worseBy: Double?
    /// One-sided Mann-Whitney p-value (worse), nil under the tolerance rule.
    public var p: Double?
    /// The rule that decided: "U+effect" or "tolerance".
    public var rule: String
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
    /// Significance level of the one-sided Mann-Whitney U test.
    public static let alpha = 0.01

    /// Compares measured metrics with the baseline. A metric the baseline has but the run did not
    /// produce is a regression too (something stopped working).
    public static func compare(_ metrics: [KeyMetric], with baseline: Baseline) -> [RegressionRow] {
        var rows: [RegressionRow] = []
        for e in baseline.metrics {
            let spread = e.runValues.isEmpty ? nil : (e.runValues.min()!, e.runValues.max()!)
            guard let m = metrics.first(where: { $0.name == e.name }) else {
                rows.append(RegressionRow(name: e.name, unit: e.unit, baseline: e.value, spread: spread, now: nil, worseBy: nil, p: nil,
                                          rule: "-", verdict: .missing))
                continue
            }
            let sign = e.better == .lower ? 1.0 : -1.0
            let worseBy = e.value != 0 ? sign * (m.value - e.value) / abs(e.value) : (sign * m.value > 0 ? .infinity : 0)
            if let s = m.samples, s.count >= 3, e.samples.count >= 5 {
                // H1: now's samples tend to be worse (larger when lower is better) than the baseline's.
                let pWorse = e.better == .lower ? mannWhitneyGreater(s, e.samples) : mannWhitneyGreater(e.samples, s)
                let pBetter = e.better == .lower ? mannWhitneyGreater(e.samples, s) : mannWhitneyGreater(s, e.samples)
                let verdict: RegressionRow.Verdict = pWorse < alpha && worseBy >= e.minimumEffect ? .regressed
                    : pBetter < alpha && -worseBy >= e.minimumEffect ? .improved : .ok
                rows.append(RegressionRow(name: e.name, unit: e.unit, baseline: e.value, spread: spread, now: m.value, worseBy: worseBy,
                                          p: pWorse, rule: "U+effect", verdict: verdict))
            } else {
                // One number per run: worse than the baseline by more than both the tolerance band
                // and the baseline runs' own spread.
                let runSpread = spread.map { e.better == .lower ? $0.1 - e.value : e.value - $0.0 } ?? 0
                let slack = max(abs(e.value) * e.relativeTolerance, e.absoluteTolerance, runSpread)
                let limit = e.better == .lower ? e.value + slack : e.value - slack
                let worse = e.better == .lower ? m.value > limit : m.value < limit
                let better = e.better == .lower ? m.value < e.value - slack : m.value > e.value + slack
                rows.append(RegressionRow(name: e.name, unit: e.unit, baseline: e.value, spread: spread, now: m.value, worseBy: worseBy,
                                          p: nil, rule: "tolerance ±\(format(slack))", verdict: worse ? .regressed : better ? .improved : .ok))
            }
        }
        for m in metrics where !baseline.metrics.contains(where: { $0.name == m.name }) {
            rows.append(RegressionRow(name: m.name, unit: m.unit, baseline: nil, spread: nil, now: m.value, worseBy: nil, p: nil,
                                      rule: "-", verdict: .new))
        }
        return rows
    }

    public static func failed(_ rows: [RegressionRow]) -> Bool {
        rows.contains { $0.verdict == .regressed || $0.verdict == .missing }
    }

    static func format(_ v: Double) -> String { String(format: v.magnitude >= 100 ? "%.0f" : "%.2f", v) }

    /// metric / baseline (spread of its runs) / now / change / p / rule / verdict, aligned.
    public static func table(_ rows: [RegressionRow]) -> String {
        func f(_ v: Double?) -> String { v.map(format) ?? "-" }
        var lines = [["metric", "unit", "baseline", "baseline runs", "now", "worse by", "p (U, worse)", "rule", "verdict"]]
        for r in rows {
            lines.append([r.name, r.unit, f(r.baseline), r.spread.map { "\(format($0.0))–\(format($0.1))" } ?? "-", f(r.now),
                          r.worseBy.map { String(format: "%+.0f%%", $0 * 100) } ?? "-",
                          r.p.map { String(format: "%.2g", $0) } ?? "-", r.rule,
                          r.verdict == .regressed ? "REGRESSED" : r.verdict.rawValue])
        }
        let widths = lines[0].indices.map { i in lines.map { $0[i].count }.max()! }
        return lines.map { row in
            row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// A baseline from several runs' metrics (one array per run). With `previous` and
    /// `keepUnmeasured`, entries these runs did not measure (a partial run) stay as they were.
    public static func baseline(fromRuns runs: [[KeyMetric]], previous: Baseline?, recorded: String,
                                keepUnmeasured: Bool = false) -> Baseline {
        var order: [String] = []
        var byName: [String: [KeyMetric]] = [:]
        for run in runs {
            for m in run {
                if byName[m.name] == nil { order.append(m.name) }
                byName[m.name, default: []].append(m)
            }
        }
        let measured = order.map { name -> Baseline.Entry in
            let ms = byName[name]!
            let values = ms.map(\.value).sorted()
            let median = values.count % 2 == 1 ? values[values.count / 2] : (values[values.count / 2 - 1] + values[values.count / 2]) / 2
            let t = Baseline.defaultTolerance(for: ms[0])
            return Baseline.Entry(name: name, value: median, unit: ms[0].unit, better: ms[0].better,
                                  minimumEffect: Baseline.minimumEffect(for: ms[0]), runValues: ms.map(\.value),
                                  samples: ms.flatMap { $0.samples ?? [] }, relativeTolerance: t.relative, absoluteTolerance: t.absolute)
        }
        let kept = keepUnmeasured ? (previous?.metrics ?? []).filter { byName[$0.name] == nil } : []
        var b = Baseline(recorded: recorded, metrics: kept + measured)
        b.metrics.sort { $0.name < $1.name }
        return b
    }

    // MARK: - Mann-Whitney U

    /// One-sided p-value of the Mann-Whitney U test for H1 "values in `x` tend to be larger than
    /// in `y`". Exact (by counting arrangements) when there are no ties and n₁·n₂ ≤ 400;
    /// otherwise the normal approximation with tie correction and continuity correction.
    public static func mannWhitneyGreater(_ x: [Double], _ y: [Double]) -> Double {
        let n1 = x.count, n2 = y.count
        guard n1 > 0, n2 > 0 else { return 1 }
        // U = number of pairs (xi, yj) with xi > yj, ties counting one half.
        let all = (x.map { ($0, 0) } + y.map { ($0, 1) }).sorted { $0.0 < $1.0 }
        var ranks = [Double](repeating: 0, count: all.count)
        var tieTerm = 0.0
        var i = 0
        var hasTies = false
        while i < all.count {
            var j = i
            while j + 1 < all.count && all[j + 1].0 == all[i].0 { j += 1 }
            let r = Double(i + j) / 2 + 1
            for k in i ... j { ranks[k] = r }
            let t = Double(j - i + 1)
            if t > 1 { hasTies = true; tieTerm += t * t * t - t }
            i = j + 1
        }
        var r1 = 0.0
        for (k, e) in all.enumerated() where e.1 == 0 { r1 += ranks[k] }
        let u = r1 - Double(n1 * (n1 + 1)) / 2
        if !hasTies && n1 * n2 <= 400 {
            // P(U ≥ u) under H0 from the distribution of U (number of arrangements per value).
            let maxU = n1 * n2
            var counts = exactUDistribution(n1, n2)
            let total = counts.reduce(0, +)
            let lo = Int(u.rounded(.up))
            guard lo <= maxU else { return 0 }
            counts = Array(counts[max(lo, 0)...])
            return counts.reduce(0, +) / total
        }
        let n = Double(n1 + n2)
        let mean = Double(n1 * n2) / 2
        let variance = Double(n1 * n2) / 12 * ((n + 1) - tieTerm / (n * (n - 1)))
        guard variance > 0 else { return 0.5 }
        let z = (u - mean - 0.5) / variance.squareRoot()
        return 0.5 * erfc(z / 2.0.squareRoot())
    }

    /// Number of arrangements giving each U = 0 ... n1·n2 (as Double to avoid overflow).
    static func exactUDistribution(_ n1: Int, _ n2: Int) -> [Double] {
        // f[m][n] over u, built up with f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u).
        var table = [[[Double]]](repeating: [[Double]](repeating: [], count: n2 + 1), count: n1 + 1)
        for m in 0 ... n1 {
            for n in 0 ... n2 {
                if m == 0 || n == 0 { table[m][n] = [1]; continue }
                var d = [Double](repeating: 0, count: m * n + 1)
                for (u, c) in table[m - 1][n].enumerated() { d[u + n] += c }
                for (u, c) in table[m][n - 1].enumerated() { d[u] += c }
                table[m][n] = d
            }
        }
        return table[n1][n2]
    }
}
