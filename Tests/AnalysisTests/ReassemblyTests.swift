import Testing
@testable import Analysis

@Suite struct ReassemblyTests {
    func make() -> (StreamReassembler, RecordingConsumer) {
        let r = StreamReassembler(originNanoseconds: t0, binWidthNanoseconds: 100 * ms)
        let c = RecordingConsumer()
        r.consumer = c
        r.syn(sequence: 999)
        return (r, c)
    }

    func seg(_ r: StreamReassembler, _ offset: Int, _ bytes: ArraySlice<UInt8>, _ t: UInt64, fin: Bool = false) {
        Array(bytes).withUnsafeBytes {
            r.segment(sequence: 1000 &+ UInt32(offset), payload: $0, fullLength: bytes.count, fin: fin, rst: false, time: t)
        }
    }

    let data = (0 ..< 5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }

    @Test func inOrderIsDeliveredAsIs() {
        let (r, c) = make()
        for k in stride(from: 0, to: 5000, by: 1000) { seg(r, k, data[k ..< k + 1000], t0 + UInt64(k)) }
        #expect(c.bytes == data)
        #expect(r.stats.uniqueBytes == 5000 && r.stats.retransmittedBytes == 0 && r.stats.gaps == 0)
        #expect(c.chunks.allSatisfy { $0.firstSeen == $0.available })
    }

    @Test func reorderingAndRetransmissionKeepFirstSeenTimes() {
        let (r, c) = make()
        seg(r, 0, data[0 ..< 1000], t0 + 1)
        seg(r, 2000, data[2000 ..< 3000], t0 + 2)        // ahead of a hole
        seg(r, 3000, data[3000 ..< 4000], t0 + 3)
        seg(r, 2000, data[2000 ..< 3000], t0 + 4)        // duplicate of buffered data
        seg(r, 500, data[500 ..< 1500], t0 + 5)          // overlaps delivered data, extends it
        seg(r, 1000, data[1000 ..< 4000], t0 + 6)        // fills the hole, re-sends buffered bytes
        seg(r, 4000, data[4000 ..< 5000], t0 + 7, fin: true)
        #expect(c.bytes == data)
        #expect(r.stats.uniqueBytes == 5000)
        #expect(r.stats.payloadBytes == 1000 + 1000 + 1000 + 1000 + 1000 + 3000 + 1000)
        #expect(r.stats.retransmittedBytes == 4000)
        #expect(r.stats.outOfOrderSegments == 3)
        // Bytes 2000..<4000 were first seen at t0+2/t0+3 but only became available at t0+6.
        let buffered = c.chunks.filter { $0.offset == 2000 || $0.offset == 3000 }
        #expect(buffered.map(\.firstSeen) == [t0 + 2, t0 + 3])
        #expect(buffered.allSatisfy { $0.available == t0 + 6 })
        #expect(c.chunks.first { $0.offset == 1500 }?.firstSeen == t0 + 6)
        #expect(c.finished)
    }

    @Test func descendingOneByteSegmentsAreLinearTime() {
        // The worst arrival order for a sorted array (every insert at the front): 200,000 one-byte
        // segments took minutes that way; the heap takes well under a second (generous bound).
        let (r, c) = make()
        let n = 200_000
        let payload = (0 ..< n).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let start = ContinuousClock.now
        for k in stride(from: n - 1, through: 1, by: -1) { seg(r, k, payload[k ..< k + 1], t0 + 1) }
        seg(r, n - 1, payload[(n - 1) ..< n], t0 + 1)      // an exact repeat of a buffered segment
        seg(r, 0, payload[0 ..< 1], t0 + 2)
        let elapsed = ContinuousClock.now - start
        #expect(c.bytes == payload)
        #expect(r.stats.outOfOrderSegments == n && r.stats.uniqueBytes == UInt64(n))
        #expect(r.stats.retransmittedBytes == 1 && r.stats.gaps == 0)
        #expect(elapsed < .seconds(20), "took \(elapsed)")
    }

