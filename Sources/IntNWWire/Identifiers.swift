/// Identifiers and labels shared by the wire protocol, the IROB core and the public API.

/// Identifies one IROB within one direction of one multisocket session.
///
/// The sender assigns ids consecutively starting at 1; 0 is never a valid IROB id.
public struct IROBID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public static func < (a: IROBID, b: IROBID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "irob#\(rawValue)" }
}

/// A 128-bit random identifier the client picks for a multisocket; the server groups connections by it.
public struct SessionID: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }
    /// A fresh random session id.
    public static func random() -> SessionID {
        var rng = SystemRandomNumberGenerator()
        return SessionID(high: rng.next(), low: rng.next())
    }
    public var description: String {
        let h = String(high, radix: 16), l = String(low, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }
}

/// What kind of network a local interface belongs to. Raw values are the wire encoding.
public enum NetworkKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case other = 0
    case wifi = 1
    case cellular = 2
    case wired = 3

    /// Decodes a wire value; unknown values (from a newer peer) map to `.other`.
    public init(wire: UInt8) { self = NetworkKind(rawValue: wire) ?? .other }

    public var description: String {
        switch self {
        case .other: "other"
        case .wifi: "wifi"
        case .cellular: "cellular"
        case .wired: "wired"
        }
    }
}

/// Which networks a message may use.
public enum NetworkRestriction: UInt8, Sendable, CaseIterable {
    /// Any network; the scheduler picks by labels and estimates.
    case any = 0
    /// Only WiFi. With WiFi gone the message waits, fails, or defers to a thunk (caller's choice).
    case wifiOnly = 1
    /// Only cellular.
    case cellularOnly = 2
    /// WiFi when it is usable, otherwise any network.
    case wifiPreferred = 3

    /// Whether a network of `kind` may carry a message with this restriction.
    public func allows(_ kind: NetworkKind) -> Bool {
        switch self {
        case .any, .wifiPreferred: true
        case .wifiOnly: kind == .wifi
        case .cellularOnly: kind == .cellular
        }
    }
}

/// The sender's labels of an IROB; the receiver learns them unchanged.
///
/// Wire encoding (32 bits): bit 0 foreground, bit 1 background, bit 2 small, bit 3 large,
/// bits 4-5 the `NetworkRestriction` raw value; other bits are reserved, carried through unchanged
/// and ignored by this version.
public struct Labels: Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let foregroundBit: UInt32 = 1 << 0
    public static let backgroundBit: UInt32 = 1 << 1
    public static let smallBit: UInt32 = 1 << 2
    public static let largeBit: UInt32 = 1 << 3
    static let restrictionShift: UInt32 = 4
    static let restrictionMask: UInt32 = 0x3 << 4

    /// Foreground (interactive): low latency matters.
    public static let foreground = Labels(rawValue: foregroundBit)
    /// Background (bulk, deferrable): throughput matters; must not hurt foreground traffic.
    public static let background = Labels(rawValue: backgroundBit)
    /// A small message (latency-bound).
    public static let small = Labels(rawValue: smallBit)
    /// A large message (bandwidth-bound).
    public static let large = Labels(rawValue: largeBit)
    /// No labels: treated as foreground, any network.
    public static let none = Labels(rawValue: 0)

    public static func restricted(_ r: NetworkRestriction) -> Labels {
        Labels(rawValue: UInt32(r.rawValue) << restrictionShift)
    }
    public static let wifiOnly = restricted(.wifiOnly)
    public static let cellularOnly = restricted(.cellularOnly)
    public static let wifiPreferred = restricted(.wifiPreferred)

    /// Combines labels; a restriction in `other` replaces the one in `self`.
    public func union(_ other: Labels) -> Labels {
        var r = Labels(rawValue: (rawValue | other.rawValue) & ~Labels.restrictionMask)
        r.rawValue |= (other.restrictionRaw != 0 ? other.rawValue : rawValue) & Labels.restrictionMask
        return r
    }
    public static func | (a: Labels, b: Labels) -> Labels { a.union(b) }

    var restrictionRaw: UInt32 { (rawValue & Labels.restrictionMask) >> Labels.restrictionShift }
    public var restriction: NetworkRestriction { NetworkRestriction(rawValue: UInt8(restrictionRaw)) ?? .any }

    /// A message is background iff labelled background and not also foreground
    /// (foreground wins a contradiction; unlabelled messages are foreground).
    public var isBackground: Bool {
        rawValue & Labels.backgroundBit != 0 && rawValue & Labels.foregroundBit == 0
    }
    public var isForeground: Bool { !isBackground }
    public var isSmall: Bool { rawValue & Labels.smallBit != 0 && rawValue & Labels.largeBit == 0 }
    public var isLarge: Bool { rawValue & Labels.largeBit != 0 && rawValue & Labels.smallBit == 0 }

    /// Whether the message is latency-bound (choose the lowest-RTT network) rather than
    /// bandwidth-bound. An explicit size label decides; otherwise foreground means latency-bound.
    public var prefersLowLatency: Bool {
        if isSmall { return true }
        if isLarge { return false }
        return isForeground
    }

    public var description: String {
        var parts: [String] = []
        if rawValue & Labels.foregroundBit != 0 { parts.append("fg") }
        if rawValue & Labels.backgroundBit != 0 { parts.append("bg") }
        if rawValue & Labels.smallBit != 0 { parts.append("small") }
        if rawValue & Labels.largeBit != 0 { parts.append("large") }
        switch restriction {
        case .any: break
        case .wifiOnly: parts.append("wifi-only")
        case .cellularOnly: parts.append("cellular-only")
        case .wifiPreferred: parts.append("wifi-preferred")
        }
        return parts.isEmpty ? "none" : parts.joined(separator: ",")
    }
}
