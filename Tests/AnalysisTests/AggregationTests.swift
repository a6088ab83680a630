import Testing
@testable import Analysis

/// `Analyzer.aggregate`: the across-trials means that results.json, the report and the experiments'
/// tables show. The report test only checks that an interval exists; these check the numbers.
@Suite struct AggregationTests {
    static func app(_ name: String, role: AppRole, p50: Double? = nil, uplinkBytesPerSecond: Double) -> AppResult {
        AppResult(name: name, role: role, variant: .plain, appId: nil, connections: [], messages: [:],
                  labelMismatches: 0, labeledForeground: 0, labeledBackground: 0,
                  fg: p50.map { FGResult(requests: 1, replies: 1, unanswered: 0,
                                        latencyMs: LatencySummary(count: 1, meanMs: $0, stddevMs: 0, minMs: $0, p50Ms: $0,
                                                                  p95Ms: 2 * $0, p99Ms: 2 * $0, maxMs: 2 * $0)) },
                  bg: nil,
                  throughput: ThroughputResult(uplinkBytes: 0, downlinkBytes: 0, activeSeconds: 1, windowSeconds: 1,
                                               uplinkBytesPerSecond: uplinkBytesPerSecond,
                                               downlinkBytesPerSecond: 0, totalBytesPerSecond: uplinkBytesPerSecond))
    }

    static func trial(_ apps: [AppResult], jain: Double?) -> TrialResult {
        TrialResult(name: "t", originNanoseconds: 0, durationSeconds: 1, captures: [], connections: [], apps: apps, interfaces: [],
                    fairness: FairnessResult(bgThroughputJain: jain, fgLatencyJain: nil),
                    intnwConnections: 0, toyConnections: 0, accountingViolations: 0)
    }

    /// Catches: means over the wrong apps or trials, a wrong confidence interval (Student t with n-1
    /// degrees of freedom), apps reordered or merged by role, and trials without a value counted as 0.
    @Test func meansAndIntervalsAcrossTrialsPerApp() throws {
        let trials = [
            Self.trial([Self.app("fg", role: .fg, p50: 10, uplinkBytesPerSecond: 100), Self.app("bg", role: .bg, uplinkBytesPerSecond: 1000)], jain: 0.9),
            Self.trial([Self.app("fg", role: .fg, p50: 20, uplinkBytesPerSecond: 300), Self.app("bg", role: .bg, uplinkBytesPerSecond: 3000)], jain: nil),
            Self.trial([Self.app("bg", role: .bg, uplinkBytesPerSecond: 2000)], jain: 0.7),
        ]
        let a = Analyzer.aggregate(trials)
        #expect(a.trials == 3)
        #expect(a.apps.map(\.name) == ["fg", "bg"])
        let fg = try #require(a.apps.first)
        #expect(fg.trials == 2 && fg.role == .fg)
        // p50 over 10 and 20: mean 15, s = 7.0711, Student t half width t(0.975, 1) × s / √2 = 12.706 × 5 = 63.53,
        // which would reach below 0: a latency gets the percentile bootstrap interval instead, inside [10, 20].
        let p50 = try #require(fg.fgLatencyP50Ms)
        #expect(p50.mean == 15 && p50.n == 2)
        #expect(abs((Statistics.meanWithCI([10, 20])?.halfWidth ?? 0) - 63.53) < 1e-9)
        #expect(p50.method == "bootstrap-percentile" && (p50.low ?? -1) >= 10 && (p50.high ?? 99) <= 20)
        #expect(abs((p50.stddev ?? 0) - 7.0710678118654755) < 1e-12)
        #expect(fg.fgLatencyP95Ms?.mean == 30)
        #expect(fg.uplinkBytesPerSecond?.mean == 200)
        let bg = try #require(a.apps.last)
        #expect(bg.trials == 3 && bg.fgLatencyP50Ms == nil)
        // 1000, 3000, 2000: mean 2000, s = 1000, Student t half width 4.303 × 1000 / √3 = 2484 (below 0
        // again): bootstrap, inside [1000, 3000].
        #expect(bg.uplinkBytesPerSecond?.mean == 2000)
        #expect(abs((Statistics.meanWithCI([1000, 3000, 2000])?.halfWidth ?? 0) - 4.303 * 1000 / 3.0.squareRoot()) < 1e-9)
        #expect((bg.uplinkBytesPerSecond?.low ?? 0) >= 1000 && (bg.uplinkBytesPerSecond?.high ?? 0) <= 3000)
        // Jain: the trial without a value is left out, not counted as 0.
        #expect(a.bgThroughputJain?.n == 2 && abs((a.bgThroughputJain?.mean ?? 0) - 0.8) < 1e-12)
        #expect(a.fgLatencyJain == nil)
    }
}
