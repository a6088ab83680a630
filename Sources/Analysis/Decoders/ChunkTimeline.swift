/// Remembers when recent stream bytes were first captured, so a decoder that recognizes a message
/// only after its first bytes have gone by can still date the message's first byte.
///
/// Entries are appended per delivered chunk (amortized O(1), no allocation once warm) and pruned
/// once no message that could start in them is pending.
struct ChunkTimeline {
    private var offsets: [UInt64] = []
    private var times: [UInt64] = []
    private var head = 0

    mutating func record(offset: UInt64, firstSeenNanoseconds: UInt64) {
        if head > 0 && head == offsets.count {
            offsets.removeAll(keepingCapacity: true)
            times.removeAll(keepingCapacity: true)
            head = 0
        }
        offsets.append(offset)
        times.append(firstSeenNanoseconds)
    }

    /// Marks the bytes from `offset` up to the next recorded chunk as never captured.
    mutating func recordAbsent(offset: UInt64) {
        record(offset: offset, firstSeenNanoseconds: Self.absent)
    }

    /// Time of bytes the capture never saw.
    static let absent = UInt64.max

    /// First-capture time of the byte at `offset` (the latest chunk starting at or before it);
    /// nil when unknown or never captured.
    func firstSeen(at offset: UInt64) -> UInt64? {
        guard head < offsets.count else { return nil }
        var lo = head, hi = offsets.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if offsets[mid] <= offset { lo = mid + 1 } else { hi = mid }
        }
        let t = lo > head ? times[lo - 1] : times[head]
        return t == Self.absent ? nil : t
    }

    /// Forgets chunks that end before `offset` (keeps the one containing it).
    mutating func prune(before offset: UInt64) {
        while head + 1 < offsets.count && offsets[head + 1] <= offset { head += 1 }
        if head > 4096 && head * 2 > offsets.count {
            offsets.removeFirst(head)
            times.removeFirst(head)
            head = 0
        }
    }

    /// Splits the stream bytes `from ..< to` by the chunk that delivered them and calls `body`
    /// with each part's byte count and first-capture time. Bytes before the oldest remembered
    /// chunk are dated by that chunk.
    func forEachPart(from: UInt64, to: UInt64, _ body: (UInt64, UInt64) -> Void) {
        guard from < to, head < offsets.count else { return }
        var lo = head, hi = offsets.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if offsets[mid] <= from { lo = mid + 1 } else { hi = mid }
        }
        var i = max(lo - 1, head)
        var cur = from
        while cur < to {
            let next = i + 1 < offsets.count ? min(offsets[i + 1], to) : to
            if next > cur, times[i] != Self.absent { body(next - cur, times[i]) }
            cur = max(cur, next)
            i += 1
            if i >= offsets.count { break }
        }
    }
}
