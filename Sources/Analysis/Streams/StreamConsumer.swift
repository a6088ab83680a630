/// Receives one direction of a reassembled TCP stream, strictly in stream order.
///
/// Times are capture timestamps in nanoseconds since the Unix epoch. `firstSeenNanoseconds` is the
/// first capture of the bytes (for data a client sends: when it left the client); `availableNanoseconds`
/// is the capture time of the packet that made them contiguous (when a receiver behind this
/// capture point could read them). They differ for bytes that arrived out of order.
public protocol StreamConsumer: AnyObject {
    /// The next contiguous bytes, starting at stream offset `offset`. `bytes` is valid only
    /// during the call.
    func consume(_ bytes: UnsafeRawBufferPointer, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64)
    /// `length` bytes at `offset` were never captured (capture drop, snapped packet); the stream
    /// continues after them.
    func gap(length: UInt64, offset: UInt64, availableNanoseconds: UInt64)
    /// No more bytes will come.
    func finish(atNanoseconds: UInt64)
    /// `length` bytes at `offset` crossed the wire (first seen at `firstSeenNanoseconds`) but the
    /// capture's snap length cut them off: they are present, their contents unknown.
    func truncated(length: UInt64, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64)
}

extension StreamConsumer {
    /// By default snapped bytes are skipped like bytes never captured.
    public func truncated(length: UInt64, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        gap(length: length, offset: offset, availableNanoseconds: availableNanoseconds)
    }
}

/// Per-direction TCP counters. Bytes are TCP payload bytes.
public struct DirectionStats: Codable, Sendable, Equatable {
    /// Packets in this direction (with or without payload).
    public var packets = 0
    /// Every payload byte captured, retransmissions included.
    public var payloadBytes: UInt64 = 0
    /// Distinct stream bytes delivered in order (each counted once).
    public var uniqueBytes: UInt64 = 0
    /// Payload bytes that repeated bytes already seen (retransmissions, overlaps).
    public var retransmittedBytes: UInt64 = 0
    /// Payload bytes the capture's snap length cut off (counted as present: they crossed the wire).
    public var truncatedBytes: UInt64 = 0
    /// Stream bytes never captured, and how many holes they formed.
    public var gapBytes: UInt64 = 0
    public var gaps = 0
    /// Segments that arrived ahead of a hole and were buffered.
    public var outOfOrderSegments = 0
    /// Capture times of the first and last payload byte, ns since the epoch (0: none).
    public var firstPayloadNanoseconds: UInt64 = 0
    public var lastPayloadNanoseconds: UInt64 = 0
    public var synSeen = false
    public var finSeen = false
    public var rstSeen = false
    /// True when the capture started after the connection did (no SYN for this direction).
    public var midstream = false

    public init() {}
}
