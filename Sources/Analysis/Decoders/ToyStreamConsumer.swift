import ToyProtocol

/// Decodes the toy messages of a plain-TCP app stream into `MessageRecord`s.
final class ToyStreamConsumer: StreamConsumer {
    private var decoder = ToyStreamDecoder()
    private var timeline = ChunkTimeline()
    private let log: MessageLog
    private let connection: Int
    private let fromA: Bool
    private var current: (header: ToyHeader, start: UInt64, startOffset: UInt64)?
    private var lastAvailable: UInt64 = 0
    /// One past the last stream byte delivered or skipped.
    private var streamEnd: UInt64 = 0
    private(set) var messages = 0

    init(log: MessageLog, connection: Int, fromA: Bool) {
        self.log = log
        self.connection = connection
        self.fromA = fromA
    }

    func consume(_ bytes: UnsafeRawBufferPointer, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        timeline.record(offset: offset, firstSeenNanoseconds: firstSeenNanoseconds)
        lastAvailable = availableNanoseconds
        streamEnd = offset + UInt64(bytes.count)
        decoder.consume(bytes) { event in handle(event, now: availableNanoseconds) }
        // A message in progress (its bytes are booked when it ends) or a header in progress can
        // still need older chunk times.
        timeline.prune(before: current?.startOffset ?? (decoder.offset >= 24 ? decoder.offset - 24 : 0))
    }

    /// Books the message's bytes `from ..< to` to its app at the time each part was first captured
    /// (bytes the capture never saw are not booked).
    private func book(_ h: ToyHeader, from: UInt64, to: UInt64) {
        timeline.forEachPart(from: from, to: to) { bytes, time in
            log.bookAppBytes(connection: connection, fromA: fromA, appID: h.appID, bytes: bytes, at: time)
        }
    }

    private func handle(_ event: ToyStreamEvent, now: UInt64) {
        switch event {
        case .header(let h, let start):
            current = (h, timeline.firstSeen(at: start) ?? now, start)
        case .message(let h, let start, let end, let damaged):
            let startTime = current.map { $0.header == h ? $0.start : nil } ?? nil
            current = nil
            book(h, from: start, to: end)
            messages += 1
            log.append(MessageRecord(connection: connection, fromA: fromA, header: h,
                                     startNanoseconds: startTime ?? timeline.firstSeen(at: start) ?? now,
                                     endNanoseconds: now, damaged: damaged))
        case .desync(let offset, let error):
            log.error(connection: connection, "toy framing lost at stream offset \(offset): \(error)")
        }
    }

    func truncated(length: UInt64, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        // Present on the wire (booked with the message), contents unknown.
        timeline.record(offset: offset, firstSeenNanoseconds: firstSeenNanoseconds)
        lastAvailable = availableNanoseconds
        streamEnd = offset + length
        decoder.skipGap(length) { event in handle(event, now: availableNanoseconds) }
        timeline.prune(before: current?.startOffset ?? (decoder.offset >= 24 ? decoder.offset - 24 : 0))
    }

    func gap(length: UInt64, offset: UInt64, availableNanoseconds: UInt64) {
        timeline.recordAbsent(offset: offset)
        streamEnd = offset + length
        decoder.skipGap(length) { event in handle(event, now: availableNanoseconds) }
    }

    func finish(atNanoseconds: UInt64) {
        if let c = current {
            // Started but never completed in the capture: keeps the request's send time, and
            // counts only the bytes that were sent.
            book(c.header, from: c.startOffset, to: max(streamEnd, c.startOffset))
            log.append(MessageRecord(connection: connection, fromA: fromA, header: c.header,
                                     startNanoseconds: c.start, endNanoseconds: nil, damaged: false))
            current = nil
        }
    }
}
