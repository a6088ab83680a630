/// Link-layer header types (libpcap DLT values as `pcap_datalink` reports them on Linux).
public struct LinkType: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// BSD loopback: 4-byte address family in host byte order.
    public static let null = LinkType(rawValue: 0)
    /// Ethernet II (veth devices).
    public static let ethernet = LinkType(rawValue: 1)
    /// Raw IP, no link header (TUN devices). 12 is Linux's DLT_RAW; 14 (BSD/OS) and 101 (the
    /// on-disk LINKTYPE_RAW) mean the same and are accepted by `isRawIP`.
    public static let raw = LinkType(rawValue: 12)
    /// Linux cooked capture v1 (16-byte header; the "any" device).
    public static let linuxSLL = LinkType(rawValue: 113)
    /// Raw IPv4 only.
    public static let ipv4 = LinkType(rawValue: 228)
    /// Linux cooked capture v2 (20-byte header).
    public static let linuxSLL2 = LinkType(rawValue: 276)

    /// True for every value that means "the packet starts with the IP header".
    public var isRawIP: Bool { rawValue == 12 || rawValue == 14 || rawValue == 101 || rawValue == 228 }

    public var description: String {
        switch rawValue {
        case 0: return "NULL"
        case 1: return "EN10MB"
        case 12, 14, 101: return "RAW"
        case 113: return "LINUX_SLL"
        case 228: return "IPV4"
        case 276: return "LINUX_SLL2"
        default: return "DLT \(rawValue)"
        }
    }
}

/// Timestamp resolution of a capture or file.
public enum TimestampPrecision: String, Sendable, Codable {
    case microseconds
    case nanoseconds
}
