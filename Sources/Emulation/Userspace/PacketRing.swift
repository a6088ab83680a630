/// FIFO packet storage for one link direction: a byte arena plus a descriptor ring, both allocated once.
/// Packets are written in place by `read(2)` and leave in arrival order, so the arena is a circular
/// buffer of variable-size records. Nothing here allocates after `init`.
final class PacketRing {
    struct Descriptor {
        var offset: Int = 0
        var length: Int = 0
        /// CLOCK_MONOTONIC ns when the packet was read from the source device.
        var arrivalNs: UInt64 = 0
        /// When the packet finished serializing onto the link (0 until it has).
        var txEndNs: UInt64 = 0
        /// When it is due at the far end.
        var deliverAtNs: UInt64 = 0
        /// Dropped on the link (outage): released at its turn without being written.
        var dropped = false
    }

    let arenaBytes: Int
    let maxPacketBytes: Int
    private let arena: UnsafeMutableRawPointer
    private let descriptors: UnsafeMutablePointer<Descriptor>
    private let descriptorMask: Int

    /// Oldest packet still held (not yet delivered or dropped).
    private(set) var head = 0
    /// Next packet to serialize; packets in head..<txIndex are on the wire (in the delay line).
    private(set) var txIndex = 0
    /// Next free descriptor.
    private(set) var tail = 0
    private var arenaTail = 0

    /// Bytes waiting to be serialized (the bottleneck queue), for drop-tail.
    private(set) var queuedBytes = 0

    init(arenaBytes: Int, descriptorCapacity: Int, maxPacketBytes: Int) {
        precondition(descriptorCapacity > 0 && descriptorCapacity & (descriptorCapacity - 1) == 0, "power of two")
        precondition(arenaBytes >= 2 * maxPacketBytes)
        self.arenaBytes = arenaBytes
        self.maxPacketBytes = maxPacketBytes
        arena = UnsafeMutableRawPointer.allocate(byteCount: arenaBytes, alignment: 64)
        descriptors = .allocate(capacity: descriptorCapacity)
        descriptors.initialize(repeating: Descriptor(), count: descriptorCapacity)
        descriptorMask = descriptorCapacity - 1
    }

    deinit {
        arena.deallocate()
        descriptors.deallocate()
    }

    var isEmpty: Bool { head == tail }
    var hasUnserialized: Bool { txIndex != tail }
    var hasInFlight: Bool { head != txIndex }
    var count: Int { tail - head }

    /// Where the next packet (up to `maxPacketBytes`) can be written, or nil when the ring is full.
    func reserve() -> UnsafeMutableRawBufferPointer? {
        guard tail - head <= descriptorMask else { return nil }
        if head == tail { arenaTail = 0 }
        let headOffset = head == tail ? 0 : descriptors[head & descriptorMask].offset
        var start = arenaTail
        if head != tail && arenaTail < headOffset {
            // Wrapped: free space lies between our tail and the oldest record.
            guard headOffset - arenaTail > maxPacketBytes else { return nil }
        } else if arenaBytes - arenaTail < maxPacketBytes {
            // Not enough room before the end: wrap to the start if the oldest record leaves room.
            guard head == tail || headOffset > maxPacketBytes else { return nil }
            start = 0
        }
        return UnsafeMutableRawBufferPointer(start: arena + start, count: maxPacketBytes)
    }

    /// Commits a packet of `length` bytes written at the buffer `reserve()` returned.
    func commit(_ buffer: UnsafeMutableRawBufferPointer, length: Int, arrivalNs: UInt64) {
        let offset = buffer.baseAddress! - arena
        descriptors[tail & descriptorMask] = Descriptor(offset: offset, length: length, arrivalNs: arrivalNs)
        arenaTail = offset + ((length + 63) & ~63)
        tail += 1
        queuedBytes += length
    }

    /// The next packet to serialize.
    var nextToSerialize: Descriptor { descriptors[txIndex & descriptorMask] }

    /// Marks the next packet serialized at `txEndNs`, due at the far end at `deliverAtNs`.
    func markSerialized(txEndNs: UInt64, deliverAtNs: UInt64) {
        let i = txIndex & descriptorMask
        descriptors[i].txEndNs = txEndNs
        descriptors[i].deliverAtNs = deliverAtNs
        queuedBytes -= descriptors[i].length
        txIndex += 1
    }

    /// The oldest packet on the wire.
    var oldestInFlight: Descriptor { descriptors[head & descriptorMask] }

    /// Bytes of a held packet.
    func bytes(of d: Descriptor) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: arena + d.offset, count: d.length)
    }

    /// Releases the oldest packet (delivered or dropped).
    func popDelivered() {
        precondition(head != txIndex)
        head += 1
    }

    /// Drops the next packet waiting to be serialized (the link is out): it stays in FIFO order and is
    /// released, unwritten, when its turn at the far end comes.
    func dropNextUnserialized(atNs now: UInt64) {
        let i = txIndex & descriptorMask
        queuedBytes -= descriptors[i].length
        descriptors[i].txEndNs = now
        descriptors[i].deliverAtNs = now
        descriptors[i].dropped = true
        txIndex += 1
    }
}
