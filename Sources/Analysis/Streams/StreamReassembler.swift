/// Reassembles one direction of a TCP connection into an ordered byte stream.
///
/// Handles retransmissions and overlaps (bytes already seen are counted, not re-delivered),
/// out-of-order segments (buffered as copies until the hole fills), SYN/FIN/RST, 32-bit sequence
/// wrap (offsets are 64-bit), and holes that will never fill: when the peer acknowledges bytes the
/// capture never saw, or at the end of the capture, the hole is reported to the consumer as a gap
/// and the stream goes on. In-order data, the common case, is handed to the consumer straight
/// from the packet buffer with no copy.
final class StreamReassembler {
    struct Pending {
        var offset: UInt64
        var bytes: [UInt8]
        var firstSeen: UInt64
        /// Arrival order: of two segments at one offset the earlier one drains first.
        var arrival: UInt64
        var end: UInt64 { offset + UInt64(bytes.count) }
    }

    /// Out-of-order data above this many bytes forces the oldest hole to be declared a gap, so a
    /// hostile or broken capture cannot grow memory without bound. Each buffered segment is
    /// charged `pendingOverheadBytes` on top of its payload (a million one-byte segments cost far
    /// more than a megabyte).
    static let maxPendingBytes = 64 << 20
    static let pendingOverheadBytes = 64

    private(set) var started = false
    private var baseSequence: UInt32 = 0
    private(set) var nextOffset: UInt64 = 0
    /// Out-of-order segments, lowest offset first: a binary heap, so each insert and each removal
    /// is O(log n) whatever the arrival order (descending offsets were quadratic with a sorted
    /// array). `pendingLengths` remembers the longest segment buffered at each offset, to spot
    /// exact repeats; `pendingMaxEnd` is the highest end offset buffered.
    private var pending = PendingHeap()
    private var pendingLengths: [UInt64: Int] = [:]
    private var pendingMaxEnd: UInt64 = 0
    private var arrivals: UInt64 = 0
    private var pendingBytes = 0
    private var finOffset: UInt64?
    /// Stream ranges whose bytes the snap length cut off (sorted, disjoint); their placeholder
    /// zeros are delivered as `truncated` instead of `consume`.
    private var snapped: [Range<UInt64>] = []
    private(set) var finished = false
    var stats = DirectionStats()
    var consumer: StreamConsumer?
    /// Distinct payload bytes per time bin (by first capture), and all payload bytes per bin.
    var uniqueBytesPerBin: [UInt64] = []
    var wireBytesPerBin: [UInt64] = []
    /// Time bins: bin i covers [origin + i·binWidth, origin + (i+1)·binWidth), nanoseconds.
    let originNanoseconds: UInt64
    let binWidthNanoseconds: UInt64

    /// `maxPendingBytes` for this stream (tests use a small one).
    let pendingLimitBytes: Int

    init(originNanoseconds: UInt64, binWidthNanoseconds: UInt64, pendingLimitBytes: Int = StreamReassembler.maxPendingBytes) {
        self.originNanoseconds = originNanoseconds
        self.binWidthNanoseconds = binWidthNanoseconds
        self.pendingLimitBytes = pendingLimitBytes
    }

    /// Stream offset for a sequence number, unwrapped around the next expected offset.
    @inline(__always)
    private func offset(of seq: UInt32) -> Int64 {
        let expected = baseSequence &+ UInt32(truncatingIfNeeded: nextOffset)
        return Int64(nextOffset) + Int64(Int32(bitPattern: seq &- expected))
    }

    @inline(__always)
    private func add(_ bins: inout [UInt64], _ n: Int, at time: UInt64) {
        let bin = time > originNanoseconds ? Int((time - originNanoseconds) / binWidthNanoseconds) : 0
        if bin >= bins.count { bins.append(contentsOf: repeatElement(0, count: bin + 1 - bins.count)) }
        bins[bin] &+= UInt64(n)
    }

    /// A SYN from this direction's sender: data starts one after its sequence number.
    func syn(sequence: UInt32) {
        stats.synSeen = true
        if !started || (nextOffset == 0 && pending.isEmpty && stats.uniqueBytes == 0) {
            baseSequence = sequence &+ 1
            started = true
            stats.midstream = false
        }
    }

