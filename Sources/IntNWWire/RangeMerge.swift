/// IROB bytes arrive as (offset, length) pieces, out of order and possibly twice (resent after a
/// failover). Both the receiver core and the analyzer keep what arrived as sorted, disjoint,
/// merged ranges; this is the one merge they share.
public enum RangeMerge {
    /// Inserts `r` into `ranges` (sorted, disjoint, non-adjacent ranges stay so: overlapping and
    /// touching ranges merge). Usually one or two ranges, so a plain array beats anything cleverer.
    @inlinable
    public static func insert<Bound: Comparable>(_ r: Range<Bound>, into ranges: inout [Range<Bound>]) {
        guard !r.isEmpty else { return }
        var lo = r.lowerBound, hi = r.upperBound
        var out: [Range<Bound>] = []
        out.reserveCapacity(ranges.count + 1)
        var placed = false
        for x in ranges {
            if x.upperBound < lo {
                out.append(x)
            } else if x.lowerBound > hi {
                if !placed { out.append(lo..<hi); placed = true }
                out.append(x)
            } else {
                lo = min(lo, x.lowerBound)
                hi = max(hi, x.upperBound)
            }
        }
        if !placed { out.append(lo..<hi) }
        ranges = out
    }
}
