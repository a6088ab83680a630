/// Sender side of IROB semantics, with no transport: id assignment, dependencies, chunking into
/// DATA frames, which connection carried which bytes, the unACKed set and retransmission.

/// Identifies one TCP connection of a session (local to this process, never on the wire).
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }
    public var description: String { "conn#\(rawValue)" }
}

/// Send-side bounds of one session.
public struct SendLimits: Sendable, Equatable {
    /// Bytes of IROBs from the lowest unACKed id up to the newest that may be outstanding. It
    /// bounds what the receiver must hold while a dependency is missing, so keep it well below
    /// the peer's `ReceiveLimits.hardLimitBytes - bufferBytes`.
    public var windowBytes: Int
    /// Largest IROB, in bytes.
    public var maxIROBBytes: Int
    /// Largest DATA payload per frame, in bytes.
    public var maxChunkBytes: Int
    /// Must match the receiver's `ReceiveLimits.perIROBOverheadBytes`.
    public var perIROBOverheadBytes: Int
    /// Must not exceed the receiver's `ReceiveLimits.idWindow`.
    public var idWindow: UInt64

    public init(windowBytes: Int = 16 << 20, maxIROBBytes: Int = 16 << 20, maxChunkBytes: Int = 64 << 10,
                perIROBOverheadBytes: Int = 128, idWindow: UInt64 = 65_536) {
        precondition(maxChunkBytes > 0 && maxChunkBytes <= Wire.maxDataPayload)
        precondition(maxIROBBytes <= windowBytes)
        self.windowBytes = windowBytes
        self.maxIROBBytes = maxIROBBytes
        self.maxChunkBytes = maxChunkBytes
        self.perIROBOverheadBytes = perIROBOverheadBytes
        self.idWindow = idWindow
    }
}

struct IROBSender {
    /// A class so bookkeeping updates happen in place (no copy-on-write through the dictionary).
    final class Outgoing {
        let begin: BeginIROB
        let bytes: [UInt8]
        /// Bytes that still have to be put on some connection.
        var unsent: ByteRanges
        /// Which connection carried which bytes (for retransmission when one dies).
        var placements: [(range: Range<UInt32>, connection: ConnectionID)] = []
        /// Connections that have carried this IROB's BEGIN_IROB.
        var begunOn: [ConnectionID] = []
        var queued = false
        /// Monotonic ns of the first and of the latest byte handed to a connection.
        var firstSentNs: UInt64 = 0
        var lastSentNs: UInt64 = 0
        /// Connection that carried the final bytes (END_IROB went there).
        var lastConnection: ConnectionID?
        /// How many times bytes were put back for resending.
        var resends = 0
        /// Bytes queued on the connection (kernel + send buffer) ahead of this IROB's first byte
        /// when it was first placed: its ACK timing includes sending those too.
        var queuedAheadBytes = 0
        init(begin: BeginIROB, bytes: [UInt8], unsent: ByteRanges) {
            self.begin = begin
            self.bytes = bytes
            self.unsent = unsent
        }
    }

    /// One chunk to put on a connection: optionally a BEGIN_IROB, then DATA for `range`, then
    /// END_IROB when `isLast`.
    struct Chunk {
        var begin: BeginIROB?
        var id: IROBID
        var range: Range<UInt32>
        var isLast: Bool
    }

    /// Timing of an acknowledged IROB, for passive estimation.
    struct AckSample {
        var id: IROBID
        var labels: Labels
        var lengthBytes: Int
        var firstSentNs: UInt64
        var lastSentNs: UInt64
        var connection: ConnectionID?
        var resent: Bool
        var queuedAheadBytes: Int
        /// Whether every byte went over the connection that carried the last one.
        var singleConnection: Bool
    }

    let limits: SendLimits
    private(set) var nextID: UInt64 = 1
    private(set) var unacked: [UInt64: Outgoing] = [:]
    /// Lowest id not yet acknowledged (== nextID when everything is).
    private(set) var lowestUnacked: UInt64 = 1
    /// Bytes charged for ids in lowestUnacked..<nextID.
    private(set) var windowUsedBytes = 0
    /// Costs of ACKed ids above `lowestUnacked` (they still count until the window slides past).
    private var ackedCosts: [UInt64: Int] = [:]
    /// Per label class, ids with unsent bytes, ascending (head index avoids O(n) removal).
    private var queues: [UInt32: (ids: [UInt64], head: Int)] = [:]
    /// Total bytes still to be put on a connection, per class (foreground, background).
    private(set) var unsentForegroundBytes = 0
    private(set) var unsentBackgroundBytes = 0

    init(limits: SendLimits = SendLimits()) { self.limits = limits }

    var unackedCount: Int { unacked.count }
    var lastAssignedID: UInt64 { nextID - 1 }