    /// One segment's payload (possibly empty) and FIN flag.
    /// `payload` holds the captured bytes; `fullLength` is the length the IP header claims.
    func segment(sequence: UInt32, payload: UnsafeRawBufferPointer, fullLength: Int, fin: Bool, rst: Bool, time: UInt64) {
        stats.packets += 1
        if rst { stats.rstSeen = true }
        if !started {
            guard fullLength > 0 || fin else { return }
            // Capture began mid-connection: the first byte we see is offset 0.
            baseSequence = sequence
            started = true
            stats.midstream = true
        }
        if fin {
            stats.finSeen = true
            let o = offset(of: sequence) + Int64(fullLength)
            if o >= 0 { finOffset = UInt64(o) }
        }
        guard fullLength > 0 else {
            if finOffset == nextOffset, pending.isEmpty { finishStream(time) }
            return
        }
        stats.payloadBytes += UInt64(fullLength)
        add(&wireBytesPerBin, fullLength, at: time)
        if stats.firstPayloadNanoseconds == 0 { stats.firstPayloadNanoseconds = time }
        stats.lastPayloadNanoseconds = max(stats.lastPayloadNanoseconds, time)

        let start = offset(of: sequence)
        // A tail cut off by the snap length crossed the wire: it counts as present at this
        // packet's time, with placeholder contents the consumer is told about.
        if payload.count < fullLength {
            let missing = fullLength - payload.count
            stats.truncatedBytes += UInt64(missing)
            var padded = [UInt8](repeating: 0, count: fullLength)
            if payload.count > 0 { padded.withUnsafeMutableBytes { $0.copyMemory(from: payload) } }
            if start + Int64(payload.count) >= 0 {
                let lo = UInt64(max(start + Int64(payload.count), 0)), hi = UInt64(start + Int64(fullLength))
                if hi > lo { markSnapped(lo ..< hi) }
            }
            padded.withUnsafeBytes { placeFullSegment($0, start: start, fullLength: fullLength, time: time) }
            if let f = finOffset, nextOffset >= f, pending.isEmpty { finishStream(time) }
            return
        }
        placeFullSegment(payload, start: start, fullLength: fullLength, time: time)
        if let f = finOffset, nextOffset >= f, pending.isEmpty { finishStream(time) }
    }

    private func markSnapped(_ r: Range<UInt64>) {
        guard r.upperBound > nextOffset else { return }
        let r = max(r.lowerBound, nextOffset) ..< r.upperBound
        var i = snapped.count
        while i > 0 && snapped[i - 1].lowerBound > r.lowerBound { i -= 1 }
        snapped.insert(r, at: i)
    }

    private func placeFullSegment(_ payload: UnsafeRawBufferPointer, start: Int64, fullLength: Int, time: UInt64) {
        var bytes = payload
        if start < 0 {
            // Before the stream start (e.g. retransmitted SYN data with mid-stream base): ignore it.
            let skip = Int(min(Int64(bytes.count), -start))
            stats.retransmittedBytes += UInt64(skip)
            bytes = UnsafeRawBufferPointer(rebasing: bytes[skip...])
            if bytes.isEmpty { return }
        }
        var o = UInt64(max(start, 0))
        let end = o + UInt64(bytes.count)
        if end <= nextOffset {
            stats.retransmittedBytes += UInt64(fullLength)
            return
        }
        if o < nextOffset {
            let dup = Int(nextOffset - o)
            stats.retransmittedBytes += UInt64(dup)
            bytes = UnsafeRawBufferPointer(rebasing: bytes[dup...])
            o = nextOffset
        }
        if o == nextOffset {
            deliverInOrder(bytes, at: o, time: time)
        } else {
            buffer(bytes, at: o, time: time)
        }
    }

    /// The peer acknowledged everything before `acknowledgement`: holes below it will never be
    /// filled from this capture, so they become gaps.
    func acknowledged(_ acknowledgement: UInt32, time: UInt64) {
        guard started, !finished else { return }
        var target = offset(of: acknowledgement)
        if let f = finOffset, target > Int64(f) { target = Int64(f) }
        // Ignore implausible jumps (a corrupt ACK field): more than 1 GiB ahead.
        guard target > Int64(nextOffset), target - Int64(nextOffset) < 1 << 30 else { return }
        skipHoles(upTo: UInt64(target), time: time)
        if let f = finOffset, nextOffset >= f, pending.isEmpty { finishStream(time) }
    }

    /// End of capture: declare every remaining hole a gap, deliver what is buffered, finish.
    func finish(time: UInt64) {
        guard !finished else { return }
        if !pending.isEmpty { skipHoles(upTo: pendingMaxEnd, time: time) }
        finishStream(time)
    }

    private func finishStream(_ time: UInt64) {
        guard !finished else { return }
        finished = true
        consumer?.finish(atNanoseconds: time)
    }

    private func skipHoles(upTo target: UInt64, time: UInt64) {
        while nextOffset < target {
            let holeEnd = min(target, pending.first?.offset ?? target)
            if holeEnd > nextOffset {
                let length = holeEnd - nextOffset
                stats.gapBytes += length
                stats.gaps += 1
                consumer?.gap(length: length, offset: nextOffset, availableNanoseconds: time)
                nextOffset = holeEnd
                while let f = snapped.first, f.upperBound <= nextOffset { snapped.removeFirst() }
            }
            drainPending(time: time)
        }
    }

