import Foundation
import LinuxSupport
import ToyProtocol

/// Settings of one FG (interactive) client.
public struct FGClientSettings: Sendable, Equatable {
    public var appID: UInt32
    /// Whole request size in bytes, 24-byte header included.
    public var requestBytes: Int
    /// Seconds between request sends (the grid of `RequestSchedule`).
    public var intervalSeconds: Double
    /// Seconds after the session starts before the first request.
    public var startDelaySeconds: Double
    /// When set (CLOCK_MONOTONIC ns): requests go on the grid `gridOriginNs + k × interval`, the
    /// first at the first grid point after the app is ready, so that FG apps started at different
    /// moments (an FG-alone trial and a layout's trial) meet a trace at the same phase. Nil: the
    /// grid starts when the app is ready.
    public var gridOriginNs: UInt64?

    public init(appID: UInt32, requestBytes: Int = 128, intervalSeconds: Double = 1, startDelaySeconds: Double = 0,
                gridOriginNs: UInt64? = nil) {
        self.appID = appID
        self.requestBytes = requestBytes
        self.intervalSeconds = intervalSeconds
        self.startDelaySeconds = startDelaySeconds
        self.gridOriginNs = gridOriginNs
    }

    public func validate() throws(ToyAppError) {
        try validateMessageBytes(requestBytes, option: "--request-bytes")
        guard intervalSeconds.isFinite, intervalSeconds >= 0.001, intervalSeconds <= 86_400 else {
            throw .invalidArgument("--interval must be between 0.001 and 86400 seconds (got \(intervalSeconds))")
        }
    }
}

/// Checks a whole-message size given on the command line.
func validateMessageBytes(_ bytes: Int, option: String) throws(ToyAppError) {
    let max = ToyWire.headerLength + Int(ToyWire.maxPayloadLength)
    guard bytes >= ToyWire.headerLength, bytes <= max else {
        throw .invalidArgument("\(option) must be between \(ToyWire.headerLength) (the toy header) and \(max) bytes (got \(bytes))")
    }
}

/// The FG client: one request every interval, the next only after the previous was answered.
final class FGClient: AnswerConsumer, Sendable {
    let settings: FGClientSettings
    let variant: ToyVariant
    private let connection: ToyConnection
    private let sink: LineSink
    private let stop: StopToken
    private let warn: @Sendable (String) -> Void

    /// The request in flight, its answer, and how the connection ended.
    private struct State {
        var table = InFlightTable(capacity: 1)
        var answered: InFlightTable.Entry?
        var ended = false
        var endError: ToyAppError?
        var stats = FGStats()
    }
    private let state = WaitableMutex(State())

    var appID: UInt32 { settings.appID }
    var answerKind: ToyMessageKind { .fgReply }

    init(settings: FGClientSettings, connection: ToyConnection, sink: LineSink, stop: StopToken,
         warn: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.variant = connection.variant
        self.connection = connection
        self.sink = sink
        self.stop = stop
        self.warn = warn
        stop.onStop { [state] in state.broadcast() }
    }

    /// Sleeps until the monotonic `deadlineNs`; false when a stop or the connection's end came first.
    private func sleep(untilMonotonicNs deadlineNs: UInt64) -> Bool {
        state.wait(until: { [stop] s in stop.isStopped || s.ended }, deadlineMonotonicNs: deadlineNs) { _, interrupted in !interrupted }
    }

    func deliver(_ message: ReceivedMessage) {
        let result = state.update { s in
            let result = s.table.markAnswered(sequence: message.header.sequence, atNs: message.receivedNs,
                                              bytes: message.header.messageLength)
            switch result {
            case .completed(let e): s.answered = e
            case .awaitingSend: break
            case .unknown: s.stats.recordUnexpected()
            }
            return result
        }
        if result == .unknown {
            warn("app \(appID): reply with sequence \(message.header.sequence) matches no outstanding request")
        }
    }

    func connectionEnded(_ error: ToyAppError?) {
        state.update { s in
            s.ended = true
            s.endError = error
        }
    }

    /// Sends requests until a stop or a connection failure. Returns the failure, or nil when it
    /// ended because of a stop. A stop does not abandon a request in flight: its reply is awaited
    /// until the owner closes the connection (after its drain period).
    func run() -> ToyAppError? {
        let intervalNs = max(1, AppClock.nanoseconds(seconds: settings.intervalSeconds))
        let readyNs = AppClock.monotonicNs()
        let startNs = settings.gridOriginNs.map {
            RequestSchedule.alignedStart(originNs: $0, intervalNs: intervalNs, notBeforeNs: readyNs)
        } ?? readyNs
        var schedule = RequestSchedule(startNs: startNs, intervalNs: intervalNs)
        var due = schedule.firstDueNs
        var sequence: UInt64 = 0
        let payload = UInt32(settings.requestBytes - ToyWire.headerLength)
        while true {
            guard sleep(untilMonotonicNs: due) else {
                return state.withLock { s in
                    s.ended ? failure(s.endError ?? .peerClosed("\(connection.peerDescription) closed the connection")) : nil
                }
            }
            state.withLock { s in
                s.answered = nil
                s.table.insert(sequence: sequence, bytes: settings.requestBytes)
            }

            let sentNs: UInt64
            do throws(ToyAppError) {
                sentNs = try connection.send(ToyHeader(kind: .fgRequest, appID: appID, sequence: sequence, payloadLength: payload))
            } catch {
                state.withLock { _ = $0.table.drain() }
                return failure(error)
            }

            state.withLock { s in
                s.stats.recordSent()
                if let e = s.table.markSent(sequence: sequence, atNs: sentNs) { s.answered = e }
            }
            let (entry, error) = state.wait(until: { $0.answered != nil || $0.ended }) { s, _ -> (InFlightTable.Entry?, ToyAppError?) in
                if let e = s.answered {
                    s.stats.recordAnswered(latencyNs: e.answerNs! >= sentNs ? e.answerNs! - sentNs : 0)
                } else {
                    _ = s.table.drain()
                }
                return (s.answered, s.endError)
            }

            guard let e = entry else {
                sink.write(line: FGUnansweredRecord(appID: appID, sequence: sequence, sendNs: sentNs,
                                                    requestBytes: settings.requestBytes, variant: variant).jsonLine)
                return failure(error ?? .peerClosed("\(connection.peerDescription) closed the connection"))
            }
            sink.write(line: FGRequestRecord(appID: appID, sequence: sequence, sendNs: sentNs, receiveNs: e.answerNs!,
                                             requestBytes: settings.requestBytes, replyBytes: e.answerBytes ?? 0,
                                             variant: variant).jsonLine)
            sequence += 1
            due = schedule.next(afterAnswerAtNs: AppClock.monotonicNs())
        }
    }

    /// Failures caused by our own shutdown are not failures.
    private func failure(_ e: ToyAppError) -> ToyAppError? {
        stop.isStopped ? nil : e
    }

    var summary: FGSummary { state.withLock { $0.stats.summary(appID: appID, variant: variant) } }
}