    private func cost(_ n: Int) -> Int { n + limits.perIROBOverheadBytes }

    /// Whether an IROB of `length` bytes fits the window now. A single IROB always fits an empty window.
    func canEnqueue(length: Int) -> Bool {
        if nextID - lowestUnacked >= limits.idWindow { return false }
        return windowUsedBytes == 0 || windowUsedBytes + cost(length) <= limits.windowBytes
    }

    enum EnqueueError: Error, Equatable {
        case tooLarge(Int)
        case badDependency(IROBID)
        case tooManyDependencies(Int)
    }

    /// Validates dependencies against ids assigned so far (each must be an earlier IROB).
    func validate(length: Int, dependencies: DependencySpec) throws(EnqueueError) {
        if length > limits.maxIROBBytes { throw .tooLarge(length) }
        if case .explicit(let deps) = dependencies {
            if deps.count > Wire.maxDependencies { throw .tooManyDependencies(deps.count) }
            for d in deps where d.rawValue == 0 || d.rawValue >= nextID { throw .badDependency(d) }
        }
    }

    /// Assigns the next id and queues the IROB. Call `canEnqueue` and `validate` first.
    mutating func enqueue(_ bytes: [UInt8], labels: Labels, dependencies: DependencySpec) -> IROBID {
        let id = IROBID(nextID)
        nextID += 1
        var deps = dependencies
        if case .explicit(let list) = deps {
            // Canonical form on the wire: sorted, no duplicates.
            deps = .explicit(Array(Set(list)).sorted())
        }
        let begin = BeginIROB(id: id, labels: labels, length: UInt32(bytes.count), dependencies: deps)
        unacked[id.rawValue] = Outgoing(begin: begin, bytes: bytes, unsent: ByteRanges(0..<UInt32(bytes.count)))
        windowUsedBytes += cost(bytes.count)
        addUnsent(labels, bytes.count)
        push(id.rawValue)
        return id
    }

    private mutating func addUnsent(_ labels: Labels, _ n: Int) {
        if labels.isBackground { unsentBackgroundBytes += n } else { unsentForegroundBytes += n }
    }