    @inline(__always)
    private func emit(_ bytes: UnsafeRawBufferPointer, at o: UInt64, firstSeen: UInt64, time: UInt64) {
        stats.uniqueBytes += UInt64(bytes.count)
        add(&uniqueBytesPerBin, bytes.count, at: firstSeen)
        let end = o + UInt64(bytes.count)
        if snapped.isEmpty {
            consumer?.consume(bytes, offset: o, firstSeenNanoseconds: firstSeen, availableNanoseconds: time)
        } else {
            // Split into captured parts and parts the snap length cut off.
            var cur = o
            while cur < end {
                while let f = snapped.first, f.upperBound <= cur { snapped.removeFirst() }
                if let f = snapped.first, f.lowerBound <= cur {
                    let stop = min(end, f.upperBound)
                    consumer?.truncated(length: stop - cur, offset: cur, firstSeenNanoseconds: firstSeen, availableNanoseconds: time)
                    cur = stop
                } else {
                    let stop = min(end, snapped.first?.lowerBound ?? end)
                    let part = UnsafeRawBufferPointer(rebasing: bytes[Int(cur - o) ..< Int(stop - o)])
                    consumer?.consume(part, offset: cur, firstSeenNanoseconds: firstSeen, availableNanoseconds: time)
                    cur = stop
                }
            }
            while let f = snapped.first, f.upperBound <= end { snapped.removeFirst() }
        }
        nextOffset = end
    }

    private func deliverInOrder(_ bytes: UnsafeRawBufferPointer, at start: UInt64, time: UInt64) {
        if pending.isEmpty {
            emit(bytes, at: start, firstSeen: time, time: time)
            return
        }
        // Buffered data seen earlier may overlap this segment: those bytes keep their earlier
        // first-seen time, and only the rest counts as new.
        let end = start + UInt64(bytes.count)
        var cur = start
        while cur < end {
            if let p = pending.first, p.offset <= cur {
                drainPending(time: time)
                // This segment's bytes that buffered data already supplied are repeats.
                if nextOffset > cur { stats.retransmittedBytes += min(end, nextOffset) - cur }
                cur = max(cur, nextOffset)
                continue
            }
            let limit = min(end, pending.first?.offset ?? end)
            let lo = Int(cur - start), hi = Int(limit - start)
            emit(UnsafeRawBufferPointer(rebasing: bytes[lo ..< hi]), at: cur, firstSeen: time, time: time)
            cur = limit
        }
        drainPending(time: time)
    }

    /// Delivers buffered segments that now touch `nextOffset`.
    private func drainPending(time: UInt64) {
        while let p = pending.first, p.offset <= nextOffset {
            pending.removeFirst()
            pendingLengths[p.offset] = nil
            pendingBytes -= p.bytes.count + Self.pendingOverheadBytes
            if p.end <= nextOffset {
                stats.retransmittedBytes += UInt64(p.bytes.count)
                continue
            }
            let skip = Int(nextOffset - p.offset)
            stats.retransmittedBytes += UInt64(skip)
            p.bytes.withUnsafeBytes { raw in
                emit(UnsafeRawBufferPointer(rebasing: raw[skip...]), at: nextOffset, firstSeen: p.firstSeen, time: time)
            }
        }
    }

    private func buffer(_ bytes: UnsafeRawBufferPointer, at o: UInt64, time: UInt64) {
        stats.outOfOrderSegments += 1
        // A segment no longer than one already buffered at the same offset is a retransmission.
        if let buffered = pendingLengths[o], buffered >= bytes.count {
            stats.retransmittedBytes += UInt64(bytes.count)
            return
        }
        pendingLengths[o] = bytes.count
        arrivals += 1
        pending.insert(Pending(offset: o, bytes: Array(bytes), firstSeen: time, arrival: arrivals))
        pendingMaxEnd = max(pendingMaxEnd, o + UInt64(bytes.count))
        pendingBytes += bytes.count + Self.pendingOverheadBytes
        if pendingBytes > pendingLimitBytes, let first = pending.first {
            skipHoles(upTo: first.offset, time: time)
        }
    }
}

/// A binary min-heap of pending segments ordered by (offset, arrival).
struct PendingHeap {
    private var items: [StreamReassembler.Pending] = []

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    var first: StreamReassembler.Pending? { items.first }

    @inline(__always)
    private static func less(_ a: StreamReassembler.Pending, _ b: StreamReassembler.Pending) -> Bool {
        a.offset != b.offset ? a.offset < b.offset : a.arrival < b.arrival
    }

    mutating func insert(_ p: StreamReassembler.Pending) {
        items.append(p)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    @discardableResult
    mutating func removeFirst() -> StreamReassembler.Pending {
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count, Self.less(items[l], items[m]) { m = l }
                if r < items.count, Self.less(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
