/// Receiver side of IROB semantics, with no transport: reassembly, exactly-once, release in
/// dependency order, bounded buffering. The runtime feeds it decoded frames and drains what it
/// releases; unit tests drive it directly.

/// Receive-side bounds of one session.
public struct ReceiveLimits: Sendable, Equatable {
    /// Bytes of begun-but-not-consumed IROBs above which the receiver stops reading while the
    /// application has something to receive (backpressure).
    public var bufferBytes: Int
    /// Bytes beyond which the peer is in violation (it sent more than can ever be released).
    public var hardLimitBytes: Int
    /// Bookkeeping charged per IROB on top of its length, in bytes, so empty IROBs are not free.
    public var perIROBOverheadBytes: Int
    /// Largest distance of an IROB id above the lowest unreleased id.
    public var idWindow: UInt64

    public init(bufferBytes: Int = 32 << 20, hardLimitBytes: Int = 64 << 20,
                perIROBOverheadBytes: Int = 128, idWindow: UInt64 = 65_536) {
        precondition(hardLimitBytes >= bufferBytes && bufferBytes > 0)
        self.bufferBytes = bufferBytes
        self.hardLimitBytes = hardLimitBytes
        self.perIROBOverheadBytes = perIROBOverheadBytes
        self.idWindow = idWindow
    }
}

/// One IROB released to the application.
public struct ReceivedIROB: Sendable, Equatable {
    public var id: IROBID
    public var labels: Labels
    public var bytes: [UInt8]
}

/// One bit per byte of an IROB: which bytes have arrived.
struct ByteBitmap: Sendable {
    private var words: [UInt64]
    let length: UInt32
    /// Bytes marked.
    private(set) var count = 0

    init(length: UInt32) {
        self.length = length
        words = [UInt64](repeating: 0, count: (Int(length) + 63) / 64)
    }

    var isComplete: Bool { count == Int(length) }

    /// Marks `r` (within 0..<length); returns how many bytes were not marked before.
    @discardableResult
    mutating func insert(_ r: Range<UInt32>) -> Int {
        var lo = Int(r.lowerBound)
        let hi = min(Int(r.upperBound), Int(length))
        var added = 0
        words.withUnsafeMutableBufferPointer { w in
            while lo < hi {
                let bit = lo & 63
                let n = min(64 - bit, hi - lo)
                let mask: UInt64 = n == 64 ? ~0 : ((1 << UInt64(n)) &- 1) << UInt64(bit)
                let old = w[lo >> 6]
                w[lo >> 6] = old | mask
                added += (mask & ~old).nonzeroBitCount
                lo += n
            }
        }
        count += added
        return added
    }

    func contains(_ i: Int) -> Bool { words[i >> 6] & (1 << UInt64(i & 63)) != 0 }

    /// The first `limit` unmarked ranges of 0..<length, in order.
    func gaps(limit: Int) -> [Range<UInt32>] {
        var out: [Range<UInt32>] = []
        var i = 0
        let n = Int(length)
        while i < n && out.count < limit {
            // Skip whole marked words quickly.
            if i & 63 == 0 && i + 64 <= n && words[i >> 6] == ~0 { i += 64; continue }
            if contains(i) { i += 1; continue }
            let start = i
            while i < n && !contains(i) {
                if i & 63 == 0 && i + 64 <= n && words[i >> 6] == 0 { i += 64 } else { i += 1 }
            }
            out.append(UInt32(start)..<UInt32(i))
        }
        return out
    }
}

struct IROBReceiver {
    /// Most RESEND_REQUESTs one DATA_CHECK entry produces (the first holes; a later check asks again).
    static let maxGapsPerCheck = 16

    /// A class so reassembly writes into the buffer in place (no copy-on-write through the dictionary).
    final class Incoming {
        let begin: BeginIROB
        var buffer: [UInt8]
        /// Which bytes arrived: one bit per byte, so each DATA frame costs time linear in its own
        /// size whatever the arrival order (a sorted range list made descending one-byte
        /// offsets quadratic, on the loop thread every session shares).
        var received: ByteBitmap
        var complete = false
        /// Monotonic ns when the last byte arrived (ACK hold time starts here).
        var completedAtNs: UInt64 = 0
        init(begin: BeginIROB, buffer: [UInt8]) {
            self.begin = begin
            self.buffer = buffer
            self.received = ByteBitmap(length: begin.length)
        }
    }

    /// What the runtime should do after a frame.
    enum Reaction: Equatable {
        case none
        /// Acknowledge this (already complete) IROB again: an earlier ACK may have been lost.
        case reAck(IROBID)
    }

