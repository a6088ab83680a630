import Capture

/// Builds IPv4/TCP packets and writes them as a pcap: known traffic for tests and benchmarks.
/// Checksums are correct, so tcpdump and tshark accept the packets as real.
public final class SyntheticCapture {
    public let writer: PcapFileWriter
    public let linkType: LinkType
    private var buffer = [UInt8](repeating: 0, count: 65_600)
    private var ipID: UInt16 = 1

    /// When set, packets are written cut to this many bytes (their original length recorded), as
    /// a capture with a short snap length would.
    public let snapLength: Int?

    public init(path: String, linkType: LinkType = .raw, snapLength: Int? = nil) throws(CaptureError) {
        self.snapLength = snapLength
        writer = try PcapFileWriter(path: path, linkType: linkType, snapLength: snapLength ?? 262_144)
        self.linkType = linkType
    }

    public var packetsWritten: Int { writer.packetsWritten }

    public func close() throws(CaptureError) { try writer.close() }

    /// TCP flag bits.
    public static let fin: UInt8 = 0x01, syn: UInt8 = 0x02, rst: UInt8 = 0x04, psh: UInt8 = 0x08, ack: UInt8 = 0x10

    /// Writes one TCP segment captured at `time` (ns since the epoch).
    public func tcp(time: UInt64, from src: (ip: UInt32, port: UInt16), to dst: (ip: UInt32, port: UInt16),
                    seq: UInt32, ack: UInt32, flags: UInt8, payload: UnsafeRawBufferPointer, window: UInt16 = 65_535) {
        let link: Int
        switch linkType {
        case .ethernet: link = 14
        case .linuxSLL: link = 16
        case .linuxSLL2: link = 20
        default: link = 0
        }
        let ipLen = 20 + 20 + payload.count
        precondition(ipLen <= 65_535, "segment too large")
        buffer.withUnsafeMutableBytes { b in
            for i in 0 ..< link { b[i] = 0 }
            switch linkType {
            case .ethernet:
                b[0] = 0x02; b[5] = 0x01; b[6] = 0x02; b[11] = 0x02
                b[12] = 0x08; b[13] = 0x00
            case .linuxSLL:
                b[14] = 0x08; b[15] = 0x00
            case .linuxSLL2:
                b[0] = 0x08; b[1] = 0x00
            default: break
            }
            let ip = link
            b[ip] = 0x45; b[ip + 1] = 0
            put16(b, ip + 2, UInt16(ipLen))
            put16(b, ip + 4, ipID); ipID &+= 1
            put16(b, ip + 6, 0x4000) // DF
            b[ip + 8] = 64; b[ip + 9] = 6
            put16(b, ip + 10, 0)
            put32(b, ip + 12, src.ip)
            put32(b, ip + 16, dst.ip)
            put16(b, ip + 10, checksum(b, ip, 20, initial: 0))
            let t = ip + 20
            put16(b, t, src.port); put16(b, t + 2, dst.port)
            put32(b, t + 4, seq); put32(b, t + 8, ack)
            b[t + 12] = 5 << 4; b[t + 13] = flags
            put16(b, t + 14, window); put16(b, t + 16, 0); put16(b, t + 18, 0)
            if let base = payload.baseAddress, payload.count > 0 {
                (b.baseAddress! + t + 20).copyMemory(from: base, byteCount: payload.count)
            }
            // Pseudo-header: addresses, protocol, TCP length.
            var pseudo: UInt32 = (src.ip >> 16) + (src.ip & 0xFFFF) + (dst.ip >> 16) + (dst.ip & 0xFFFF)
            pseudo += 6 + UInt32(20 + payload.count)
            put16(b, t + 16, checksum(b, t, 20 + payload.count, initial: pseudo))
            let total = link + ipLen
            let cut = min(total, snapLength ?? total)
            writer.write(timestampNanoseconds: time, bytes: UnsafeRawBufferPointer(rebasing: b[0 ..< cut]), originalLength: total)
        }
    }

    public func tcp(time: UInt64, from src: (ip: UInt32, port: UInt16), to dst: (ip: UInt32, port: UInt16),
                    seq: UInt32, ack: UInt32, flags: UInt8, payload: [UInt8] = []) {
        payload.withUnsafeBytes { tcp(time: time, from: src, to: dst, seq: seq, ack: ack, flags: flags, payload: $0) }
    }

    /// Writes arbitrary bytes as a packet (for robustness tests).
    public func raw(time: UInt64, bytes: [UInt8]) { writer.write(timestampNanoseconds: time, bytes: bytes) }

    @inline(__always) private func put16(_ b: UnsafeMutableRawBufferPointer, _ o: Int, _ v: UInt16) {
        b[o] = UInt8(v >> 8); b[o + 1] = UInt8(v & 0xFF)
    }

