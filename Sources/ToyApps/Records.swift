import ToyProtocol
/// The JSON lines the apps log (one object per line, on stdout or the `--log` file).
///
/// Every line has `type` and, except for the server's, `app` and `variant`. Times are
/// CLOCK_REALTIME nanoseconds since the Unix epoch, so they can be compared with pcap timestamps.
///
/// | type          | written                         | fields                                                          |
/// |---------------|---------------------------------|-----------------------------------------------------------------|
/// | `fg`          | per answered FG request         | `seq`, `send_ns`, `recv_ns`, `latency_ms`, `request_bytes`, `reply_bytes` |
/// | `fg_unanswered` | per FG request with no reply at shutdown | `seq`, `send_ns`, `request_bytes`                     |
/// | `bg_chunk`    | per acknowledged BG chunk       | `seq`, `send_ns`, `ack_ns`, `bytes`                             |
/// | `bg_progress` | every second per BG client      | `time_ns`, `elapsed_s`, `bytes_acked`, `chunks_acked`, `in_flight`, `rate_Bps`, `mean_rate_Bps` |
/// | `summary`     | once per app at shutdown        | see `FGSummary` / `BGSummary` / `ServerSummary`                 |
/// | `server_connection` | server: connection opened/closed | `event`, `peer`, `error` (when closed by an error)    |

/// One answered FG request.
public struct FGRequestRecord: Sendable, Equatable {
    public var appID: UInt32
    public var sequence: UInt64
    /// CLOCK_REALTIME ns just before the request's first byte was handed to the socket/multisocket.
    public var sendNs: UInt64
    /// CLOCK_REALTIME ns when the whole reply had arrived.
    public var receiveNs: UInt64
    public var requestBytes: Int
    public var replyBytes: Int
    public var variant: ToyVariant

    public init(appID: UInt32, sequence: UInt64, sendNs: UInt64, receiveNs: UInt64, requestBytes: Int, replyBytes: Int,
                variant: ToyVariant) {
        self.appID = appID
        self.sequence = sequence
        self.sendNs = sendNs
        self.receiveNs = receiveNs
        self.requestBytes = requestBytes
        self.replyBytes = replyBytes
        self.variant = variant
    }

    /// Request-to-reply latency in nanoseconds (0 if the clock stepped backwards in between).
    public var latencyNs: UInt64 { receiveNs >= sendNs ? receiveNs - sendNs : 0 }

    public var jsonLine: String {
        var j = JSONLine()
        j.add("type", "fg")
        j.add("app", appID)
        j.add("seq", sequence)
        j.add("send_ns", sendNs)
        j.add("recv_ns", receiveNs)
        j.add("latency_ms", Double(latencyNs) / 1e6, decimals: 3)
        j.add("variant", variant.rawValue)
        j.add("request_bytes", requestBytes)
        j.add("reply_bytes", replyBytes)
        return j.string
    }
}

/// An FG request still unanswered when the client stopped.
public struct FGUnansweredRecord: Sendable, Equatable {
    public var appID: UInt32
    public var sequence: UInt64
    public var sendNs: UInt64
    public var requestBytes: Int
    public var variant: ToyVariant

    public var jsonLine: String {
        var j = JSONLine()
        j.add("type", "fg_unanswered")
        j.add("app", appID)
        j.add("seq", sequence)
        j.add("send_ns", sendNs)
        j.add("variant", variant.rawValue)
        j.add("request_bytes", requestBytes)
        return j.string
    }
}

/// One acknowledged BG chunk.
public struct BGChunkRecord: Sendable, Equatable {
    public var appID: UInt32
    public var sequence: UInt64
    /// CLOCK_REALTIME ns just before the chunk's first byte was handed to the socket/multisocket.
    public var sendNs: UInt64
    /// CLOCK_REALTIME ns when its bgAck had arrived.
    public var ackNs: UInt64
    /// Whole message size in bytes (header included).
    public var bytes: Int
    public var variant: ToyVariant

    public init(appID: UInt32, sequence: UInt64, sendNs: UInt64, ackNs: UInt64, bytes: Int, variant: ToyVariant) {
        self.appID = appID
        self.sequence = sequence
        self.sendNs = sendNs
        self.ackNs = ackNs
        self.bytes = bytes
        self.variant = variant
    }

    public var jsonLine: String {
        var j = JSONLine()
        j.add("type", "bg_chunk")
        j.add("app", appID)
        j.add("seq", sequence)
        j.add("send_ns", sendNs)
        j.add("ack_ns", ackNs)
        j.add("bytes", bytes)
        j.add("variant", variant.rawValue)
        return j.string
    }
}

/// A BG client's once-a-second progress report.
public struct BGProgressRecord: Sendable, Equatable {
    public var appID: UInt32
    /// CLOCK_REALTIME ns of the report.
    public var timeNs: UInt64
    /// Seconds since the client sent its first chunk.
    public var elapsedSeconds: Double
    public var bytesAcked: UInt64
    public var chunksAcked: UInt64
    public var inFlight: Int
    /// Bytes acknowledged since the previous report, per second.
    public var rateBytesPerSecond: Double
    /// Bytes acknowledged since the first chunk was sent, per second.
    public var meanRateBytesPerSecond: Double
    public var variant: ToyVariant

    public var jsonLine: String {
        var j = JSONLine()
        j.add("type", "bg_progress")
        j.add("app", appID)
        j.add("time_ns", timeNs)
        j.add("elapsed_s", elapsedSeconds, decimals: 3)
        j.add("bytes_acked", bytesAcked)
        j.add("chunks_acked", chunksAcked)
        j.add("in_flight", inFlight)
        j.add("rate_Bps", rateBytesPerSecond, decimals: 1)
        j.add("mean_rate_Bps", meanRateBytesPerSecond, decimals: 1)
        j.add("variant", variant.rawValue)
        return j.string
    }
}
