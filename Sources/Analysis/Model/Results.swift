import ToyProtocol

/// `results.json`: everything the analyzer measured, with stable keys. Bump `schemaVersion` on
/// any incompatible change. Units are in the key names (`Bytes`, `Ms`, `Seconds`,
/// `BytesPerSecond`, `Nanoseconds` = since the Unix epoch). Time series are in the CSV files.
public struct AnalysisResults: Codable, Sendable {
    /// 2: per-role fairness with common windows (allAppsThroughputJain removed), per-variant
    /// aggregates, app-perceived latency, one accounting rule and rate window.
    public var schemaVersion = 2
    public var generator = "intnw-lab analyze"
    /// One entry per trial (run directory, or one set of pcaps).
    public var trials: [TrialResult]
    /// Means with 95% confidence intervals across trials, per (experiment variant, app).
    public var aggregate: AggregateResult
    /// Everything a reader should know about the inputs (truncation, drops, no IntNW traffic...).
    public var warnings: [String]
}

public struct TrialResult: Codable, Sendable {
    public var name: String
    /// The experiment variant the trial ran (nil outside experiments); aggregates never pool variants.
    public var variant: String?
    /// Capture time 0 of this trial's time axes, ns since the Unix epoch.
    public var originNanoseconds: UInt64
    /// From the first to the last captured packet.
    public var durationSeconds: Double
    public var captures: [CaptureResult]
    public var connections: [ConnectionResult]
    public var apps: [AppResult]
    public var interfaces: [InterfaceResult]
    public var fairness: FairnessResult
    /// Whether any IntNW-framed stream was decoded.
    public var intnwConnections: Int
    public var toyConnections: Int
    /// Analysis bins (per interface and direction) in which the apps' bytes on an interface exceeded
    /// the bytes captured there: always 0 unless the accounting is broken (each is also a warning).
    public var accountingViolations: Int
    /// 1 s bins (per app or interface, per link and direction, bytes booked after the bottleneck)
    /// holding more than the trace's capacity for that second plus a stated tolerance (one 1500-byte
    /// packet and 10 ms at the link's rate); each is also a warning. nil when the trial's capacity
    /// schedule is unknown (no `oracle.txt` / `replay-start.json`).
    public var capacityViolations: Int? = nil
}

public struct CaptureResult: Codable, Sendable {
    public var file: String
    public var interface: String
    public var side: String
    public var linkType: String?
    public var packets: Int
    public var tcpPackets: Int
    public var skippedNotIPv4: Int
    public var skippedNotTCP: Int
    public var skippedFragments: Int
    public var skippedMalformed: Int
    /// libpcap's description when the file ends inside a packet record.
    public var truncation: String?
    /// Packets shorter than on the wire (cut by the snap length), and the snap length; nil when none.
    public var snappedPackets: Int?
    public var snapLength: Int?
    /// Set when the file could not be read at all.
    public var error: String?
    /// From `<file>.stats.json` when the capture wrote one.
    public var kernelReceived: UInt64?
    public var kernelDropped: UInt64?
    public var interfaceDropped: UInt64?
}

public struct ConnectionResult: Codable, Sendable {
    public var id: Int
    public var capture: String
    public var interface: String
    /// "ip:port" of the side that opened the connection (or the best guess, see `clientFrom`).
    public var client: String
    public var server: String
    /// How the client side was determined: `syn`, `metadata`, `messages` or `port`.
    public var clientFrom: String
    public var app: String?
    public var `protocol`: StreamProtocol
    public var uplink: DirectionStats
    public var downlink: DirectionStats
    public var messagesUp: Int
    public var messagesDown: Int
    public var framingErrors: Int
    public var firstFramingError: String?
    /// IntNW connections: frames decoded per direction, by type name (HELLO, BEGIN_IROB, DATA, ...).
    public var intnwFramesUp: [String: Int]?
    public var intnwFramesDown: [String: Int]?
    /// IntNW connections: what the decoder could not read per direction (framing lost to the snap
    /// length or a capture hole, resynchronizations, bytes not attributable to an app; all zero
    /// for a complete capture; docs/analysis.md, "Snaplen").
    public var intnwDecodingUp: IntNWDecodingStats? = nil
    public var intnwDecodingDown: IntNWDecodingStats? = nil
}

public struct AppResult: Codable, Sendable {
    public var name: String
    public var role: AppRole
    public var variant: ToyVariant
    public var appId: UInt32?
    public var connections: [Int]
    /// Toy messages seen, by kind (`fgRequest`, `fgReply`, `bgChunk`, `bgAck`).
    public var messages: [String: Int]
    /// IntNW only: IROBs whose FG/BG label disagrees with the toy message kind inside.
    public var labelMismatches: Int
    public var labeledForeground: Int
    public var labeledBackground: Int
    public var fg: FGResult?
    public var bg: BGResult?
    public var throughput: ThroughputResult
    /// Wire numbers against the app's own log, when the metadata names one.
    public var logCheck: AppLogCheck?
}

