import ToyProtocol

/// Decodes the toy messages of a plain-TCP app stream into `MessageRecord`s.
final class ToyStreamConsumer: StreamConsumer {
    private var decoder = ToyStreamDecoder()
    private var timeline = ChunkTimeline()
    private let log: MessageLog
    private let connection: Int
    private let fromA: Bool
    private var current: (header: ToyHeader, start: UInt64)?
    private var lastAvailable: UInt64 = 0
    private(set) var messages = 0

    init(log: MessageLog, connection: Int, fromA: Bool) {
        self.log = log
        self.connection = connection
        self.fromA = fromA
    }

    func consume(_ bytes: UnsafeRawBufferPointer, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        timeline.record(offset: offset, firstSeenNanoseconds: firstSeenNanoseconds)
        lastAvailable = availableNanoseconds
        decoder.consume(bytes) { event in handle(event, now: availableNanoseconds) }
        // Only a header in progress can still need older chunk times.
        timeline.prune(before: decoder.offset >= 24 ? decoder.offset - 24 : 0)
    }

    private func handle(_ event: ToyStreamEvent, now: UInt64) {
        switch event {
        case .header(let h, let start):
            current = (h, timeline.firstSeen(at: start) ?? now)
        case .message(let h, let start, _, let damaged):
            let startTime = current.map { $0.header == h ? $0.start : nil } ?? nil
            current = nil
            messages += 1
            log.append(MessageRecord(connection: connection, fromA: fromA, header: h,
                                     startNanoseconds: startTime ?? timeline.firstSeen(at: start) ?? now,
                                     endNanoseconds: now, damaged: damaged))
        case .desync(let offset, let error):
            log.error(connection: connection, "toy framing lost at stream offset \(offset): \(error)")
        }
    }

    func gap(length: UInt64, offset: UInt64, availableNanoseconds: UInt64) {
        decoder.skipGap(length) { event in handle(event, now: availableNanoseconds) }
    }

    func finish(atNanoseconds: UInt64) {
        if let c = current {
            // Started but never completed in the capture: keeps the request's send time.
            log.append(MessageRecord(connection: connection, fromA: fromA, header: c.header,
                                     startNanoseconds: c.start, endNanoseconds: nil, damaged: false))
            current = nil
        }
    }
}
