/// A set of byte ranges within one IROB, kept sorted, disjoint and merged.
/// Usually one or two ranges, so a plain array beats anything cleverer.
struct ByteRanges: Equatable, Sendable {
    private(set) var ranges: [Range<UInt32>] = []

    init() {}
    init(_ r: Range<UInt32>) { if !r.isEmpty { ranges = [r] } }

    var isEmpty: Bool { ranges.isEmpty }
    /// Total bytes covered.
    var count: Int { ranges.reduce(0) { $0 + $1.count } }
    var first: Range<UInt32>? { ranges.first }

    /// Adds `r`; returns how many bytes were not covered before.
    @discardableResult
    mutating func insert(_ r: Range<UInt32>) -> Int {
        if r.isEmpty { return 0 }
        // Fast path: appending right after the last range (in-order arrival).
        if let last = ranges.last, last.upperBound == r.lowerBound {
            ranges[ranges.count - 1] = last.lowerBound..<r.upperBound
            return r.count
        }
        if ranges.isEmpty || ranges[ranges.count - 1].upperBound < r.lowerBound {
            ranges.append(r)
            return r.count
        }
        let before = count
        RangeMerge.insert(r, into: &ranges)
        return count - before
    }

    /// Removes `r` from the set.
    mutating func remove(_ r: Range<UInt32>) {
        if r.isEmpty || ranges.isEmpty { return }
        var out: [Range<UInt32>] = []
        out.reserveCapacity(ranges.count + 1)
        for x in ranges {
            if x.upperBound <= r.lowerBound || x.lowerBound >= r.upperBound {
                out.append(x)
                continue
            }
            if x.lowerBound < r.lowerBound { out.append(x.lowerBound..<r.lowerBound) }
            if x.upperBound > r.upperBound { out.append(r.upperBound..<x.upperBound) }
        }
        ranges = out
    }

    /// The parts of 0..<length not in the set.
    func gaps(upTo length: UInt32) -> [Range<UInt32>] {
        var out: [Range<UInt32>] = []
        var at: UInt32 = 0
        for x in ranges {
            if x.lowerBound > at { out.append(at..<min(x.lowerBound, length)) }
            at = max(at, x.upperBound)
            if at >= length { break }
        }
        if at < length { out.append(at..<length) }
        return out
    }
}