public struct FGResult: Codable, Sendable {
    public var requests: Int
    public var replies: Int
    /// Requests with no complete reply in the capture.
    public var unanswered: Int
    /// On the wire: request's first byte leaving the client to reply's last byte arriving there.
    /// It cannot see time a request spent queued inside the client (behind BG data).
    public var latencyMs: LatencySummary?
    /// As the app felt it (its log: submit to whole reply), over every answered request it
    /// logged; nil without a log. Verdicts about user experience use this one.
    public var appLatencyMs: LatencySummary?
    /// Requests the app logged as never answered (nil without a log).
    public var appUnanswered: Int?
    /// Requests whose app and wire latencies differ by more than max(10 ms, 10% of the app's):
    /// the difference is time queued in the client before the request reached the wire.
    public var clientQueued: [QueuedRequest]?
}

/// One FG request that waited inside the client: app-perceived vs wire latency.
public struct QueuedRequest: Codable, Sendable, Equatable {
    public var sequence: UInt64
    public var appMs: Double
    public var wireMs: Double
    public var differenceMs: Double
}

public struct BGResult: Codable, Sendable {
    public var chunks: Int
    public var completeChunks: Int
    public var acks: Int
    public var chunkPayloadBytes: UInt64
}

/// The bytes that crossed the wire for the app (docs/analysis.md, "Accounting"): on IntNW
/// connections the DATA payload bytes of IROBs whose toy header carries the app's id, on plain TCP
/// the distinct stream bytes (retransmissions counted once) of the app's connections. Booked at
/// their first capture; a message that never finished counts only the bytes that were sent.
public struct ThroughputResult: Codable, Sendable {
    public var uplinkBytes: UInt64
    public var downlinkBytes: UInt64
    /// From the start of the first to the end of the last analysis bin holding the app's bytes
    /// (informational; rates do not use it).
    public var activeSeconds: Double
    /// The window every rate of the trial uses (apps and interfaces alike): from the trial's first
    /// to its last captured packet. Rates below are bytes / windowSeconds.
    public var windowSeconds: Double
    public var uplinkBytesPerSecond: Double
    public var downlinkBytesPerSecond: Double
    public var totalBytesPerSecond: Double
}

/// All TCP payload bytes captured on one interface (retransmissions included).
public struct InterfaceResult: Codable, Sendable {
    public var capture: String
    public var interface: String
    public var side: String
    public var uplinkBytes: UInt64
    public var downlinkBytes: UInt64
    public var retransmittedBytes: UInt64
    /// Bytes / `windowSeconds`, the same trial window the app rates use.
    public var meanUplinkBytesPerSecond: Double
    public var meanDownlinkBytesPerSecond: Double
    public var windowSeconds: Double
}

/// Jain's fairness index (Σx)²/(n·Σx²) per role, over the window all apps of that role were
/// active (nil when fewer than two apps qualify or they never overlap). Apps of different roles are
/// never compared (a 0.3 kB/s FG app against a bulk BG app says nothing about fairness).
public struct FairnessResult: Codable, Sendable {
    /// Over BG apps' bytes per second (both directions) within their common window, each divided by
    /// its demand: the toy BG apps are all bulk senders (unlimited demand), so equal demand.
    public var bgThroughputJain: Double?
    /// Over FG apps' mean app-perceived latency (wire where an app has no log) of the requests
    /// sent within their common window.
    public var fgLatencyJain: Double?
    /// The common windows used, seconds.
    public var bgWindowSeconds: Double?
    public var fgWindowSeconds: Double?
}

public struct AggregateResult: Codable, Sendable {
    public var trials: Int
    public var apps: [AggregateApp]
    public var bgThroughputJain: MeanWithCI?
    public var fgLatencyJain: MeanWithCI?
}

public struct AggregateApp: Codable, Sendable {
    public var name: String
    /// The experiment variant (layout, policy...) these trials ran; nil when none was given.
    public var experimentVariant: String?
    public var role: AppRole
    public var variant: ToyVariant
    /// Trials in which the app appeared.
    public var trials: Int
    public var fgLatencyMeanMs: MeanWithCI?
    public var fgLatencyP50Ms: MeanWithCI?
    public var fgLatencyP95Ms: MeanWithCI?
    public var fgLatencyP99Ms: MeanWithCI?
    public var totalBytesPerSecond: MeanWithCI?
    public var uplinkBytesPerSecond: MeanWithCI?
    public var downlinkBytesPerSecond: MeanWithCI?
}
