/// `results.json`: everything the analyzer measured, with stable keys. Bump `schemaVersion` on
/// any incompatible change. Units are in the key names (`Bytes`, `Ms`, `Seconds`,
/// `BytesPerSecond`, `Nanoseconds` = since the Unix epoch). Time series are in the CSV files.
public struct AnalysisResults: Codable, Sendable {
    public var schemaVersion = 1
    public var generator = "intnw-lab analyze"
    /// One entry per trial (run directory, or one set of pcaps).
    public var trials: [TrialResult]
    /// Means with 95% confidence intervals across trials, per app name.
    public var aggregate: AggregateResult
    /// Everything a reader should know about the inputs (truncation, drops, no IntNW traffic...).
    public var warnings: [String]
}

public struct TrialResult: Codable, Sendable {
    public var name: String
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
}

public struct AppResult: Codable, Sendable {
    public var name: String
    public var role: AppRole
    public var variant: AppVariant
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
    /// Request's first byte leaving the client to reply's last byte arriving there.
    public var latencyMs: LatencySummary?
}

public struct BGResult: Codable, Sendable {
    public var chunks: Int
    public var completeChunks: Int
    public var acks: Int
    public var chunkPayloadBytes: UInt64
}

/// Distinct TCP payload bytes (retransmissions counted once) of the app's connections.
public struct ThroughputResult: Codable, Sendable {
    public var uplinkBytes: UInt64
    public var downlinkBytes: UInt64
    /// From the app's first to its last payload byte.
    public var activeSeconds: Double
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
    public var meanUplinkBytesPerSecond: Double
    public var meanDownlinkBytesPerSecond: Double
}

/// Jain's fairness index over apps (nil when fewer than two apps qualify).
public struct FairnessResult: Codable, Sendable {
    /// Over BG apps' total throughput.
    public var bgThroughputJain: Double?
    /// Over every app's total throughput.
    public var allAppsThroughputJain: Double?
    /// Over FG apps' mean latency.
    public var fgLatencyJain: Double?
}

public struct AggregateResult: Codable, Sendable {
    public var trials: Int
    public var apps: [AggregateApp]
    public var bgThroughputJain: MeanWithCI?
    public var allAppsThroughputJain: MeanWithCI?
    public var fgLatencyJain: MeanWithCI?
}

public struct AggregateApp: Codable, Sendable {
    public var name: String
    public var role: AppRole
    public var variant: AppVariant
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