    let limits: ReceiveLimits
    private(set) var incoming: [UInt64: Incoming] = [:]
    /// Lowest id not yet released; every id below it has been released.
    private(set) var releaseFloor: UInt64 = 1
    /// Released ids at or above the floor.
    private var releasedAbove: Set<UInt64> = []
    /// Complete IROB ids waiting for a specific unreleased dependency (key: the dependency).
    private var waiters: [UInt64: [UInt64]] = [:]
    /// Released, in release order, not yet taken by the runtime.
    private(set) var released: [ReceivedIROB] = []
    /// Completed IROBs to acknowledge: (id, completion time ns).
    private(set) var pendingAcks: [(id: IROBID, completedAtNs: UInt64)] = []
    /// Bytes charged: IROBs begun and not yet consumed by the application.
    private(set) var bufferedBytes = 0
    /// Bytes of released IROBs the application has not consumed.
    private(set) var releasedUnconsumedBytes = 0
    /// Highest IROB id the peer says it assigned (GOODBYE), if known.
    var peerLastID: UInt64?

    init(limits: ReceiveLimits = ReceiveLimits()) { self.limits = limits }

    /// Whether the transport should keep reading: below the soft bound, or nothing is waiting for
    /// the application (then the missing piece can only come from the network).
    var shouldRead: Bool { bufferedBytes < limits.bufferBytes || releasedUnconsumedBytes == 0 }

    func isReleased(_ id: UInt64) -> Bool { id < releaseFloor || releasedAbove.contains(id) }

    /// Whether every IROB up to `peerLastID` has been released (orderly end of stream).
    var allReleased: Bool {
        guard let last = peerLastID else { return false }
        return releaseFloor > last
    }

    private func cost(_ length: UInt32) -> Int { Int(length) + limits.perIROBOverheadBytes }

    /// What an incomplete IROB holds besides its bytes: the arrival bitmap and the dependency
    /// list (both charged to the receive buffer until release, so neither is free memory).
    private static func bookkeeping(_ b: BeginIROB) -> Int {
        var n = (Int(b.length) + 63) / 64 * 8
        if case .explicit(let d) = b.dependencies { n += 8 * d.count }
        return n
    }

    private func checkWindow(_ id: UInt64) throws {
        if id >= releaseFloor &+ limits.idWindow {
            throw ProtocolError(.unexpected("IROB id \(id) is more than \(limits.idWindow) above the lowest unreleased id \(releaseFloor)"))
        }
    }

    mutating func begin(_ b: BeginIROB, nowNs: UInt64) throws -> Reaction {
        let id = b.id.rawValue
        if isReleased(id) { return .reAck(b.id) }
        if let existing = incoming[id] {
            if existing.begin != b {
                throw ProtocolError(.unexpected("BEGIN_IROB for \(b.id) repeated with different fields"))
            }
            return existing.complete ? .reAck(b.id) : .none
        }
        try checkWindow(id)
        let c = cost(b.length) + Self.bookkeeping(b)
        if bufferedBytes + c > limits.hardLimitBytes {
            throw ProtocolError(.receiveBufferExceeded(limitBytes: limits.hardLimitBytes))
        }
        bufferedBytes += c
        // Not zero-filled: an IROB is released only once every byte has been written.
        let irob = Incoming(begin: b, buffer: [UInt8](unsafeUninitializedCapacity: Int(b.length)) { _, n in n = Int(b.length) })
        if b.length == 0 {
            irob.complete = true
            irob.completedAtNs = nowNs
        }
        incoming[id] = irob
        if b.length == 0 {
            pendingAcks.append((b.id, nowNs))
            releaseCascade(from: id)
        }
        return .none
    }

