import Testing
@testable import Analysis

@Suite struct StatisticsTests {
    @Test func jainIndex() {
        #expect(Statistics.jainIndex([5, 5, 5, 5]) == 1)
        #expect(abs(Statistics.jainIndex([1, 0, 0, 0])! - 0.25) < 1e-12)
        // (1+2+3)^2 / (3 * 14) = 36/42
        #expect(abs(Statistics.jainIndex([1, 2, 3])! - 36.0 / 42.0) < 1e-12)
        #expect(Statistics.jainIndex([]) == nil)
        #expect(Statistics.jainIndex([0, 0]) == nil)
    }

    @Test func confidenceIntervalMatchesHandComputation() throws {
        // mean 5, sample sd = sqrt(((−2)²+0+2²)/2) = 2, n = 3, t(2) = 4.303 → hw = 4.303·2/√3.
        let ci = try #require(Statistics.meanWithCI([3, 5, 7]))
        #expect(ci.mean == 5 && ci.n == 3)
        #expect(abs(ci.stddev! - 2) < 1e-12)
        #expect(abs(ci.halfWidth! - 4.303 * 2 / 3.0.squareRoot()) < 1e-9)
        #expect(abs(ci.low! - (5 - ci.halfWidth!)) < 1e-12)
        let one = try #require(Statistics.meanWithCI([42]))
        #expect(one.mean == 42 && one.halfWidth == nil && one.n == 1)
        #expect(Statistics.meanWithCI([]) == nil)
    }

    @Test func studentTTable() {
        #expect(Statistics.studentT975(degreesOfFreedom: 1) == 12.706)
        #expect(Statistics.studentT975(degreesOfFreedom: 9) == 2.262)
        #expect(Statistics.studentT975(degreesOfFreedom: 30) == 2.042)
        #expect(abs(Statistics.studentT975(degreesOfFreedom: 60) - 2.000) < 1e-9)
        let t45 = Statistics.studentT975(degreesOfFreedom: 45)
        #expect(t45 < 2.021 && t45 > 2.000)
        #expect(abs(Statistics.studentT975(degreesOfFreedom: 100_000) - 1.96) < 0.001)
    }

    @Test func percentilesFromHdrHistogram() throws {
        let values = (1 ... 1000).map { UInt64($0) * 1_000_000 }  // 1..1000 ms
        let s = try #require(Statistics.latencySummary(nanoseconds: values))
        #expect(s.count == 1000 && s.minMs == 1 && s.maxMs == 1000)
        #expect(abs(s.meanMs - 500.5) < 1e-9)
        #expect(abs(s.p50Ms - 500) / 500 < 0.001)
        #expect(abs(s.p95Ms - 950) / 950 < 0.001)
        #expect(abs(s.p99Ms - 990) / 990 < 0.001)
        #expect(Statistics.latencySummary(nanoseconds: []) == nil)
    }
}
