/// The link model for one direction, separated from I/O so tests can drive it with a virtual clock.
///
/// A packet arriving at `t` is dropped if the link is out, by the seeded loss model, or when the
/// bottleneck queue already holds `queueLimitBytes`; otherwise it waits its turn, serializes at the rate
/// in force when its turn comes (byte-accurate: `length / bytesPerSecond`), then propagates for the
/// one-way delay. Delivery is FIFO: a delay that shrinks between slices never reorders packets.
struct DirectionEngine {
    struct Verdict: Equatable {
        enum Kind: Equatable { case queued, lossDrop, queueDrop, outageDrop, ringFull }
        var kind: Kind
    }

    private(set) var parameters: DirectionParameters
    /// Drop-tail limit of the bottleneck queue, bytes.
    var queueLimitBytes: Int
    let ring: PacketRing
    private var rng: DeterministicRNG
    private var linkFreeAtNs: UInt64 = 0
    private var lastDeliverAtNs: UInt64 = 0
    private(set) var counters: DirectionCounters
    /// How late packets left compared with their schedule, in microseconds (1 µs buckets).
    private(set) var lateness: LatenessHistogram

    init(link: String, direction: LinkDirection, parameters: DirectionParameters, queueLimitBytes: Int,
         ring: PacketRing, seed: UInt64) {
        self.parameters = parameters
        self.queueLimitBytes = queueLimitBytes
        self.ring = ring
        self.rng = DeterministicRNG(seed: seed)
        self.counters = DirectionCounters(link: link, direction: direction)
        self.lateness = LatenessHistogram()
    }

    /// When the current parameters took effect (monotonic ns; 0 = from the start).
    private(set) var parametersSinceNs: UInt64 = 0

    /// Takes new parameters at `nowNs`. A packet still serializing then cannot have finished before
    /// `nowNs` at the new rate (it was held back by the old one), so it finishes no earlier than that:
    /// otherwise a rate increase after a very slow second would release it "in the past", skipping part
    /// of its propagation delay and showing up as emulator lateness that is really the trace's doing.
    mutating func update(_ p: DirectionParameters, queueLimitBytes: Int, nowNs: UInt64 = 0) {
        parameters = p
        self.queueLimitBytes = queueLimitBytes
        parametersSinceNs = nowNs
    }

    /// Decides the fate of a packet of `length` bytes read at `nowNs` into `buffer` (from `ring.reserve()`).
    mutating func admit(_ buffer: UnsafeMutableRawBufferPointer, length: Int, nowNs: UInt64) -> Verdict.Kind {
        counters.packetsIn += 1
        counters.bytesIn += UInt64(length)
        if !parameters.available {
            counters.outageDrops += 1
            return .outageDrop
        }
        if parameters.lossFraction > 0 && rng.unit() < parameters.lossFraction {
            counters.lossDrops += 1
            return .lossDrop
        }
        if parameters.bytesPerSecond != nil && ring.queuedBytes + length > queueLimitBytes {
            counters.queueDrops += 1
            return .queueDrop
        }
        ring.commit(buffer, length: length, arrivalNs: nowNs)
        return .queued
    }

    /// Counts a packet that could not even be stored (arena or descriptor ring full).
    mutating func countRingFull(length: Int) {
        counters.packetsIn += 1
        counters.bytesIn += UInt64(length)
        counters.queueDrops += 1
    }

    /// Moves packets whose serialization has finished by `nowNs` onto the wire. Returns the time the
    /// head of the queue will finish serializing, or nil if the queue is empty.
    mutating func serialize(nowNs: UInt64) -> UInt64? {
        let delayNs = UInt64(max(0, parameters.delayMicroseconds) * 1000)
        while ring.hasUnserialized {
            let d = ring.nextToSerialize
            if !parameters.available {
                ring.dropNextUnserialized(atNs: max(nowNs, lastDeliverAtNs))
                counters.outageDrops += 1
                continue
            }
            let txEnd: UInt64
            if let rate = parameters.bytesPerSecond {
                let start = max(d.arrivalNs, linkFreeAtNs)
                txEnd = max(start + UInt64((Double(d.length) * 1e9 / rate).rounded(.up)), parametersSinceNs)
            } else {
                txEnd = d.arrivalNs
            }
            if txEnd > nowNs { return txEnd }
            linkFreeAtNs = txEnd
            let due = max(txEnd + delayNs, lastDeliverAtNs)
            lastDeliverAtNs = due
            ring.markSerialized(txEndNs: txEnd, deliverAtNs: due)
        }
        return nil
    }

    /// Releases every packet due by `nowNs`, calling `write` for those still to be delivered. Returns
    /// the time the next packet is due, or nil if nothing is on the wire.
    mutating func deliver(nowNs: UInt64, write: (UnsafeRawBufferPointer, _ arrivalNs: UInt64) -> Bool) -> UInt64? {
        while ring.hasInFlight {
            let d = ring.oldestInFlight
            if d.deliverAtNs > nowNs { return d.deliverAtNs }
            if d.dropped {
                // Counted as an outage drop when it was dropped.
            } else if !parameters.available {
                counters.outageDrops += 1
            } else if write(ring.bytes(of: d), d.arrivalNs) {
                counters.packetsOut += 1
                counters.bytesOut += UInt64(d.length)
                lateness.record(nanoseconds: nowNs - d.deliverAtNs)
            } else {
                counters.outageDrops += 1
            }
            ring.popDelivered()
        }
        return nil
    }
}

/// Fixed-size histogram of departure lateness (actual − scheduled), 1 µs buckets up to 100 ms, with an
/// overflow bucket. No allocation after init.
public struct LatenessHistogram: Sendable {
    public static let bucketCount = 100_000
    private var buckets: [UInt64]
    public private(set) var total: UInt64 = 0
    public private(set) var maxNanoseconds: UInt64 = 0

    public init() { buckets = [UInt64](repeating: 0, count: Self.bucketCount + 1) }

    mutating func record(nanoseconds: UInt64) {
        let us = Int(min(nanoseconds / 1000, UInt64(Self.bucketCount)))
        buckets.withUnsafeMutableBufferPointer { $0[us] += 1 }
        total += 1
        if nanoseconds > maxNanoseconds { maxNanoseconds = nanoseconds }
    }

    /// The smallest lateness (µs) that `fraction` of packets did not exceed.
    public func percentileMicroseconds(_ fraction: Double) -> Int {
        guard total > 0 else { return 0 }
        let target = UInt64((Double(total) * fraction).rounded(.up))
        var seen: UInt64 = 0
        for (i, n) in buckets.enumerated() {
            seen += n
            if seen >= target { return i }
        }
        return Self.bucketCount
    }

    public mutating func merge(_ other: LatenessHistogram) {
        for i in 0..<buckets.count { buckets[i] += other.buckets[i] }
        total += other.total
        maxNanoseconds = max(maxNanoseconds, other.maxNanoseconds)
    }
}