    mutating func data(id: IROBID, offset: UInt32, bytes: UnsafeRawBufferPointer, nowNs: UInt64) throws -> Reaction {
        let key = id.rawValue
        if isReleased(key) { return .reAck(id) }
        guard let irob = incoming[key] else {
            throw ProtocolError(.unexpected("DATA for \(id) before its BEGIN_IROB"))
        }
        let length = irob.begin.length
        let end = UInt64(offset) + UInt64(bytes.count)
        if end > UInt64(length) {
            throw ProtocolError(.unexpected("DATA for \(id) beyond its length \(length)"))
        }
        if irob.complete { return .reAck(id) }
        if bytes.count == 0 { return .none }
        // Copy straight into the reassembly buffer; duplicate bytes overwrite identical ones.
        irob.buffer.withUnsafeMutableBytes { dst in
            (dst.baseAddress! + Int(offset)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        irob.received.insert(offset..<UInt32(end))
        if irob.received.isComplete {
            irob.complete = true
            irob.completedAtNs = nowNs
            pendingAcks.append((id, nowNs))
            releaseCascade(from: key)
        }
        return .none
    }

    mutating func end(id: IROBID, length: UInt32) throws -> Reaction {
        let key = id.rawValue
        if isReleased(key) { return .none }
        guard let irob = incoming[key] else {
            throw ProtocolError(.unexpected("END_IROB for \(id) before its BEGIN_IROB"))
        }
        if irob.begin.length != length {
            throw ProtocolError(.unexpected("END_IROB length \(length) differs from BEGIN_IROB length \(irob.begin.length) for \(id)"))
        }
        return .none
    }

    /// Answer to DATA_CHECK: ids to ACK again, and what to ask for.
    func check(_ ids: [IROBID]) -> (ack: [IROBID], resend: [ResendRequest]) {
        var ack: [IROBID] = []
        var resend: [ResendRequest] = []
        for id in ids {
            let key = id.rawValue
            if isReleased(key) { ack.append(id); continue }
            if let irob = incoming[key] {
                if irob.complete { ack.append(id); continue }
                // At most `maxGapsPerCheck` requests per IROB: a DATA_CHECK must not make the
                // answer (and this side's control queue) larger than the IROB's fragmentation.
                for g in irob.received.gaps(limit: IROBReceiver.maxGapsPerCheck) {
                    resend.append(ResendRequest(id: id, needsBegin: false, offset: g.lowerBound, length: UInt32(g.count)))
                }
            } else if key < releaseFloor &+ limits.idWindow {
                resend.append(ResendRequest(id: id, needsBegin: true, offset: 0, length: 0))
            }
        }
        return (ack, resend)
    }

    private func dependenciesReleased(_ b: BeginIROB) -> UInt64? {
        switch b.dependencies {
        case .allEarlier:
            // Every id below is released iff the floor has reached this IROB.
            return releaseFloor == b.id.rawValue ? nil : releaseFloor
        case .explicit(let deps):
            for d in deps where !isReleased(d.rawValue) { return d.rawValue }
            return nil
        }
    }

    /// Releases `start` if it can be, then everything that was waiting on what got released.
    private mutating func releaseCascade(from start: UInt64) {
        var work = [start]
        while let id = work.popLast() {
            guard let irob = incoming[id], irob.complete else { continue }
            if let blocker = dependenciesReleased(irob.begin) {
                // allEarlier waiters are found through the floor, not the waiters table.
                if case .explicit = irob.begin.dependencies { waiters[blocker, default: []].append(id) }
                continue
            }
            incoming[id] = nil
            released.append(ReceivedIROB(id: irob.begin.id, labels: irob.begin.labels, bytes: irob.buffer))
            releasedUnconsumedBytes += cost(irob.begin.length)
            bufferedBytes -= Self.bookkeeping(irob.begin)
            if let w = waiters.removeValue(forKey: id) { work.append(contentsOf: w) }
            if id == releaseFloor {
                releaseFloor += 1
                while releasedAbove.remove(releaseFloor) != nil { releaseFloor += 1 }
                // The IROB now at the floor may be an allEarlier one that was only waiting for this.
                work.append(releaseFloor)
            } else {
                releasedAbove.insert(id)
            }
        }
    }

    /// What a BEGIN_IROB for `b` would add to `bufferedBytes` (0: already begun or released).
    func charge(for b: BeginIROB) -> Int {
        let id = b.id.rawValue
        return isReleased(id) || incoming[id] != nil ? 0 : cost(b.length) + Self.bookkeeping(b)
    }

    /// Forgets the IROBs that are still incomplete and returns the bytes freed. Only for a session
    /// that has lost every connection: the sender puts back everything a dead connection carried
    /// and not acknowledged, so each such IROB comes again with a new BEGIN_IROB. Complete IROBs
    /// (acknowledged) are kept.
    mutating func dropIncomplete() -> Int {
        var freed = 0
        for (id, irob) in incoming where !irob.complete {
            freed += cost(irob.begin.length) + Self.bookkeeping(irob.begin)
            incoming[id] = nil
        }
        bufferedBytes -= freed
        return freed
    }

    /// Hands released IROBs to the runtime (in release order).
    mutating func takeReleased() -> [ReceivedIROB] {
        // Nothing to hand over (most DATA frames): no copy of the emptied buffer.
        if released.isEmpty { return [] }
        defer { released.removeAll(keepingCapacity: true) }
        return released
    }

    /// The application consumed a released IROB of `length` bytes: its buffer space is free again.
    mutating func consumed(length: Int) {
        let c = length + limits.perIROBOverheadBytes
        bufferedBytes -= c
        releasedUnconsumedBytes -= c
    }

    mutating func takePendingAcks() -> [(id: IROBID, completedAtNs: UInt64)] {
        if pendingAcks.isEmpty { return [] }
        defer { pendingAcks.removeAll(keepingCapacity: true) }
        return pendingAcks
    }
}