    private mutating func push(_ id: UInt64) {
        guard let irob = unacked[id], !irob.queued else { return }
        irob.queued = true
        let key = irob.begin.labels.rawValue
        var q = queues[key] ?? ([], 0)
        if q.ids.isEmpty || q.ids[q.ids.count - 1] < id {
            q.ids.append(id)
        } else {
            // Requeue after a failure: keep ascending order.
            var lo = q.head, hi = q.ids.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if q.ids[mid] < id { lo = mid + 1 } else { hi = mid }
            }
            q.ids.insert(id, at: lo)
        }
        queues[key] = q
    }

    /// Label classes that have unsent bytes, with the id at the head of each.
    var queueHeads: [(labels: Labels, id: IROBID)] {
        var out: [(Labels, IROBID)] = []
        for (key, q) in queues where q.head < q.ids.count {
            out.append((Labels(rawValue: key), IROBID(q.ids[q.head])))
        }
        return out
    }

    var hasUnsent: Bool { queues.values.contains { $0.head < $0.ids.count } }

    /// Takes the next chunk, at most `maxBytes`, of the head IROB of label class `labels`, and
    /// records that `connection` carries it.
    mutating func nextChunk(labels: Labels, maxBytes: Int, on connection: ConnectionID, nowNs: UInt64) -> Chunk? {
        let key = labels.rawValue
        guard var q = queues[key], q.head < q.ids.count else { return nil }
        let id = q.ids[q.head]
        var range0: Range<UInt32>?
        if let irob = unacked[id] {
            range0 = irob.begin.length == 0 ? 0..<0 : irob.unsent.first
        }
        guard let irob = unacked[id], let r = range0 else {
            // Stale entry (ACKed, or nothing left to send): drop it.
            q.head += 1
            compact(&q)
            queues[key] = q
            unacked[id]?.queued = false
            return nil
        }
        let n = UInt32(max(1, min(maxBytes, limits.maxChunkBytes, r.count)))
        let range = r.lowerBound..<(r.count == 0 ? r.lowerBound : r.lowerBound + min(n, UInt32(r.count)))
        var begin: BeginIROB?
        if !irob.begunOn.contains(connection) {
            begin = irob.begin
            irob.begunOn.append(connection)
        }
        irob.unsent.remove(range)
        if let last = irob.placements.last, last.connection == connection, last.range.upperBound == range.lowerBound {
            irob.placements[irob.placements.count - 1].range = last.range.lowerBound..<range.upperBound
        } else {
            irob.placements.append((range, connection))
        }
        if irob.firstSentNs == 0 { irob.firstSentNs = nowNs }
        irob.lastSentNs = nowNs
        let isLast = irob.unsent.isEmpty
        if isLast {
            irob.lastConnection = connection
            irob.queued = false
            q.head += 1
            compact(&q)
            queues[key] = q
        }
        addUnsent(irob.begin.labels, -range.count)
        return Chunk(begin: begin, id: irob.begin.id, range: range, isLast: isLast)
    }

    private func compact(_ q: inout (ids: [UInt64], head: Int)) {
        if q.head == q.ids.count {
            q.ids.removeAll(keepingCapacity: true)
            q.head = 0
        } else if q.head > 1024 && q.head * 2 > q.ids.count {
            q.ids.removeFirst(q.head)
            q.head = 0
        }
    }

    /// Bytes of IROB `id` (for encoding DATA).
    func withBytes<R>(of id: IROBID, _ body: (UnsafeRawBufferPointer) -> R) -> R? {
        guard let irob = unacked[id.rawValue] else { return nil }
        return irob.bytes.withUnsafeBytes(body)
    }

    /// The peer received IROB `id` completely. Returns its timing, or nil for a duplicate ACK.
    mutating func acknowledge(_ id: IROBID) -> AckSample? {
        let key = id.rawValue
        guard let irob = unacked.removeValue(forKey: key) else { return nil }
        if !irob.unsent.isEmpty { addUnsent(irob.begin.labels, -irob.unsent.count) }
        ackedCosts[key] = cost(Int(irob.begin.length))
        while lowestUnacked < nextID && unacked[lowestUnacked] == nil {
            windowUsedBytes -= ackedCosts.removeValue(forKey: lowestUnacked) ?? 0
            lowestUnacked += 1
        }
        return AckSample(id: id, labels: irob.begin.labels, lengthBytes: Int(irob.begin.length),
                         firstSentNs: irob.firstSentNs, lastSentNs: irob.lastSentNs,
                         connection: irob.lastConnection, resent: irob.resends > 0,
                         queuedAheadBytes: irob.queuedAheadBytes,
                         singleConnection: irob.placements.allSatisfy { $0.connection == irob.lastConnection })
    }

    /// Every id below `cumulative` was received: acknowledge them all.
    mutating func acknowledge(below cumulative: UInt64) -> [AckSample] {
        var out: [AckSample] = []
        while lowestUnacked < min(cumulative, nextID) {
            if let s = acknowledge(IROBID(lowestUnacked)) { out.append(s) } else { break }
        }
        return out
    }

    /// A connection died: everything it carried that is not ACKed goes back to the queues.
    /// Returns the ids requeued, ascending.
    @discardableResult
    mutating func connectionFailed(_ connection: ConnectionID) -> [IROBID] {
        var requeued: [IROBID] = []
        for key in Array(unacked.keys).sorted() {
            guard let irob = unacked[key] else { continue }
            let carried = irob.placements.filter { $0.connection == connection }.map(\.range)
            let wasBegun = irob.begunOn.contains(connection)
            if carried.isEmpty && !wasBegun { continue }
            let before = irob.unsent.count
            irob.placements.removeAll { $0.connection == connection }
            irob.begunOn.removeAll { $0 == connection }
            for r in carried { irob.unsent.insert(r) }
            if irob.lastConnection == connection { irob.lastConnection = nil }
            // An empty IROB exists on the wire only as its BEGIN: resend it if no live connection has it.
            let needsResend = !irob.unsent.isEmpty || (irob.begin.length == 0 && irob.begunOn.isEmpty)
            addUnsent(irob.begin.labels, irob.unsent.count - before)
            if needsResend { irob.resends += 1 }
            if needsResend {
                push(key)
                requeued.append(irob.begin.id)
            }
        }
        return requeued
    }

    /// The receiver asked for bytes again (RESEND_REQUEST).
    mutating func resend(_ r: ResendRequest) {
        let key = r.id.rawValue
        guard let irob = unacked[key] else { return }
        let before = irob.unsent.count
        if r.needsBegin {
            irob.begunOn.removeAll()
            irob.unsent = ByteRanges(0..<irob.begin.length)
        } else {
            let end = min(UInt64(r.offset) + UInt64(r.length), UInt64(irob.begin.length))
            if UInt64(r.offset) < end { irob.unsent.insert(r.offset..<UInt32(end)) }
        }
        addUnsent(irob.begin.labels, irob.unsent.count - before)
        let needsResend = !irob.unsent.isEmpty || (irob.begin.length == 0 && irob.begunOn.isEmpty)
        if needsResend { irob.resends += 1 }
        if needsResend { push(key) }
    }

    /// IROBs fully handed to `connection` and not ACKed (candidates for DATA_CHECK on another one).
    func unackedCarried(by connection: ConnectionID) -> [IROBID] {
        unacked.values.filter { $0.placements.contains { $0.connection == connection } || $0.lastConnection == connection }
            .map(\.begin.id).sorted()
    }
}
