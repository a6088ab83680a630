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
///
/// This file is the whole contract: the apps write these types (`jsonLine`, hand-built so field order
/// and decimals stay fixed) and the analyzer reads them back through their `Decodable` conformance
/// (`AppLogRecord`); nothing else parses the logs. The keys below are the on-disk names.

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

    public init(appID: UInt32, sequence: UInt64, sendNs: UInt64, requestBytes: Int, variant: ToyVariant) {
        self.appID = appID
        self.sequence = sequence
        self.sendNs = sendNs
        self.requestBytes = requestBytes
        self.variant = variant
    }

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

    public init(appID: UInt32, timeNs: UInt64, elapsedSeconds: Double, bytesAcked: UInt64, chunksAcked: UInt64, inFlight: Int,
                rateBytesPerSecond: Double, meanRateBytesPerSecond: Double, variant: ToyVariant) {
        self.appID = appID
        self.timeNs = timeNs
        self.elapsedSeconds = elapsedSeconds
        self.bytesAcked = bytesAcked
        self.chunksAcked = chunksAcked
        self.inFlight = inFlight
        self.rateBytesPerSecond = rateBytesPerSecond
        self.meanRateBytesPerSecond = meanRateBytesPerSecond
        self.variant = variant
    }

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

/// Final FG numbers of one client.
public struct FGSummary: Sendable, Equatable {
    public var appID: UInt32
    public var variant: ToyVariant
    public var requestsSent: UInt64
    public var requestsAnswered: UInt64
    public var unexpectedReplies: UInt64
    public var p50Milliseconds: Double?
    public var p95Milliseconds: Double?
    public var meanMilliseconds: Double?
    public var maxMilliseconds: Double?

    public init(appID: UInt32, variant: ToyVariant, requestsSent: UInt64, requestsAnswered: UInt64, unexpectedReplies: UInt64,
                p50Milliseconds: Double?, p95Milliseconds: Double?, meanMilliseconds: Double?, maxMilliseconds: Double?) {
        self.appID = appID
        self.variant = variant
        self.requestsSent = requestsSent
        self.requestsAnswered = requestsAnswered
        self.unexpectedReplies = unexpectedReplies
        self.p50Milliseconds = p50Milliseconds
        self.p95Milliseconds = p95Milliseconds
        self.meanMilliseconds = meanMilliseconds
        self.maxMilliseconds = maxMilliseconds
    }

    public var jsonLine: String {
        var j = JSONLine()
        j.add("type", "summary")
        j.add("role", "fg")
        j.add("app", appID)
        j.add("variant", variant.rawValue)
        j.add("requests_sent", requestsSent)
        j.add("requests_answered", requestsAnswered)
        j.add("unexpected_replies", unexpectedReplies)
        j.add("p50_ms", p50Milliseconds, decimals: 3)
        j.add("p95_ms", p95Milliseconds, decimals: 3)
        j.add("mean_ms", meanMilliseconds, decimals: 3)
        j.add("max_ms", maxMilliseconds, decimals: 3)
        return j.string
    }

    /// One human-readable clause for the stderr summary line.
    public var text: String {
        var s = "fg app \(appID): \(requestsSent) requests sent, \(requestsAnswered) answered"
        if let p50 = p50Milliseconds, let p95 = p95Milliseconds {
            s += ", p50 \(JSONLine.fixed(p50, decimals: 2)) ms, p95 \(JSONLine.fixed(p95, decimals: 2)) ms"
        }
        if unexpectedReplies > 0 { s += ", \(unexpectedReplies) unexpected replies" }
        return s
    }
}

/// Final BG numbers of one client.
public struct BGSummary: Sendable, Equatable {
    public var appID: UInt32
    public var variant: ToyVariant
    public var chunksSent: UInt64
    public var chunksAcked: UInt64
    public var bytesSent: UInt64
    public var bytesAcked: UInt64
    public var unexpectedAcks: UInt64
    public var meanRateBytesPerSecond: Double?

    public init(appID: UInt32, variant: ToyVariant, chunksSent: UInt64, chunksAcked: UInt64, bytesSent: UInt64, bytesAcked: UInt64,
                unexpectedAcks: UInt64, meanRateBytesPerSecond: Double?) {
        self.appID = appID
        self.variant = variant
        self.chunksSent = chunksSent
        self.chunksAcked = chunksAcked
        self.bytesSent = bytesSent
        self.bytesAcked = bytesAcked
        self.unexpectedAcks = unexpectedAcks
        self.meanRateBytesPerSecond = meanRateBytesPerSecond
    }

    public var jsonLine: String {
        var j = JSONLine()
        j.add("type", "summary")
        j.add("role", "bg")
        j.add("app", appID)
        j.add("variant", variant.rawValue)
        j.add("chunks_sent", chunksSent)
        j.add("chunks_acked", chunksAcked)
        j.add("bytes_sent", bytesSent)
        j.add("bytes_acked", bytesAcked)
        j.add("unexpected_acks", unexpectedAcks)
        j.add("mean_rate_Bps", meanRateBytesPerSecond, decimals: 1)
        return j.string
    }

    public var text: String {
        var s = "bg app \(appID): \(chunksAcked)/\(chunksSent) chunks acked, \(bytesAcked) bytes acked"
        if let r = meanRateBytesPerSecond { s += ", mean \(JSONLine.fixed(r / 1e6, decimals: 3)) MB/s" }
        if unexpectedAcks > 0 { s += ", \(unexpectedAcks) unexpected acks" }
        return s
    }
}

