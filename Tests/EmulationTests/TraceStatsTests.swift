import Testing
@testable import Emulation

@Suite struct TraceStatsTests {
    /// WiFi: on 0-10 s (fast), off 10-12, on 12-13 (slow), off 13-20 (duration). Cellular steady but its RTT
    /// changes at 12 s.
    let trace = try! TraceParser.parse("""
        # duration: 20
        0   1000 500 30   100 50 200
        10  0    0   0    100 50 200
        12  200  100 400  100 50 300
        13  0    0   0    100 50 300
        """, source: "hand")

    @Test func availabilityAndRuns() {
        let stats = TraceStats(trace: trace)
        #expect(stats.durationSeconds == 20)
        #expect(stats.sliceCount == 4)
        let wifi = stats.links[0]
        #expect(wifi.kind == .wifi)
        #expect(wifi.availableFraction == 11.0 / 20.0)
        #expect(wifi.encounters == TraceStats.DurationSummary(count: 2, minSeconds: 1, medianSeconds: 5.5, maxSeconds: 10))
        #expect(wifi.disconnections == TraceStats.DurationSummary(count: 2, minSeconds: 2, medianSeconds: 4.5, maxSeconds: 7))
        let cell = stats.links[1]
        #expect(cell.kind == .cellular)
        #expect(cell.availableFraction == 1)
        #expect(cell.encounters == nil)
        #expect(cell.disconnections == nil)
    }

    @Test func timeWeightedPercentiles() {
        let stats = TraceStats(trace: trace)
        // WiFi while available: 10 s at 1000 B/s, 1 s at 200 B/s. p5 = 200 (1/11 > 5%), p50 = p95 = 1000.
        #expect(stats.links[0].downBytesPerSecond == TraceStats.Percentiles(p5: 200, p50: 1000, p95: 1000))
        #expect(stats.links[0].rttMilliseconds == TraceStats.Percentiles(p5: 30, p50: 30, p95: 400))
        // Cellular RTT: 12 s at 200 ms, 8 s at 300 ms.
        #expect(stats.links[1].rttMilliseconds == TraceStats.Percentiles(p5: 200, p50: 200, p95: 300))
        #expect(stats.links[1].upBytesPerSecond == TraceStats.Percentiles(p5: 50, p50: 50, p95: 50))
        #expect(stats.links[1].meanLossFraction == 0)
    }

    @Test func slicesCountByDurationNotByNumber() throws {
        // 1 slice of 99 s at 10 ms and 9 slices of 0.1 s at 500 ms: time says 10 ms dominates.
        var text = "# duration: 100\n0 1 1 10 1 1 10\n"
        for i in 0..<9 { text += "\(99 + Double(i) * 0.1) 1 1 500 1 1 10\n" }
        let stats = TraceStats(trace: try TraceParser.parse(text, source: "x"))
        #expect(stats.links[0].rttMilliseconds?.p50 == 10)
        #expect(stats.links[0].rttMilliseconds?.p95 == 10)
    }

    @Test func neverAvailableWiFi() throws {
        let stats = TraceStats(trace: try TraceParser.parse("0 0 0 0 5 5 100\n", source: "x"))
        #expect(stats.links[0].availableFraction == 0)
        #expect(stats.links[0].encounters == nil)
        #expect(stats.links[0].disconnections?.count == 1)
        #expect(stats.links[0].downBytesPerSecond == nil)
        #expect(stats.render(name: "x").contains("wifi      down B/s    -    -    -"))
    }

    @Test func meanLoss() throws {
        let stats = TraceStats(trace: try TraceParser.parse("# duration: 4\n0 1 1 1 1 1 1 0.1 0\n3 1 1 1 1 1 1 0.5 0\n", source: "x"))
        #expect(abs(stats.links[0].meanLossFraction - 0.2) < 1e-12)
        #expect(stats.render(name: "x").contains("mean loss 20.00% while available"))
    }

    @Test func renderedTable() {
        let text = TraceStats(trace: trace).render(name: "hand.trace")
        #expect(text == """
            trace hand.trace
            duration 20 s, 4 slices
            wifi: available 55.0% of the time
              encounters     2, min 1 s, median 5.5 s, max 10 s
              disconnections 2, min 2 s, median 4.5 s, max 7 s
            cellular: always available (cellular)

            percentiles over time (WiFi: while available); bandwidth in bytes/s, RTT in ms
            link      quantity   p5   p50   p95
            wifi      down B/s  200  1000  1000
            wifi      up B/s    100   500   500
            wifi      rtt ms     30    30   400
            cellular  down B/s  100   100   100
            cellular  up B/s     50    50    50
            cellular  rtt ms    200   200   300

            """)
    }
}
