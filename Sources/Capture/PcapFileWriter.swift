import CPcap

/// Writes a standard pcap file with `pcap_dump`: for synthesized captures (tests, benchmarks).
/// Live captures write through `LiveCapture` instead.
public final class PcapFileWriter {
    public let path: String
    public let linkType: LinkType
    public let precision: TimestampPrecision
    private let handle: PcapHandle
    private var closed = false
    /// Records written so far.
    public private(set) var packetsWritten = 0

    /// Creates (truncates) `path`. `snapLength` is recorded in the file header, in bytes.
    public init(path: String, linkType: LinkType, precision: TimestampPrecision = .nanoseconds,
                snapLength: Int = 262_144) throws(CaptureError) {
        self.path = path
        self.linkType = linkType
        self.precision = precision
        let prec = precision == .nanoseconds ? PCAP_TSTAMP_PRECISION_NANO : PCAP_TSTAMP_PRECISION_MICRO
        guard let p = pcap_open_dead_with_tstamp_precision(linkType.rawValue, Int32(snapLength), UInt32(prec)) else {
            throw .writeFailed(path: path, detail: "pcap_open_dead failed")
        }
        handle = PcapHandle(p)
        try handle.openDumper(path: path)
    }

    /// Appends one packet. `originalLength` defaults to the number of bytes given; bytes beyond
    /// the snap length are the caller's responsibility (pass a shorter buffer and a larger
    /// `originalLength` to mimic a snapped capture).
    public func write(timestampNanoseconds ns: UInt64, bytes: UnsafeRawBufferPointer, originalLength: Int? = nil) {
        precondition(!closed, "write after close")
        var hdr = pcap_pkthdr()
        hdr.ts.tv_sec = Int(ns / 1_000_000_000)
        let sub = ns % 1_000_000_000
        hdr.ts.tv_usec = Int(precision == .nanoseconds ? sub : sub / 1000)
        hdr.caplen = UInt32(bytes.count)
        hdr.len = UInt32(originalLength ?? bytes.count)
        guard let base = bytes.baseAddress else {
            var empty: UInt8 = 0
            handle.dump(header: &hdr, bytes: &empty)
            packetsWritten += 1
            return
        }
        handle.dump(header: &hdr, bytes: base.assumingMemoryBound(to: UInt8.self))
        packetsWritten += 1
    }

    /// Convenience for arrays.
    public func write(timestampNanoseconds ns: UInt64, bytes: [UInt8], originalLength: Int? = nil) {
        bytes.withUnsafeBytes { write(timestampNanoseconds: ns, bytes: $0, originalLength: originalLength) }
    }

    /// Flushes and closes the file. Idempotent; also done on deinit.
    public func close() throws(CaptureError) {
        guard !closed else { return }
        closed = true
        if !handle.closeDumper() { throw .writeFailed(path: path, detail: "flush failed") }
    }

    deinit { if !closed { handle.closeDumper() } }
}
