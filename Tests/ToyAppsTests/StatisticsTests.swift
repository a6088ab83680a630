import Testing
import ToyProtocol
@testable import ToyApps

@Suite("Summary statistics")
struct StatisticsTests {
    @Test("FG percentiles of 1..100 ms are within HdrHistogram's 3 significant digits")
    func percentiles() throws {
        var s = FGStats()
        for ms in 1 ... 100 {
            s.recordSent()
            s.recordAnswered(latencyNs: UInt64(ms) * 1_000_000)
        }
        s.recordSent()  // one unanswered
        let sum = s.summary(appID: 1, variant: .intnw)
        #expect(sum.requestsSent == 101 && sum.requestsAnswered == 100)
        let p50 = try #require(sum.p50Milliseconds), p95 = try #require(sum.p95Milliseconds)
        #expect(abs(p50 - 50) <= 0.05, "p50 \(p50)")
        #expect(abs(p95 - 95) <= 0.1, "p95 \(p95)")
        #expect(abs(try #require(sum.meanMilliseconds) - 50.5) < 1e-9)
        #expect(sum.maxMilliseconds == 100)
    }

    @Test("a percentile never leaves the observed range")
    func clamped() throws {
        var s = FGStats()
        s.recordAnswered(latencyNs: 1_234_567)
        #expect(try #require(s.percentileMilliseconds(99)) == 1.234567)
        #expect(try #require(s.percentileMilliseconds(1)) == 1.234567)
    }

    @Test("BG mean rate is acked bytes over first send to last ack")
    func bgMeanRate() throws {
        var s = BGStats()
        #expect(s.meanRateBytesPerSecond == nil)
        s.recordSent(bytes: 1000, atNs: 1_000_000_000)
        s.recordSent(bytes: 1000, atNs: 1_100_000_000)
        s.recordAcked(bytes: 1000, atNs: 1_500_000_000)
        s.recordAcked(bytes: 1000, atNs: 3_000_000_000)
        #expect(try #require(s.meanRateBytesPerSecond) == 1000)
        let sum = s.summary(appID: 2, variant: .plain)
        #expect(sum.bytesSent == 2000 && sum.bytesAcked == 2000 && sum.chunksAcked == 2)
    }

    @Test("progress reports the rate of each interval and the mean since the first send")
    func progress() {
        var s = BGStats()
        s.recordSent(bytes: 500, atNs: 10_000_000_000)
        s.recordAcked(bytes: 500, atNs: 10_400_000_000)
        let first = s.progress(appID: 2, variant: .plain, inFlight: 3, nowNs: 11_000_000_000)
        #expect(first.bytesAcked == 500 && first.inFlight == 3)
        #expect(first.rateBytesPerSecond == 500)
        #expect(first.elapsedSeconds == 1)
        s.recordAcked(bytes: 2000, atNs: 11_500_000_000)
        let second = s.progress(appID: 2, variant: .plain, inFlight: 0, nowNs: 12_000_000_000)
        #expect(second.rateBytesPerSecond == 2000)
        #expect(second.meanRateBytesPerSecond == 1250)
        #expect(second.jsonLine.hasPrefix(#"{"type":"bg_progress","app":2,"time_ns":12000000000,"elapsed_s":2.000,"bytes_acked":2500"#))
    }
}
