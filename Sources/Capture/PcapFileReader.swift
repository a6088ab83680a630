import CPcap
import LinuxSupport
#if canImport(Glibc)
import Glibc
#endif

/// One captured packet, as seen inside a `PcapFileReader.forEachPacket` callback.
///
/// `unsafeBytes` points into libpcap's read buffer: it is valid only until the callback returns
/// (that is what makes reading a million packets cheap). Use `copyBytes()` to keep them.
public struct PacketView {
    /// Capture time in nanoseconds since the Unix epoch (microsecond files are scaled).
    public let timestampNanoseconds: UInt64
    /// Bytes actually stored in the file for this packet (≤ the snap length).
    public var capturedLength: Int { unsafeBytes.count }
    /// Length of the packet on the wire, in bytes.
    public let originalLength: Int
    /// The captured bytes; valid only during the callback.
    public let unsafeBytes: UnsafeRawBufferPointer
    /// 0-based index of this packet in its file.
    public let index: Int

    /// A copy of the captured bytes that outlives the callback.
    public func copyBytes() -> [UInt8] { Array(unsafeBytes) }
}

/// What a pass over a file found.
public struct ReadSummary: Sendable, Equatable {
    /// Complete packet records delivered to the callback.
    public var packets: Int
    /// Set when the file ended inside a record and truncation was allowed: libpcap's description.
    public var truncation: String?
}

/// Reads a standard pcap (or pcapng) file offline through libpcap, with nanosecond timestamps
/// whatever the file's own precision.
public final class PcapFileReader {
    public let path: String
    /// The file's link-layer header type.
    public let linkType: LinkType
    /// The resolution the file was written with.
    public let filePrecision: TimestampPrecision
    /// The snap length recorded in the file header, in bytes.
    public let snapLength: Int
    private let handle: PcapHandle

    /// Opens `path`. Throws `CaptureError.fileUnreadable`, `.emptyFile` or `.notAPcapFile`.
    public init(path: String) throws(CaptureError) {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else { throw .fileUnreadable(path: path, detail: errnoText(.last)) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw .fileUnreadable(path: path, detail: "is a directory") }
        if st.st_size == 0 { throw .emptyFile(path: path) }
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        // Open the FILE ourselves to give it a 1 MiB stdio buffer: libpcap reads each record with
        // two small freads, and the default 4 KiB buffer costs a read(2) per few packets.
        guard let file = fopen(path, "rb") else { throw .fileUnreadable(path: path, detail: errnoText(.last)) }
        setvbuf(file, nil, _IOFBF, 1 << 20)
        guard let p = pcap_fopen_offline_with_tstamp_precision(file, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
            fclose(file)
            throw .notAPcapFile(path: path, detail: String(cString: errbuf))
        }
        handle = PcapHandle(p)
        linkType = handle.linkType
        snapLength = Int(pcap_snapshot(p))
        // libpcap converts to the requested precision; the file's own is in its magic number.
        filePrecision = Self.magicPrecision(path: path)
    }

    private static func magicPrecision(path: String) -> TimestampPrecision {
        guard let f = fopen(path, "rb") else { return .microseconds }
        defer { fclose(f) }
        var magic: UInt32 = 0
        guard fread(&magic, 4, 1, f) == 1 else { return .microseconds }
        return magic == 0xA1B2_3C4D || magic == 0x4D3C_B2A1 ? .nanoseconds : .microseconds
    }

    /// Calls `body` for every packet in file order, without copying packet bytes.
    ///
    /// - Parameter allowTruncation: when true, a file that ends inside a record (a capture that
    ///   was killed) is not an error: the complete records are delivered and `ReadSummary.truncation`
    ///   says what was cut. When false that case throws `CaptureError.truncated`.
    /// - Throws: `CaptureError.truncated`/`.corrupt`, or whatever `body` throws.
    /// A reader is single-pass: call this once.
    @discardableResult
    public func forEachPacket(allowTruncation: Bool = false, _ body: (PacketView) throws -> Void) throws -> ReadSummary {
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        var count = 0
        while true {
            let rc = pcap_next_ex(handle.pcap, &header, &data)
            if rc == 1, let h = header, let d = data {
                let hdr = h.pointee
                // Nanosecond precision was requested at open, so tv_usec holds nanoseconds.
                let ns = UInt64(bitPattern: Int64(hdr.ts.tv_sec)) &* 1_000_000_000 &+ UInt64(bitPattern: Int64(hdr.ts.tv_usec))
                let view = PacketView(
                    timestampNanoseconds: ns, originalLength: Int(hdr.len),
                    unsafeBytes: UnsafeRawBufferPointer(start: d, count: Int(hdr.caplen)), index: count)
                count += 1
                try body(view)
            } else if rc == PCAP_ERROR_BREAK || rc == -2 {
                return ReadSummary(packets: count, truncation: nil)
            } else {
                let detail = handle.lastError
                if detail.contains("truncated") {
                    if allowTruncation { return ReadSummary(packets: count, truncation: detail) }
                    throw CaptureError.truncated(path: path, completePackets: count, detail: detail)
                }
                throw CaptureError.corrupt(path: path, completePackets: count, detail: detail)
            }
        }
    }

    /// Timestamp of the first packet in nanoseconds, or nil for a file with no packets. Opens the
    /// file separately, so it does not disturb `forEachPacket`.
    public static func firstTimestampNanoseconds(path: String) throws(CaptureError) -> UInt64? {
        let reader = try PcapFileReader(path: path)
        var first: UInt64?
        do {
            try reader.forEachPacket(allowTruncation: true) { p in
                first = p.timestampNanoseconds
                throw StopIteration()
            }
        } catch is StopIteration {
        } catch let e as CaptureError {
            throw e
        } catch {
            throw .corrupt(path: path, completePackets: 0, detail: "\(error)")
        }
        return first
    }
}

private struct StopIteration: Error {}
