import Capture

/// The TCP facts the analyzer needs from one packet. Offsets index the captured packet bytes.
public struct TCPSegment: Sendable, Equatable {
    public var sourceIP: UInt32
    public var destinationIP: UInt32
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var sequence: UInt32
    public var acknowledgement: UInt32
    public var flags: UInt8
    /// Where the TCP payload starts in the captured bytes.
    public var payloadOffset: Int
    /// TCP payload length in bytes according to the IP header (may exceed what was captured).
    public var payloadLength: Int
    /// Payload bytes actually present in the capture (≤ `payloadLength`).
    public var capturedPayloadLength: Int

    public var syn: Bool { flags & 0x02 != 0 }
    public var fin: Bool { flags & 0x01 != 0 }
    public var rst: Bool { flags & 0x04 != 0 }
    public var ack: Bool { flags & 0x10 != 0 }
}

/// Why a packet was not a usable IPv4/TCP segment.
public enum PacketSkipReason: Error, Sendable {
    case unsupportedLinkType
    /// Not IPv4 (IPv6, ARP, ...): counted, not analyzed.
    case notIPv4
    /// IPv4 but not TCP (UDP, ICMP, ...).
    case notTCP
    /// An IP fragment: the testbed's TCP never fragments, so these are counted only.
    case fragment
    /// Headers cut short or inconsistent (hostile or snapped bytes).
    case malformed
}

/// Parses link layer, IPv4 and TCP headers in place (no copies, no allocation). Every length is
/// checked against the captured bytes: any input yields a segment or a skip reason, never a trap.
public enum PacketParser {
    @inline(__always)
    static func be16(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt16 {
        UInt16(b[o]) << 8 | UInt16(b[o + 1])
    }

    @inline(__always)
    static func be32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(bigEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }

    /// Offset of the IPv4 header for the given link type, or a skip reason.
    @inline(__always)
    public static func networkOffset(_ b: UnsafeRawBufferPointer, linkType: LinkType) -> Result<Int, PacketSkipReason> {
        switch linkType.rawValue {
        case 12, 14, 101, 228:
            return .success(0)
        case 1:
            guard b.count >= 14 else { return .failure(.malformed) }
            var type = be16(b, 12)
            var off = 14
            // Up to two VLAN tags (802.1Q / 802.1ad).
            var tags = 0
            while (type == 0x8100 || type == 0x88A8) && tags < 2 {
                guard b.count >= off + 4 else { return .failure(.malformed) }
                type = be16(b, off + 2)
                off += 4
                tags += 1
            }
            return type == 0x0800 ? .success(off) : .failure(.notIPv4)
        case 113:
            guard b.count >= 16 else { return .failure(.malformed) }
            return be16(b, 14) == 0x0800 ? .success(16) : .failure(.notIPv4)
        case 276:
            guard b.count >= 20 else { return .failure(.malformed) }
            return be16(b, 0) == 0x0800 ? .success(20) : .failure(.notIPv4)
        case 0:
            guard b.count >= 4 else { return .failure(.malformed) }
            // Address family in the capturing host's byte order; AF_INET is 2 everywhere.
            let fam = b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)
            return fam == 2 || fam == 0x0200_0000 ? .success(4) : .failure(.notIPv4)
        default:
            return .failure(.unsupportedLinkType)
        }
    }

    /// Parses one captured packet.
    public static func parse(_ b: UnsafeRawBufferPointer, linkType: LinkType) -> Result<TCPSegment, PacketSkipReason> {
        let ip: Int
        switch networkOffset(b, linkType: linkType) {
        case .success(let o): ip = o
        case .failure(let r): return .failure(r)
        }
        guard b.count >= ip + 20 else { return .failure(b.count > ip && b[ip] >> 4 != 4 ? .notIPv4 : .malformed) }
        let vihl = b[ip]
        guard vihl >> 4 == 4 else { return .failure(.notIPv4) }
        let ihl = Int(vihl & 0x0F) * 4
        guard ihl >= 20, b.count >= ip + ihl else { return .failure(.malformed) }
        let totalLength = Int(be16(b, ip + 2))
        guard totalLength >= ihl else { return .failure(.malformed) }
        let fragField = be16(b, ip + 6)
        if fragField & 0x3FFF != 0 { return .failure(.fragment) }
        guard b[ip + 9] == 6 else { return .failure(.notTCP) }
        let tcp = ip + ihl
        guard b.count >= tcp + 20, totalLength >= ihl + 20 else { return .failure(.malformed) }
        let dataOffset = Int(b[tcp + 12] >> 4) * 4
        guard dataOffset >= 20, totalLength >= ihl + dataOffset, b.count >= tcp + dataOffset else {
            return .failure(.malformed)
        }
        let payloadOffset = tcp + dataOffset
        let payloadLength = totalLength - ihl - dataOffset
        // Ethernet pads short frames: trust the IP length, not the captured length, for the end.
        let captured = max(0, min(payloadLength, b.count - payloadOffset))
        return .success(TCPSegment(
            sourceIP: be32(b, ip + 12), destinationIP: be32(b, ip + 16),
            sourcePort: be16(b, tcp), destinationPort: be16(b, tcp + 2),
            sequence: be32(b, tcp + 4), acknowledgement: be32(b, tcp + 8),
            flags: b[tcp + 13],
            payloadOffset: payloadOffset, payloadLength: payloadLength, capturedPayloadLength: captured))
    }
}

/// Dotted-quad text of an IPv4 address held in host order.
public func ipv4String(_ a: UInt32) -> String {
    "\(a >> 24).\((a >> 16) & 0xFF).\((a >> 8) & 0xFF).\(a & 0xFF)"
}
