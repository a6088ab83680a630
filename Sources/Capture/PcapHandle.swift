import CPcap

/// The one owner of a libpcap `pcap_t` (and of the `pcap_dumper_t` writing from it, if any).
/// Nothing outside this module sees either pointer; they are closed exactly once, in `deinit`.
final class PcapHandle {
    let pcap: OpaquePointer
    private(set) var dumper: OpaquePointer?

    init(_ pcap: OpaquePointer) { self.pcap = pcap }

    deinit {
        if let d = dumper { pcap_dump_close(d) }
        pcap_close(pcap)
    }

    /// The last error libpcap recorded on this handle.
    var lastError: String { String(cString: pcap_geterr(pcap)) }

    var linkType: LinkType { LinkType(rawValue: pcap_datalink(pcap)) }

    var precision: TimestampPrecision {
        pcap_get_tstamp_precision(pcap) == PCAP_TSTAMP_PRECISION_NANO ? .nanoseconds : .microseconds
    }

    /// Multiplier from the `tv_usec` field of a packet header to nanoseconds.
    var subsecondScale: UInt64 { precision == .nanoseconds ? 1 : 1000 }

    /// Opens a pcap file for writing records from this handle (nanosecond magic when the handle's
    /// precision is nanoseconds).
    func openDumper(path: String) throws(CaptureError) {
        guard let d = pcap_dump_open(pcap, path) else {
            throw .writeFailed(path: path, detail: lastError)
        }
        dumper = d
    }

    /// Flushes and closes the dumper (idempotent). Returns false when the flush failed.
    @discardableResult
    func closeDumper() -> Bool {
        guard let d = dumper else { return true }
        let ok = pcap_dump_flush(d) == 0
        pcap_dump_close(d)
        dumper = nil
        return ok
    }

    /// Appends one record to the dumper.
    @inline(__always)
    func dump(header: UnsafePointer<pcap_pkthdr>, bytes: UnsafePointer<UInt8>) {
        pcap_dump(UnsafeMutableRawPointer(dumper!).assumingMemoryBound(to: UInt8.self), header, bytes)
    }

    /// The dumper as the `user` argument `pcap_dispatch` passes to `pcap_dump`.
    var dumperAsUser: UnsafeMutablePointer<UInt8>? {
        dumper.map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: UInt8.self) }
    }
}