    @inline(__always) private func put32(_ b: UnsafeMutableRawBufferPointer, _ o: Int, _ v: UInt32) {
        b.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt32.self)
    }

    private func checksum(_ b: UnsafeMutableRawBufferPointer, _ start: Int, _ count: Int, initial: UInt32) -> UInt16 {
        var sum = UInt64(initial)
        var i = start
        let end = start + count
        while i + 8 <= end {
            let w = UInt64(bigEndian: b.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            sum += (w >> 48) + ((w >> 32) & 0xFFFF) + ((w >> 16) & 0xFFFF) + (w & 0xFFFF)
            i += 8
        }
        while i + 1 < end { sum += UInt64(b[i]) << 8 | UInt64(b[i + 1]); i += 2 }
        if i < end { sum += UInt64(b[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }
}

/// One synthetic TCP connection: tracks sequence numbers so callers think in stream offsets.
public final class SyntheticFlow {
    public let capture: SyntheticCapture
    public let client: (ip: UInt32, port: UInt16)
    public let server: (ip: UInt32, port: UInt16)
    public let clientISN: UInt32
    public let serverISN: UInt32
    /// Next stream offset each side will send (0 = first payload byte).
    public private(set) var clientOffset: UInt64 = 0
    public private(set) var serverOffset: UInt64 = 0
    public var mss = 1448

    public init(capture: SyntheticCapture, client: (ip: UInt32, port: UInt16), server: (ip: UInt32, port: UInt16),
                clientISN: UInt32 = 0xFFFF_F000, serverISN: UInt32 = 1000) {
        self.capture = capture
        self.client = client
        self.server = server
        self.clientISN = clientISN
        self.serverISN = serverISN
    }

    private func seq(fromClient: Bool, offset: UInt64) -> UInt32 {
        (fromClient ? clientISN : serverISN) &+ 1 &+ UInt32(truncatingIfNeeded: offset)
    }

    /// SYN, SYN/ACK, ACK at `time`, `time + rtt/2`, `time + rtt/2`.
    public func handshake(at time: UInt64, rttNanoseconds: UInt64 = 1_000_000) {
        capture.tcp(time: time, from: client, to: server, seq: clientISN, ack: 0, flags: SyntheticCapture.syn)
        capture.tcp(time: time + rttNanoseconds / 2, from: server, to: client, seq: serverISN, ack: clientISN &+ 1,
                    flags: SyntheticCapture.syn | SyntheticCapture.ack)
        capture.tcp(time: time + rttNanoseconds / 2, from: client, to: server, seq: clientISN &+ 1, ack: serverISN &+ 1,
                    flags: SyntheticCapture.ack)
    }

    /// One segment carrying `bytes` at stream `offset` (any offset: retransmissions and reordering
    /// are the caller's to construct). Advances the side's send offset when it goes past it.
    public func segment(fromClient: Bool, offset: UInt64, bytes: UnsafeRawBufferPointer, at time: UInt64, flags: UInt8 = 0x18) {
        let peerOffset = fromClient ? serverOffset : clientOffset
        capture.tcp(time: time, from: fromClient ? client : server, to: fromClient ? server : client,
                    seq: seq(fromClient: fromClient, offset: offset), ack: seq(fromClient: !fromClient, offset: peerOffset),
                    flags: flags, payload: bytes)
        let end = offset + UInt64(bytes.count)
        if fromClient { clientOffset = max(clientOffset, end) } else { serverOffset = max(serverOffset, end) }
    }

    public func segment(fromClient: Bool, offset: UInt64, bytes: [UInt8], at time: UInt64, flags: UInt8 = 0x18) {
        bytes.withUnsafeBytes { segment(fromClient: fromClient, offset: offset, bytes: $0, at: time, flags: flags) }
    }

    /// Sends `bytes` in order as MSS-sized segments spaced `gapNanoseconds` apart starting at
    /// `time`; returns the time of the last segment.
    @discardableResult
    public func send(fromClient: Bool, bytes: [UInt8], at time: UInt64, gapNanoseconds: UInt64 = 0) -> UInt64 {
        var t = time
        var i = 0
        let start = fromClient ? clientOffset : serverOffset
        bytes.withUnsafeBytes { raw in
            while i < raw.count {
                let n = min(mss, raw.count - i)
                segment(fromClient: fromClient, offset: start + UInt64(i), bytes: UnsafeRawBufferPointer(rebasing: raw[i ..< i + n]), at: t)
                i += n
                if i < raw.count { t += gapNanoseconds }
            }
        }
        return t
    }

    /// A pure ACK from one side acknowledging everything the other side sent so far.
    public func ack(fromClient: Bool, at time: UInt64) {
        capture.tcp(time: time, from: fromClient ? client : server, to: fromClient ? server : client,
                    seq: seq(fromClient: fromClient, offset: fromClient ? clientOffset : serverOffset),
                    ack: seq(fromClient: !fromClient, offset: fromClient ? serverOffset : clientOffset),
                    flags: SyntheticCapture.ack)
    }

    /// A pure ACK acknowledging the peer's stream up to `offset`.
    public func ack(fromClient: Bool, upTo offset: UInt64, at time: UInt64) {
        capture.tcp(time: time, from: fromClient ? client : server, to: fromClient ? server : client,
                    seq: seq(fromClient: fromClient, offset: fromClient ? clientOffset : serverOffset),
                    ack: seq(fromClient: !fromClient, offset: offset), flags: SyntheticCapture.ack)
    }

    /// FIN from one side (after its data).
    public func fin(fromClient: Bool, at time: UInt64) {
        capture.tcp(time: time, from: fromClient ? client : server, to: fromClient ? server : client,
                    seq: seq(fromClient: fromClient, offset: fromClient ? clientOffset : serverOffset),
                    ack: seq(fromClient: !fromClient, offset: fromClient ? serverOffset : clientOffset),
                    flags: SyntheticCapture.fin | SyntheticCapture.ack)
    }
}

/// Parses "a.b.c.d" into a host-order IPv4 address (nil when malformed).
public func parseIPv4(_ s: String) -> UInt32? {
    let parts = s.split(separator: ".")
    guard parts.count == 4 else { return nil }
    var v: UInt32 = 0
    for p in parts {
        guard let x = UInt8(p) else { return nil }
        v = v << 8 | UInt32(x)
    }
    return v
}
