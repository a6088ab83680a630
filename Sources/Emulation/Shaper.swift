/// Which way a packet travels on a link.
public enum LinkDirection: String, Sendable, Codable, CaseIterable {
    /// Client to server.
    case uplink
    /// Server to client.
    case downlink
}

/// Complete shaping parameters for one direction of one link. Backends apply the whole set on every
/// update (docs/testbed.md, Link emulation: a partial netem `change` silently resets what it omits).
public struct DirectionParameters: Sendable, Equatable {
    /// Serialization rate in bytes per second; `nil` means unlimited.
    public var bytesPerSecond: Double?
    /// One-way propagation delay, microseconds.
    public var delayMicroseconds: Double
    /// Independent loss probability per packet, 0...1.
    public var lossFraction: Double
    /// When false every packet is dropped (WiFi out of range).
    public var available: Bool

    public init(bytesPerSecond: Double?, delayMicroseconds: Double, lossFraction: Double = 0, available: Bool = true) {
        self.bytesPerSecond = bytesPerSecond
        self.delayMicroseconds = delayMicroseconds
        self.lossFraction = lossFraction
        self.available = available
    }

    /// The parameters a trace slice implies for one direction of a link.
    public static func from(_ c: LinkConditions, direction: LinkDirection, available: Bool) -> DirectionParameters {
        let rate = direction == .uplink ? c.upBytesPerSecond : c.downBytesPerSecond
        // On cellular, 0 means "very slow", not gone: keep a floor of 1 kB/s so queues still drain.
        let effective: Double? = available ? max(rate, 1000) : nil
        return DirectionParameters(bytesPerSecond: effective, delayMicroseconds: c.oneWayDelayMicroseconds,
                                   lossFraction: c.lossFraction, available: available)
    }
}

/// Counters a shaper keeps per link direction.
public struct DirectionCounters: Sendable, Equatable, Codable {
    public var link: String
    public var direction: LinkDirection
    public var packetsIn: UInt64 = 0
    public var packetsOut: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    /// Dropped because the bottleneck queue was full.
    public var queueDrops: UInt64 = 0
    /// Dropped by the random loss model.
    public var lossDrops: UInt64 = 0
    /// Dropped because the link was unavailable (outage).
    public var outageDrops: UInt64 = 0

    public init(link: String, direction: LinkDirection) {
        self.link = link
        self.direction = direction
    }
}

/// The shaping backend in use (`--shaper auto|netem|userspace`).
public enum ShaperKind: String, Sendable, Codable, CaseIterable {
    case netem
    case userspace
}

/// A link shaping backend. Lifecycle: `attach` creates the link devices between the namespaces (the
/// topology then assigns addresses and routes), `apply` is called once per trace slice with the whole
/// parameter set for every link direction, `setCarrier` models the OS noticing WiFi loss/return, and
/// `detach` removes everything the backend created.
public protocol Shaper: AnyObject {
    var kind: ShaperKind { get }
    /// Creates the devices for every link of `topology` (namespaces already exist).
    func attach(topology: TopologySpec) throws
    /// Applies complete parameters for one direction of one link.
    func apply(link: String, direction: LinkDirection, parameters: DirectionParameters) throws
    /// Sets the client-side carrier of `link` up or down.
    func setCarrier(link: String, up: Bool) throws
    /// Current counters for every link direction.
    func counters() -> [DirectionCounters]
    /// Removes devices and stops any threads. Safe to call more than once.
    func detach()
}
