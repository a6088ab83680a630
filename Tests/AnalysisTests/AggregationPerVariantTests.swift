import Foundation
import Testing
@testable import Analysis
@testable import SyntheticTraffic

/// Trials are aggregated per (experiment variant, app), with intervals only where they mean
/// something and never below zero for quantities that cannot be negative.
@Suite final class AggregationPerVariantTests {
    let dir = tempDir("aggregation-variant")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    @Test func nonNegativeQuantitiesNeverGetANegativeBound() throws {
        // The pooled multiapp BG rates of the issue: Student t gives 40 ± 145 kB/s.
        let xs = [117_000.0, 2000, 1000]
        let t = try #require(Statistics.meanWithCI(xs))
        #expect(try #require(t.low) < 0, "the t interval of these values does reach below zero")
        let c = try #require(Statistics.nonNegativeMeanWithCI(xs))
        #expect(c.method == "bootstrap-percentile")
        #expect(try #require(c.low) >= 1000 && (try #require(c.high)) <= 117_000)
        #expect(c.mean == t.mean && c.n == 3)
        // Where t stays above zero it is kept, and says so.
        let tight = try #require(Statistics.nonNegativeMeanWithCI([100, 110, 90]))
        #expect(tight.method == "student-t" && tight.halfWidth != nil)
        #expect(tight.formatted { String(format: "%.0f", $0) }.contains("Student t, n=3"))
        // One trial: no interval.
        let one = try #require(Statistics.nonNegativeMeanWithCI([5]))
        #expect(one.low == nil && one.method == nil)
        #expect(one.formatted { String(format: "%.0f", $0) } == "5 (n=1, no interval)")
    }

    @Test func trialsOfDifferentVariantsAreNotPooled() throws {
        var inputs: [TrialInput] = []
        for (k, (variant, rate)) in [("fast", 400_000.0), ("fast", 500_000.0), ("slow", 50_000.0)].enumerated() {
            var spec = SyntheticRunSpec()
            spec.durationSeconds = 2
            spec.bgApps = 1
            spec.bgBytesPerSecond = rate
            spec.seed = UInt64(k + 1)
            let d = dir + "/t\(k)"
            try SyntheticRun.write(spec, to: d)
            var input = try TrialInput.runDirectory(d)
            input.variant = variant
            inputs.append(input)
        }
        let (r, _) = try Analyzer.analyze(trials: inputs)
        let bg = r.aggregate.apps.filter { $0.name == "bg1" }
        #expect(bg.count == 2, "one row per (variant, app)")
        let fast = try #require(bg.first { $0.experimentVariant == "fast" })
        let slow = try #require(bg.first { $0.experimentVariant == "slow" })
        #expect(fast.trials == 2 && slow.trials == 1)
        #expect(slow.totalBytesPerSecond?.low == nil, "no interval from one trial")
        let f = try #require(fast.totalBytesPerSecond)
        #expect(f.n == 2 && f.low != nil && (f.low ?? -1) >= 0)
        #expect(r.trials.allSatisfy { $0.variant != nil })
    }
}
