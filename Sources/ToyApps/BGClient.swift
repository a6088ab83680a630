import Foundation
import LinuxSupport
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
final class BGClient: AnswerConsumer, Sendable {
    let settings: BGClientSettings
    let variant: ToyVariant
    private let connection: ToyConnection
    private let sink: LineSink
    private let stop: StopToken

    /// The chunks in flight, the counts, and how the connection ended.
    private struct State {
        var table: InFlightTable
        var ended = false
        var endError: ToyAppError?
        var stats = BGStats()
    }
    private let state: WaitableMutex<State>
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
        state = WaitableMutex(State(table: InFlightTable(capacity: settings.depth)))
        stop.onStop { [state] in state.broadcast() }
    }

    func deliver(_ message: ReceivedMessage) {
        let (result, record) = state.update { s -> (InFlightTable.AnswerResult, BGChunkRecord?) in
            let result = s.table.markAnswered(sequence: message.header.sequence, atNs: message.receivedNs,
                                              bytes: message.header.messageLength)
            switch result {
            case .completed(let e): return (result, complete(e, &s.stats))
            case .awaitingSend: return (result, nil)
            case .unknown:
                s.stats.recordUnexpected()
                return (result, nil)
            }
        }
        if let record { sink.write(line: record.jsonLine) }
        if result == .unknown {
            warn("app \(appID): ack with sequence \(message.header.sequence) matches no chunk in flight")
        }
    }

    /// Books a chunk whose send and ack are both known (called with the state held).
    private func complete(_ e: InFlightTable.Entry, _ stats: inout BGStats) -> BGChunkRecord {
        stats.recordAcked(bytes: e.bytes, atNs: e.answerNs!)
        return BGChunkRecord(appID: appID, sequence: e.sequence, sendNs: e.sendNs!, ackNs: e.answerNs!, bytes: e.bytes,
                             variant: variant)
    }

    func connectionEnded(_ error: ToyAppError?) {
        state.update { s in
            s.ended = true
            s.endError = error
        }
    }

    /// Sends chunks until a stop or a connection failure, then waits for the acks of the chunks in
    /// flight until they all arrived or the owner closes the connection. Returns the failure, or
    /// nil when it ended because of a stop.
    func run() -> ToyAppError? {
        let payload = UInt32(settings.chunkBytes - ToyWire.headerLength)
        var sequence: UInt64 = 0
        var failure: ToyAppError?
        while true {
            // Wait for this sequence's own slot, not merely for room: with acks out of order the
            // slot may still hold an older chunk, and a chunk sent untracked would have its ack
            // counted as unexpected (a drive's wifi-preferred BG showed half its acks so).
            let go = state.wait(until: { [stop, sequence] s in s.table.canInsert(sequence: sequence) || s.ended || stop.isStopped }) { s, _ -> Bool in
                if s.ended || stop.isStopped { return false }
                let inserted = s.table.insert(sequence: sequence, bytes: settings.chunkBytes)
                precondition(inserted, "BG chunk \(sequence): its in-flight slot was free a moment ago")
                return true
            }
            if !go { break }

            let sentNs: UInt64
            do throws(ToyAppError) {
                sentNs = try connection.send(ToyHeader(kind: .bgChunk, appID: appID, sequence: sequence, payloadLength: payload))
            } catch {
                failure = error
                break
            }
            let record = state.update { s in
                s.stats.recordSent(bytes: settings.chunkBytes, atNs: sentNs)
                return s.table.markSent(sequence: sequence, atNs: sentNs).map { complete($0, &s.stats) }
            }
            if let record { sink.write(line: record.jsonLine) }
            sequence += 1
        }
        let sendFailure = failure
        failure = state.wait(until: { s in sendFailure != nil || s.table.isEmpty || s.ended }) { s, _ in
            guard sendFailure == nil && s.ended && !stop.isStopped else { return sendFailure }
            return s.endError ?? .peerClosed("\(connection.peerDescription) closed the connection")
        }
        return stop.isStopped ? nil : failure
    }

    /// Logs a progress line (called once a second by the owner); nothing before the first chunk
    /// (a BG app with a start delay has no progress to report yet).
    func reportProgress() {
        let r = state.withLock { s in
            s.stats.chunksSent == 0 ? nil
                : s.stats.progress(appID: appID, variant: variant, inFlight: s.table.count, nowNs: AppClock.realtimeNs())
        }
        if let r { sink.write(line: r.jsonLine) }
    }

    var summary: BGSummary { state.withLock { $0.stats.summary(appID: appID, variant: variant) } }
}
