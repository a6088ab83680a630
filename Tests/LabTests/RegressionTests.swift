@testable import Lab
import Testing

struct RegressionTests {
    let baseline = Baseline(recorded: "test", metrics: [
        .init(name: "fg_p95_ms", value: 300, unit: "ms", better: .lower, relativeTolerance: 0.5, absoluteTolerance: 50),
        .init(name: "bg_bytes_per_s", value: 40_000, unit: "B/s", better: .higher, relativeTolerance: 0.35, absoluteTolerance: 0),
        .init(name: "tiny_ms", value: 10, unit: "ms", better: .lower, relativeTolerance: 0.5, absoluteTolerance: 50),
    ])

    func row(_ rows: [RegressionRow], _ name: String) -> RegressionRow { rows.first { $0.name == name }! }

    @Test func withinToleranceIsOK() {
        let rows = Regression.compare([
            KeyMetric(name: "fg_p95_ms", value: 440, unit: "ms", better: .lower),
            KeyMetric(name: "bg_bytes_per_s", value: 27_000, unit: "B/s", better: .higher),
            KeyMetric(name: "tiny_ms", value: 55, unit: "ms", better: .lower),
        ], with: baseline)
        #expect(rows.allSatisfy { $0.verdict == .ok })
        #expect(!Regression.failed(rows))
        #expect(row(rows, "fg_p95_ms").limit == 450)
        #expect(row(rows, "tiny_ms").limit == 60, "absolute floor wins for small values")
    }

    @Test func worseBeyondToleranceRegresses() {
        let rows = Regression.compare([
            KeyMetric(name: "fg_p95_ms", value: 1_200, unit: "ms", better: .lower),
            KeyMetric(name: "bg_bytes_per_s", value: 20_000, unit: "B/s", better: .higher),
            KeyMetric(name: "tiny_ms", value: 5, unit: "ms", better: .lower),
        ], with: baseline)
        #expect(row(rows, "fg_p95_ms").verdict == .regressed)
        #expect(row(rows, "bg_bytes_per_s").verdict == .regressed)
        #expect(row(rows, "tiny_ms").verdict == .ok)
        #expect(Regression.failed(rows))
        let table = Regression.table(rows)
        #expect(table.contains("REGRESSED") && table.contains("fg_p95_ms") && table.contains("1200"))
    }

    @Test func missingMetricFailsAndNewMetricIsReported() {
        let rows = Regression.compare([KeyMetric(name: "other", value: 1, unit: "x", better: .lower)], with: baseline)
        #expect(row(rows, "fg_p95_ms").verdict == .missing)
        #expect(row(rows, "other").verdict == .new)
        #expect(Regression.failed(rows))
    }

    @Test func muchBetterIsImprovedNotFailed() {
        let rows = Regression.compare([
            KeyMetric(name: "fg_p95_ms", value: 100, unit: "ms", better: .lower),
            KeyMetric(name: "bg_bytes_per_s", value: 90_000, unit: "B/s", better: .higher),
            KeyMetric(name: "tiny_ms", value: 10, unit: "ms", better: .lower),
        ], with: baseline)
        #expect(row(rows, "fg_p95_ms").verdict == .improved)
        #expect(row(rows, "bg_bytes_per_s").verdict == .improved)
        #expect(!Regression.failed(rows))
    }

    @Test func updatingKeepsTolerancesAndAddsDefaults() {
        let b = Regression.baseline(from: [
            KeyMetric(name: "fg_p95_ms", value: 350, unit: "ms", better: .lower),
            KeyMetric(name: "new_ms", value: 20, unit: "ms", better: .lower),
        ], previous: baseline, recorded: "r")
        #expect(b.metrics.map(\.name) == ["fg_p95_ms", "new_ms"])
        #expect(b.metrics[0].value == 350 && b.metrics[0].absoluteTolerance == 50)
        #expect(b.metrics[1].relativeTolerance == 0.5 && b.metrics[1].absoluteTolerance == 50)
    }
}
