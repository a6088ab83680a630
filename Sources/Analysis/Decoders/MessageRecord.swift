import ToyProtocol

/// One toy message seen on the wire.
public struct MessageRecord: Sendable, Equatable {
    /// Index of the connection (in `ConnectionTable.connections`) that carried it.
    public var connection: Int
    /// True when sent from the connection's canonical endpoint A to B.
    public var fromA: Bool
    public var header: ToyHeader
    /// First capture of the message's first byte, ns since the epoch (IntNW: of the IROB's first frame).
    public var startNanoseconds: UInt64
    /// When its last byte became available in order at the capture point; nil when the message
    /// never completed in the capture.
    public var endNanoseconds: UInt64?
    /// True when bytes of the message were never captured.
    public var damaged: Bool
    /// IntNW only: the IROB that carried the message and whether its labels said foreground.
    public var irobID: UInt64?
    public var irobForeground: Bool?

    public init(connection: Int, fromA: Bool, header: ToyHeader, startNanoseconds: UInt64, endNanoseconds: UInt64?,
                damaged: Bool, irobID: UInt64? = nil, irobForeground: Bool? = nil) {
        self.connection = connection
        self.fromA = fromA
        self.header = header
        self.startNanoseconds = startNanoseconds
        self.endNanoseconds = endNanoseconds
        self.damaged = damaged
        self.irobID = irobID
        self.irobForeground = irobForeground
    }
}

/// Collects what the stream decoders find. One per analysis; not thread-safe.
public final class MessageLog {
    public private(set) var records: [MessageRecord] = []
    /// Framing problems per connection (desyncs, protocol errors).
    public private(set) var errorsByConnection: [Int: Int] = [:]
    public private(set) var firstErrorByConnection: [Int: String] = [:]

    /// Where an app's bytes crossed the wire: connection, direction, and the app id of the toy
    /// header inside the IROB (IntNW DATA payload bytes only; framing and control frames are not an
    /// app's). Toy streams on plain TCP are booked from the reassembler's stream bytes instead.
    public struct AppBytesKey: Hashable, Sendable {
        public var connection: Int
        public var fromA: Bool
        public var appID: UInt32
    }
    /// IntNW DATA payload bytes per app, binned by the time the bytes were first captured
    /// (bin i covers [origin + i·binWidth, origin + (i+1)·binWidth)).
    public private(set) var appBytesPerBin: [AppBytesKey: [UInt64]] = [:]
    public let originNanoseconds: UInt64
    public let binWidthNanoseconds: UInt64

    public init(originNanoseconds: UInt64 = 0, binWidthNanoseconds: UInt64 = 100_000_000) {
        self.originNanoseconds = originNanoseconds
        self.binWidthNanoseconds = max(binWidthNanoseconds, 1)
    }

    /// DATA payload bytes per IROB as seen on each connection direction (cross-checks).
    public struct IROBBytesKey: Hashable, Sendable {
        public var connection: Int
        public var fromA: Bool
        public var irob: UInt64
    }
    public private(set) var irobBytes: [IROBBytesKey: UInt64] = [:]

    public func bookIROBBytes(connection: Int, fromA: Bool, irob: UInt64, bytes: UInt64) {
        irobBytes[IROBBytesKey(connection: connection, fromA: fromA, irob: irob), default: 0] += bytes
    }

    /// IntNW bytes that crossed the wire but could not be booked to an app, per connection
    /// direction (besides what the frame parser counts itself; see `IntNWDecodingStats`).
    public struct DirectionKey: Hashable, Sendable {
        public var connection: Int
        public var fromA: Bool
    }
    public private(set) var unattributedBytes: [DirectionKey: UInt64] = [:]

    public func bookUnattributed(connection: Int, fromA: Bool, bytes: UInt64) {
        guard bytes > 0 else { return }
        unattributedBytes[DirectionKey(connection: connection, fromA: fromA), default: 0] += bytes
    }

    /// Books `bytes` of app `appID`'s payload on a connection direction at capture time `time`.
    public func bookAppBytes(connection: Int, fromA: Bool, appID: UInt32, bytes: UInt64, at time: UInt64) {
        guard bytes > 0 else { return }
        let bin = time > originNanoseconds ? Int((time - originNanoseconds) / binWidthNanoseconds) : 0
        let key = AppBytesKey(connection: connection, fromA: fromA, appID: appID)
        var bins = appBytesPerBin.removeValue(forKey: key) ?? []
        if bin >= bins.count { bins.append(contentsOf: repeatElement(0, count: bin + 1 - bins.count)) }
        bins[bin] += bytes
        appBytesPerBin[key] = bins
    }

    public func append(_ r: MessageRecord) { records.append(r) }

    public func error(connection: Int, _ text: @autoclosure () -> String) {
        errorsByConnection[connection, default: 0] += 1
        if firstErrorByConnection[connection] == nil { firstErrorByConnection[connection] = text() }
    }
}

/// Which application protocol a stream carried.
public enum StreamProtocol: String, Codable, Sendable {
    /// Toy messages straight on TCP (the plain-TCP app variant).
    case toy
    /// IntNW frames (the IntNW app variant).
    case intnw
    /// Neither was recognized (or no payload).
    case unknown
}
