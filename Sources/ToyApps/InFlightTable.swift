/// Pairs outstanding requests (FG requests, BG chunks) with their replies/acks by sequence number.
///
/// Sequence numbers are assigned consecutively and at most `capacity` are outstanding, so an entry
/// lives in slot `sequence % capacity` and lookups cost nothing. The send time is known only after
/// the transport accepted the message, while the answer may already have arrived (a fast server
/// can ack a chunk before a blocking write returns): each entry therefore completes when both
/// its send and its answer are recorded, in either order.
public struct InFlightTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public var sequence: UInt64
        /// Whole message size in bytes.
        public var bytes: Int
        /// CLOCK_REALTIME ns of the send, once known.
        public var sendNs: UInt64?
        /// CLOCK_REALTIME ns of the answer, once it arrived.
        public var answerNs: UInt64?
        /// Size of the answer in bytes, once it arrived.
        public var answerBytes: Int?
    }

    /// What recording an answer did.
    public enum AnswerResult: Sendable, Equatable {
        /// Both halves are known: the entry left the table.
        case completed(Entry)
        /// The answer came before the send was recorded; `markSent` will complete it.
        case awaitingSend
        /// No outstanding entry has this sequence number (duplicate, stale or foreign answer).
        case unknown
    }

    private var slots: [Entry?]
    /// Outstanding entries.
    public private(set) var count = 0

    /// - Parameter capacity: most entries outstanding at once (at least 1).
    public init(capacity: Int) {
        precondition(capacity >= 1, "in-flight capacity must be at least 1")
        slots = Array(repeating: nil, count: capacity)
    }

    public var capacity: Int { slots.count }
    public var isFull: Bool { count == slots.count }
    public var isEmpty: Bool { count == 0 }

    private func slot(_ sequence: UInt64) -> Int { Int(sequence % UInt64(slots.count)) }

    /// Whether `sequence` can be added now: its slot is free. Answers may come out of order (an
    /// unlabeled message may take either network), so a table that is not full can still hold an
    /// older outstanding entry in that slot.
    public func canInsert(sequence: UInt64) -> Bool { slots[slot(sequence)] == nil }

    /// Adds an outstanding entry. Returns false (and changes nothing) when its slot is taken,
    /// i.e. the table is full or `sequence` collides with an older outstanding one.
    @discardableResult
    public mutating func insert(sequence: UInt64, bytes: Int) -> Bool {
        guard canInsert(sequence: sequence) else { return false }
        slots[slot(sequence)] = Entry(sequence: sequence, bytes: bytes)
        count += 1
        return true
    }

    /// Records when `sequence` was sent. Returns the entry if its answer had already arrived
    /// (it is then complete and removed), nil otherwise.
    public mutating func markSent(sequence: UInt64, atNs: UInt64) -> Entry? {
        let i = slot(sequence)
        guard var e = slots[i], e.sequence == sequence else { return nil }
        e.sendNs = atNs
        if e.answerNs != nil {
            slots[i] = nil
            count -= 1
            return e
        }
        slots[i] = e
        return nil
    }

    /// Records the answer to `sequence`, `bytes` long, arriving at `atNs`.
    public mutating func markAnswered(sequence: UInt64, atNs: UInt64, bytes: Int) -> AnswerResult {
        let i = slot(sequence)
        guard var e = slots[i], e.sequence == sequence, e.answerNs == nil else { return .unknown }
        e.answerNs = atNs
        e.answerBytes = bytes
        if e.sendNs != nil {
            slots[i] = nil
            count -= 1
            return .completed(e)
        }
        slots[i] = e
        return .awaitingSend
    }

    /// Removes and returns every outstanding entry, oldest first (at shutdown).
    public mutating func drain() -> [Entry] {
        let out = slots.compactMap { $0 }.sorted { $0.sequence < $1.sequence }
        for i in slots.indices { slots[i] = nil }
        count = 0
        return out
    }
}
