import Foundation
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

    public init(appID: UInt32, requestBytes: Int = 128, intervalSeconds: Double = 1, startDelaySeconds: Double = 0) {
        self.appID = appID
        self.requestBytes = requestBytes
        self.intervalSeconds = intervalSeconds
        self.startDelaySeconds = startDelaySeconds
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
// @unchecked: the pending request and its answer are touched only under `cond` (NSCondition).
final class FGClient: AnswerConsumer, @unchecked Sendable {
    let settings: FGClientSettings
    let variant: ToyVariant
    private let connection: ToyConnection
    private let sink: LineSink
    private let stop: StopToken
    private let warn: @Sendable (String) -> Void

    private let condition = NSCondition()
    private var table = InFlightTable(capacity: 1)
    private var answered: InFlightTable.Entry?
    private var ended = false
    private var endError: ToyAppError?
    private var stats = FGStats()

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
        stop.onStop { [condition] in
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Sleeps until the monotonic `deadlineNs`; false when a stop or the connection's end came first.
    private func sleep(untilMonotonicNs deadlineNs: UInt64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !stop.isStopped && !ended {
            let now = AppClock.monotonicNs()
            if now >= deadlineNs { return true }
            _ = condition.wait(until: Date(timeIntervalSinceNow: Double(deadlineNs - now) / 1e9))
        }
        return false
    }

    func deliver(_ message: ReceivedMessage) {
        condition.lock()
        let result = table.markAnswered(sequence: message.header.sequence, atNs: message.receivedNs,
                                        bytes: message.header.messageLength)
        switch result {
        case .completed(let e):
            answered = e
            condition.broadcast()
        case .awaitingSend:
            break
        case .unknown:
            stats.recordUnexpected()
        }
        condition.unlock()
        if result == .unknown {
            warn("app \(appID): reply with sequence \(message.header.sequence) matches no outstanding request")
        }
    }

    func connectionEnded(_ error: ToyAppError?) {
        condition.lock()
        ended = true
        endError = error
        condition.broadcast()
        condition.unlock()
    }

    /// Sends requests until a stop or a connection failure. Returns the failure, or nil when it
    /// ended because of a stop. A stop does not abandon a request in flight: its reply is awaited
    /// until the owner closes the connection (after its drain period).
    func run() -> ToyAppError? {
        var schedule = RequestSchedule(startNs: AppClock.monotonicNs(),
                                       intervalNs: max(1, AppClock.nanoseconds(seconds: settings.intervalSeconds)))
        var due = schedule.firstDueNs
        var sequence: UInt64 = 0
        let payload = UInt32(settings.requestBytes - ToyWire.headerLength)
        while true {
            guard sleep(untilMonotonicNs: due) else {
                condition.lock()
                defer { condition.unlock() }
                return ended ? failure(endError ?? .peerClosed("\(connection.peerDescription) closed the connection")) : nil
            }
            condition.lock()
            answered = nil
            table.insert(sequence: sequence, bytes: settings.requestBytes)
            condition.unlock()

            let sentNs: UInt64
            do throws(ToyAppError) {
                sentNs = try connection.send(ToyHeader(kind: .fgRequest, appID: appID, sequence: sequence, payloadLength: payload))
            } catch {
                condition.lock()
                _ = table.drain()
                condition.unlock()
                return failure(error)
            }

            condition.lock()
            stats.recordSent()
            if let e = table.markSent(sequence: sequence, atNs: sentNs) { answered = e }
            while answered == nil && !ended { condition.wait() }
            let entry = answered
            if let e = entry {
                stats.recordAnswered(latencyNs: e.answerNs! >= sentNs ? e.answerNs! - sentNs : 0)
            } else {
                _ = table.drain()
            }
            let error = endError
            condition.unlock()

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

    var summary: FGSummary {
        condition.lock()
        defer { condition.unlock() }
        return stats.summary(appID: appID, variant: variant)
    }
}
