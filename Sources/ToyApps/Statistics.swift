import ToyProtocol
import Histogram

/// Running FG statistics of one client: counts and a latency histogram.
///
/// Percentiles come from an HdrHistogram (1 µs .. 1 h, 3 significant digits) so memory stays
/// constant however long the client runs; min, max and mean are exact.
public struct FGStats: Sendable {
    public private(set) var requestsSent: UInt64 = 0
    public private(set) var requestsAnswered: UInt64 = 0
    /// Replies whose sequence number matched no outstanding request.
    public private(set) var unexpectedReplies: UInt64 = 0
    private var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1000, highestTrackableValue: 3_600_000_000_000,
                                              numberOfSignificantValueDigits: .three)
    private var sumNs: Double = 0
    private var minNs = UInt64.max
    private var maxNs: UInt64 = 0

    public init() {}

    public mutating func recordSent() { requestsSent += 1 }
    public mutating func recordUnexpected() { unexpectedReplies += 1 }

    public mutating func recordAnswered(latencyNs: UInt64) {
        requestsAnswered += 1
        _ = histogram.record(min(max(latencyNs, histogram.lowestDiscernibleValue), histogram.highestTrackableValue))
        sumNs += Double(latencyNs)
        minNs = min(minNs, latencyNs)
        maxNs = max(maxNs, latencyNs)
    }

    /// Latency percentile `p` (0...100) in milliseconds, clamped into the observed [min, max];
    /// nil before the first answer.
    public func percentileMilliseconds(_ p: Double) -> Double? {
        guard requestsAnswered > 0 else { return nil }
        let v = min(max(histogram.valueAtPercentile(p), minNs), maxNs)
        return Double(v) / 1e6
    }

    public func summary(appID: UInt32, variant: ToyVariant) -> FGSummary {
        FGSummary(appID: appID, variant: variant, requestsSent: requestsSent, requestsAnswered: requestsAnswered,
                  unexpectedReplies: unexpectedReplies,
                  p50Milliseconds: percentileMilliseconds(50), p95Milliseconds: percentileMilliseconds(95),
                  meanMilliseconds: requestsAnswered > 0 ? sumNs / Double(requestsAnswered) / 1e6 : nil,
                  maxMilliseconds: requestsAnswered > 0 ? Double(maxNs) / 1e6 : nil)
    }
}


/// Running BG statistics of one client.
public struct BGStats: Sendable {
    public private(set) var chunksSent: UInt64 = 0
    public private(set) var chunksAcked: UInt64 = 0
    public private(set) var bytesSent: UInt64 = 0
    public private(set) var bytesAcked: UInt64 = 0
    /// Acks whose sequence number matched no chunk in flight.
    public private(set) var unexpectedAcks: UInt64 = 0
    /// CLOCK_REALTIME ns of the first chunk's send (0: none yet).
    public private(set) var firstSendNs: UInt64 = 0
    /// CLOCK_REALTIME ns of the latest ack (0: none yet).
    public private(set) var lastAckNs: UInt64 = 0
    private var lastReportNs: UInt64 = 0
    private var lastReportBytes: UInt64 = 0

    public init() {}

    public mutating func recordSent(bytes: Int, atNs: UInt64) {
        chunksSent += 1
        bytesSent += UInt64(bytes)
        if firstSendNs == 0 { firstSendNs = atNs }
    }

    public mutating func recordAcked(bytes: Int, atNs: UInt64) {
        chunksAcked += 1
        bytesAcked += UInt64(bytes)
        lastAckNs = max(lastAckNs, atNs)
    }

    public mutating func recordUnexpected() { unexpectedAcks += 1 }

    /// Acknowledged bytes per second from the first send to the last ack; nil before the first ack.
    public var meanRateBytesPerSecond: Double? {
        guard chunksAcked > 0, lastAckNs > firstSendNs else { return nil }
        return Double(bytesAcked) / (Double(lastAckNs - firstSendNs) / 1e9)
    }

    /// The progress record for `nowNs` (realtime), and resets the interval rate's baseline.
    /// The first report's interval starts at the first send.
    public mutating func progress(appID: UInt32, variant: ToyVariant, inFlight: Int, nowNs: UInt64) -> BGProgressRecord {
        let since = lastReportNs != 0 ? lastReportNs : (firstSendNs != 0 ? firstSendNs : nowNs)
        let interval = nowNs > since ? Double(nowNs - since) / 1e9 : 0
        let rate = interval > 0 ? Double(bytesAcked - lastReportBytes) / interval : 0
        let elapsed = firstSendNs != 0 && nowNs > firstSendNs ? Double(nowNs - firstSendNs) / 1e9 : 0
        lastReportNs = nowNs
        lastReportBytes = bytesAcked
        return BGProgressRecord(appID: appID, timeNs: nowNs, elapsedSeconds: elapsed, bytesAcked: bytesAcked,
                                chunksAcked: chunksAcked, inFlight: inFlight, rateBytesPerSecond: rate,
                                meanRateBytesPerSecond: elapsed > 0 ? Double(bytesAcked) / elapsed : 0,
                                variant: variant)
    }

    public func summary(appID: UInt32, variant: ToyVariant) -> BGSummary {
        BGSummary(appID: appID, variant: variant, chunksSent: chunksSent, chunksAcked: chunksAcked,
                  bytesSent: bytesSent, bytesAcked: bytesAcked, unexpectedAcks: unexpectedAcks,
                  meanRateBytesPerSecond: meanRateBytesPerSecond)
    }
}