    @Test func manyTinySegmentsAreChargedTheirOverhead() {
        // Payload alone would let 64 Mi one-byte segments (gigabytes of bookkeeping) be buffered.
        let r = StreamReassembler(originNanoseconds: t0, binWidthNanoseconds: 100 * ms, pendingLimitBytes: 100_000)
        let c = RecordingConsumer()
        r.consumer = c
        r.syn(sequence: 999)
        let perSegment = 1 + StreamReassembler.pendingOverheadBytes
        let fit = 100_000 / perSegment
        for k in stride(from: fit + 2, through: 2, by: -1) { seg(r, k, data[(k % 4000) ..< (k % 4000) + 1], t0) }
        // The limit forced the hole at offsets 0..<2 (never captured) to become a gap.
        #expect(r.stats.gaps == 1 && c.gaps.first?.length == 2)
        #expect(c.bytes.count == fit + 1)
    }

    @Test func ackedHoleBecomesAGap() {
        let (r, c) = make()
        seg(r, 0, data[0 ..< 1000], t0)
        seg(r, 2000, data[2000 ..< 3000], t0 + 1)
        r.acknowledged(1000 &+ 3000, time: t0 + 2)   // the peer got 1000..<2000, the capture did not
        #expect(c.gaps.count == 1 && c.gaps[0].length == 1000 && c.gaps[0].offset == 1000)
        #expect(c.bytes == Array(data[0 ..< 1000] + data[2000 ..< 3000]))
        #expect(r.stats.gapBytes == 1000 && r.stats.gaps == 1)
        seg(r, 3000, data[3000 ..< 4000], t0 + 3)
        #expect(c.bytes.count == 3000)
    }

    @Test func holeAtEndOfCaptureIsReportedNotLost() {
        let (r, c) = make()
        seg(r, 0, data[0 ..< 1000], t0)
        seg(r, 4000, data[4000 ..< 5000], t0 + 1)
        r.finish(time: t0 + 2)
        #expect(c.gaps.map(\.length) == [3000])
        #expect(c.bytes.count == 2000)
        #expect(c.finished)
    }

    @Test func sequenceWrapIsSeamless() {
        let r = StreamReassembler(originNanoseconds: t0, binWidthNanoseconds: 100 * ms)
        let c = RecordingConsumer()
        r.consumer = c
        r.syn(sequence: UInt32.max - 1500)
        var off = 0
        while off < 5000 {
            Array(data[off ..< off + 700]).withUnsafeBytes {
                r.segment(sequence: (UInt32.max - 1499) &+ UInt32(off), payload: $0, fullLength: 700, fin: false, rst: false, time: t0)
            }
            off += 700
            if off + 700 > 5000 { break }
        }
        #expect(c.bytes == Array(data[0 ..< off]))
        #expect(r.stats.gaps == 0)
    }

    @Test func midstreamCaptureStartsAtFirstSegment() {
        let r = StreamReassembler(originNanoseconds: t0, binWidthNanoseconds: 100 * ms)
        let c = RecordingConsumer()
        r.consumer = c
        Array(data[0 ..< 100]).withUnsafeBytes { r.segment(sequence: 555, payload: $0, fullLength: 100, fin: false, rst: false, time: t0) }
        #expect(c.bytes.count == 100)
        #expect(r.stats.midstream)
    }

    @Test func throughputBinsCountFirstCapture() {
        let (r, _) = make()
        // 1000 bytes in bin 0, 2000 in bin 3 (one of them retransmitted in bin 5: not counted again).
        seg(r, 0, data[0 ..< 1000], t0 + 10 * ms)
        seg(r, 1000, data[1000 ..< 2000], t0 + 310 * ms)
        seg(r, 2000, data[2000 ..< 3000], t0 + 350 * ms)
        seg(r, 2000, data[2000 ..< 3000], t0 + 520 * ms)
        #expect(r.uniqueBytesPerBin == [1000, 0, 0, 2000])
        #expect(r.wireBytesPerBin == [1000, 0, 0, 2000, 0, 1000])
    }
}
