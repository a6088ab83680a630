import Foundation
@testable import Lab
import Testing

/// The regression rule: Mann-Whitney U (one-sided, α = 0.01) plus a minimum effect for metrics with
/// samples; a tolerance band no narrower than the baseline runs' spread for one-number metrics.
struct RegressionTests {
    /// Deterministic "noise": a fixed pseudo-random sequence in [-1, 1).
    static func noise(_ n: Int, seed: UInt64) -> [Double] {
        var s = seed
        return (0 ..< n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Double(s >> 11) / Double(1 << 53) * 2 - 1
        }
    }

    /// Five baseline runs: FG latencies around 210 ms (±10%), BG per-second rates around 40 kB/s.
    static func run(_ k: UInt64, fgScale: Double = 1, bgScale: Double = 1) -> [KeyMetric] {
        let fg = noise(42, seed: k).map { (210 + 21 * $0) * fgScale }
        let bg = noise(45, seed: k + 100).map { (40_000 + 4_000 * $0) * bgScale }
        let p95 = fg.sorted()[Int((Double(fg.count) * 0.95).rounded(.up)) - 1]
        return [KeyMetric(name: "m.fg_p95_ms", value: p95, unit: "ms", better: .lower, samples: fg),
                KeyMetric(name: "m.bg_bytes_per_s", value: bg.reduce(0, +) / Double(bg.count), unit: "B/s", better: .higher, samples: bg),
                KeyMetric(name: "t.detect_s", value: 0.4 + 0.05 * Double(k % 3), unit: "s", better: .lower)]
    }

    static let baseline = Regression.baseline(fromRuns: (1 ... 5).map { run($0) }, previous: nil, recorded: "test")

    func row(_ rows: [RegressionRow], _ name: String) -> RegressionRow { rows.first { $0.name == name }! }

    @Test func baselineKeepsRunsAndSamples() {
        let e = Self.baseline.metrics.first { $0.name == "m.fg_p95_ms" }!
        #expect(e.runValues.count == 5 && e.samples.count == 5 * 42)
        #expect(e.minimumEffect == 0.25)
        #expect(Self.baseline.schemaVersion == 2)
    }

    @Test func unchangedRunsPass() {
        for k: UInt64 in 6 ... 10 {
            let rows = Regression.compare(Self.run(k), with: Self.baseline)
            #expect(!Regression.failed(rows), "\(Regression.table(rows))")
        }
    }

    @Test func doubledFGLatencyAndHalvedBGRegress() {
        let rows = Regression.compare(Self.run(11, fgScale: 2, bgScale: 0.5), with: Self.baseline)
        #expect(row(rows, "m.fg_p95_ms").verdict == .regressed)
        #expect(row(rows, "m.bg_bytes_per_s").verdict == .regressed)
        #expect((row(rows, "m.fg_p95_ms").p ?? 1) < 0.001)
        #expect(Regression.table(rows).contains("REGRESSED"))
    }

    @Test func significantButSmallShiftIsNotARegression() {
        // 10% slower in every sample: U says "worse", the effect is under 25%.
        let rows = Regression.compare(Self.run(12, fgScale: 1.1), with: Self.baseline)
        let r = row(rows, "m.fg_p95_ms")
        #expect((r.p ?? 1) < 0.01)
        #expect(r.verdict == .ok)
    }

    @Test func oneNumberMetricsUseTheToleranceBand() {
        var now = Self.run(6)
        now[2].value = 1.2
        let rows = Regression.compare(now, with: Self.baseline)
        #expect(row(rows, "t.detect_s").verdict == .regressed)
        #expect(row(rows, "t.detect_s").rule.hasPrefix("tolerance"))
    }

    @Test func missingMetricFailsAndNewMetricIsReported() {
        let rows = Regression.compare([KeyMetric(name: "other", value: 1, unit: "x", better: .lower)], with: Self.baseline)
        #expect(row(rows, "m.fg_p95_ms").verdict == .missing)
        #expect(row(rows, "other").verdict == .new)
        #expect(Regression.failed(rows))
    }

    @Test func mannWhitneyMatchesHandComputedValues() {
        // Exact: x all above y, n = 3 and 4: P(U ≥ 12) = 1 / C(7, 3) = 1/35.
        #expect(abs(Regression.mannWhitneyGreater([10, 11, 12], [1, 2, 3, 4]) - 1.0 / 35) < 1e-12)
        // Identical distributions give no evidence.
        #expect(Regression.mannWhitneyGreater([1, 2, 3], [1, 2, 3]) > 0.3)
        // The exact distribution sums to C(n1 + n2, n1).
        #expect(Regression.exactUDistribution(3, 15).reduce(0, +) == 816)
        // Large samples: the normal approximation; a clear shift gives a tiny p.
        let a = Self.noise(100, seed: 1).map { $0 + 1 }, b = Self.noise(100, seed: 2)
        #expect(Regression.mannWhitneyGreater(a, b) < 1e-6)
        #expect(Regression.mannWhitneyGreater(b, a) > 0.99)
    }

    /// Catches: a committed baseline that absorbed an accounting bug. The old one held 117 kB/s of
    /// one-multisocket BG, declared message lengths booked at completion, on multiapp's 64 kB/s
    /// uplink; a regression check against it passes a scheduler that moves less than the link.
    @Test func committedBaselineBGRatesAreWithinTheUplinkCapacity() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try Data(contentsOf: repo.appendingPathComponent("regress/baseline.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let metrics = try #require(json["metrics"] as? [[String: Any]])
        let bg = metrics.filter { ($0["name"] as? String).map { $0.hasPrefix("multiapp.") && $0.hasSuffix(".bg_bytes_per_s") } ?? false }
        #expect(bg.count == 3, "one BG rate per multiapp layout: \(bg.map { $0["name"] ?? "?" })")
        let capacity = Double(MultiappExperiment.uplinkCapacity)
        for m in bg {
            let values = [m["value"] as? Double].compactMap { $0 } + (m["runValues"] as? [Double] ?? []) + (m["samples"] as? [Double] ?? [])
            #expect(values.count >= 6, "\(m["name"] ?? "?"): value, run values and samples")
            for v in values { #expect(v > 0 && v <= capacity, "\(m["name"] ?? "?"): \(v) B/s on a \(capacity) B/s uplink") }
        }
    }
}
