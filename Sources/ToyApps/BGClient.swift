import Foundation
import ToyProtocol

/// Settings of one BG (bulk) client.
public struct BGClientSettings: Sendable, Equatable {
    public var appID: UInt32
    /// Whole chunk size in bytes, 24-byte header included.
    public var chunkBytes: Int
    /// Chunks in flight (sent and not yet acknowledged) at most.
    public var depth: Int
    /// Seconds after the session starts before the first chunk.
    public var startDelaySeconds: Double

    public init(appID: UInt32, chunkBytes: Int = 262_144, depth: Int = 4, startDelaySeconds: Double = 0) {
        self.appID = appID
        self.chunkBytes = chunkBytes
        self.depth = depth
        self.startDelaySeconds = startDelaySeconds
    }

    public func validate() throws(ToyAppError) {
        try validateMessageBytes(chunkBytes, option: "--chunk-bytes")
        guard depth >= 1, depth <= 1024 else {
            throw .invalidArgument("--depth must be between 1 and 1024 chunks (got \(depth))")
        }
    }
}

/// The BG client: sends chunks back to back while fewer than `depth` are unacknowledged.
// @unchecked: in-flight table and record are touched only under `cond` (NSCondition).
final class BGClient: AnswerConsumer, @unchecked Sendable {
    let settings: BGClientSettings
    let variant: ToyVariant
    private let connection: ToyConnection
    private let sink: LineSink
    private let stop: StopToken

    private let condition = NSCondition()
    private var table: InFlightTable
    private var ended = false
    private var endError: ToyAppError?
    private var stats = BGStats()
    private let warn: @Sendable (String) -> Void

    var appID: UInt32 { settings.appID }
    var answerKind: ToyMessageKind { .bgAck }

    init(settings: BGClientSettings, connection: ToyConnection, sink: LineSink, stop: StopToken,
         warn: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.variant = connection.variant
        self.connection = connection
        self.sink = sink
        self.stop = stop
        self.warn = warn
        table = InFlightTable(capacity: settings.depth)
        stop.onStop { [condition] in
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
    }

    func deliver(_ message: ReceivedMessage) {
        condition.lock()
        let result = table.markAnswered(sequence: message.header.sequence, atNs: message.receivedNs,
                                        bytes: message.header.messageLength)
        var record: BGChunkRecord?
        switch result {
        case .completed(let e):
            record = complete(e)
            condition.broadcast()
        case .awaitingSend:
            break
        case .unknown:
            stats.recordUnexpected()
        }
        condition.unlock()
        if let record { sink.write(line: record.jsonLine) }
        if result == .unknown {
            warn("app \(appID): ack with sequence \(message.header.sequence) matches no chunk in flight")
        }
    }

    /// Books a chunk whose send and ack are both known. Caller holds the lock.
    private func complete(_ e: InFlightTable.Entry) -> BGChunkRecord {
        stats.recordAcked(bytes: e.bytes, atNs: e.answerNs!)
        return BGChunkRecord(appID: appID, sequence: e.sequence, sendNs: e.sendNs!, ackNs: e.answerNs!, bytes: e.bytes,
                             variant: variant)
    }

    func connectionEnded(_ error: ToyAppError?) {
        condition.lock()
        ended = true
        endError = error
        condition.broadcast()
        condition.unlock()
    }

    /// Sends chunks until a stop or a connection failure, then waits for the acks of the chunks in
    /// flight until they all arrived or the owner closes the connection. Returns the failure, or
    /// nil when it ended because of a stop.
    func run() -> ToyAppError? {
        let payload = UInt32(settings.chunkBytes - ToyWire.headerLength)
        var sequence: UInt64 = 0
        var failure: ToyAppError?
        while true {
            condition.lock()
            while table.isFull && !ended && !stop.isStopped { condition.wait() }
            if ended || stop.isStopped {
                condition.unlock()
                break
            }
            table.insert(sequence: sequence, bytes: settings.chunkBytes)
            condition.unlock()

            let sentNs: UInt64
            do throws(ToyAppError) {
                sentNs = try connection.send(ToyHeader(kind: .bgChunk, appID: appID, sequence: sequence, payloadLength: payload))
            } catch {
                failure = error
                break
            }
            condition.lock()
            stats.recordSent(bytes: settings.chunkBytes, atNs: sentNs)
            let record = table.markSent(sequence: sequence, atNs: sentNs).map { complete($0) }
            if record != nil { condition.broadcast() }
            condition.unlock()
            if let record { sink.write(line: record.jsonLine) }
            sequence += 1
        }
        condition.lock()
        while !table.isEmpty && !ended && failure == nil { condition.wait() }
        if failure == nil && ended && !stop.isStopped {
            failure = endError ?? .peerClosed("\(connection.peerDescription) closed the connection")
        }
        condition.unlock()
        return stop.isStopped ? nil : failure
    }

    /// Logs a progress line (called once a second by the owner); nothing before the first chunk
    /// (a BG app with a start delay has no progress to report yet).
    func reportProgress() {
        condition.lock()
        let r = stats.chunksSent == 0 ? nil
            : stats.progress(appID: appID, variant: variant, inFlight: table.count, nowNs: AppClock.realtimeNs())
        condition.unlock()
        if let r { sink.write(line: r.jsonLine) }
    }

    var summary: BGSummary {
        condition.lock()
        defer { condition.unlock() }
        return stats.summary(appID: appID, variant: variant)
    }
}