/// Final numbers of a server.
public struct ServerSummary: Sendable, Equatable {
    public var variant: ToyVariant
    public var connections: UInt64 = 0
    public var fgRequestsAnswered: UInt64 = 0
    public var bgChunksAcked: UInt64 = 0
    /// Whole toy messages received, in bytes (headers included).
    public var bytesReceived: UInt64 = 0
    /// Connections closed because of a protocol violation or I/O error.
    public var connectionErrors: UInt64 = 0
    /// Connections closed at once because `maxConnections` were being served.
    public var connectionsRefused: UInt64 = 0

    public init(variant: ToyVariant) { self.variant = variant }

    public var jsonLine: String {
        var j = JSONLine()
        j.add("type", "summary")
        j.add("role", "server")
        j.add("variant", variant.rawValue)
        j.add("connections", connections)
        j.add("fg_requests_answered", fgRequestsAnswered)
        j.add("bg_chunks_acked", bgChunksAcked)
        j.add("bytes_received", bytesReceived)
        j.add("connection_errors", connectionErrors)
        j.add("connections_refused", connectionsRefused)
        return j.string
    }

    public var text: String {
        "server (\(variant)): \(connections) connections, \(fgRequestsAnswered) FG requests answered, "
            + "\(bgChunksAcked) BG chunks acked, \(bytesReceived) bytes received"
            + (connectionErrors > 0 ? ", \(connectionErrors) connections closed by errors" : "")
            + (connectionsRefused > 0 ? ", \(connectionsRefused) connections refused (at --max-connections)" : "")
    }
}

// MARK: - Decoding (the on-disk keys)

extension FGRequestRecord: Codable {
    enum CodingKeys: String, CodingKey {
        case appID = "app", sequence = "seq", sendNs = "send_ns", receiveNs = "recv_ns"
        case requestBytes = "request_bytes", replyBytes = "reply_bytes", variant
    }
}

extension FGUnansweredRecord: Codable {
    enum CodingKeys: String, CodingKey {
        case appID = "app", sequence = "seq", sendNs = "send_ns", requestBytes = "request_bytes", variant
    }
}

extension BGChunkRecord: Codable {
    enum CodingKeys: String, CodingKey {
        case appID = "app", sequence = "seq", sendNs = "send_ns", ackNs = "ack_ns", bytes, variant
    }
}

extension BGProgressRecord: Codable {
    enum CodingKeys: String, CodingKey {
        case appID = "app", timeNs = "time_ns", elapsedSeconds = "elapsed_s", bytesAcked = "bytes_acked"
        case chunksAcked = "chunks_acked", inFlight = "in_flight", rateBytesPerSecond = "rate_Bps"
        case meanRateBytesPerSecond = "mean_rate_Bps", variant
    }
}

extension FGSummary: Codable {
    enum CodingKeys: String, CodingKey {
        case appID = "app", variant, requestsSent = "requests_sent", requestsAnswered = "requests_answered"
        case unexpectedReplies = "unexpected_replies", p50Milliseconds = "p50_ms", p95Milliseconds = "p95_ms"
        case meanMilliseconds = "mean_ms", maxMilliseconds = "max_ms"
    }
}

extension BGSummary: Codable {
    enum CodingKeys: String, CodingKey {
        case appID = "app", variant, chunksSent = "chunks_sent", chunksAcked = "chunks_acked", bytesSent = "bytes_sent"
        case bytesAcked = "bytes_acked", unexpectedAcks = "unexpected_acks", meanRateBytesPerSecond = "mean_rate_Bps"
    }
}

extension ServerSummary: Codable {
    enum CodingKeys: String, CodingKey {
        case variant, connections, fgRequestsAnswered = "fg_requests_answered", bgChunksAcked = "bg_chunks_acked"
        case bytesReceived = "bytes_received", connectionErrors = "connection_errors"
    }
}

/// One line of an app's log, by its `type` (and, for summaries, `role`). Decoding a line whose
/// `type` is known but whose fields are missing or mistyped throws; a `type` this contract does not
/// read (`server_connection`, or one a later app adds) decodes as `.other`.
public enum AppLogRecord: Sendable, Equatable, Decodable {
    case fg(FGRequestRecord)
    case fgUnanswered(FGUnansweredRecord)
    case bgChunk(BGChunkRecord)
    case bgProgress(BGProgressRecord)
    case fgSummary(FGSummary)
    case bgSummary(BGSummary)
    case serverSummary(ServerSummary)
    case other(type: String)

    private enum Tag: String, CodingKey { case type, role }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Tag.self)
        let type = try c.decode(String.self, forKey: .type)
        switch type {
        case "fg": self = .fg(try FGRequestRecord(from: decoder))
        case "fg_unanswered": self = .fgUnanswered(try FGUnansweredRecord(from: decoder))
        case "bg_chunk": self = .bgChunk(try BGChunkRecord(from: decoder))
        case "bg_progress": self = .bgProgress(try BGProgressRecord(from: decoder))
        case "summary":
            let role = try c.decode(String.self, forKey: .role)
            switch role {
            case "fg": self = .fgSummary(try FGSummary(from: decoder))
            case "bg": self = .bgSummary(try BGSummary(from: decoder))
            case "server": self = .serverSummary(try ServerSummary(from: decoder))
            default:
                throw DecodingError.dataCorruptedError(forKey: .role, in: c, debugDescription: "unknown summary role \(role)")
            }
        default: self = .other(type: type)
        }
    }

    /// The app the line is about (nil for server lines and unknown types).
    public var appID: UInt32? {
        switch self {
        case .fg(let r): return r.appID
        case .fgUnanswered(let r): return r.appID
        case .bgChunk(let r): return r.appID
        case .bgProgress(let r): return r.appID
        case .fgSummary(let r): return r.appID
        case .bgSummary(let r): return r.appID
        case .serverSummary, .other: return nil
        }
    }
}
