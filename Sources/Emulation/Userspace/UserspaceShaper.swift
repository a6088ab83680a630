#if canImport(Glibc)
import Glibc
#endif
import CShims
import Logging
import LinuxSupport
import SystemPackage

/// The user-space link emulator (docs/testbed.md, Link emulation): for each link a TUN device in the client
/// namespace and one in the server namespace, and one thread per direction moving packets between
/// them through a rate/delay/loss/outage model with a bounded drop-tail queue.
///
/// TUN devices are not persistent: if the process dies they vanish with their file descriptors, so a
/// crash cannot leave devices behind.
public final class UserspaceShaper: Shaper {
    public struct Options: Sendable {
        /// Drop-tail limit of each direction's bottleneck queue, bytes. nil: max(1.5 × BDP, 64 KiB).
        public var queueLimitBytes: Int?
        /// Packet memory per direction (bottleneck queue + delay line), bytes.
        public var arenaBytes: Int = 32 << 20
        /// Seed of the loss model (each direction derives its own stream from it).
        public var seed: UInt64 = 1
        /// Directory for Mahimahi-style event logs (`<link>-<direction>.log`), or nil for none.
        public var eventLogDirectory: String?
        /// Let the kernel hand the emulator TSO/GSO super-packets (IFF_VNET_HDR + TUNSETOFFLOAD).
        /// Much faster for unlimited or very fast links; coarser for slow shaped links, so off by default.
        public var offload = false

        public init() {}
    }

    public let kind = ShaperKind.userspace
    public let options: Options
    private let logger: Logger
    private var pipes: [LinkPipe] = []
    private var clientFDs: [String: Int32] = [:]
    private var ownedFDs: [Int32] = []

    public init(options: Options = Options(), logger: Logger) {
        self.options = options
        self.logger = logger
    }

    deinit { detach() }

    public func attach(topology: TopologySpec) throws {
        guard access("/dev/net/tun", R_OK | W_OK) == 0 else {
            throw EmulatorError.system(call: "open /dev/net/tun (TUN support needed for the user-space shaper)", errno: .last)
        }
        let vnet: Int32 = options.offload ? 1 : 0
        let maxPacket = 65_536 + 16
        for (i, link) in topology.links.enumerated() {
            let iface = link.interface
            let c = try NetworkNamespace.run(in: topology.clientNamespace) { try Self.openTUN(iface, vnet: vnet) }
            ownedFDs.append(c)
            let s = try NetworkNamespace.run(in: topology.serverNamespace) { try Self.openTUN(iface, vnet: vnet) }
            ownedFDs.append(s)
            if !options.offload {
                for ns in [topology.clientNamespace, topology.serverNamespace] {
                    try NetworkNamespace.run(in: ns) { try Self.wireSizePackets(iface) }
                }
            }
            if options.offload {
                for fd in [c, s] where cshims_tun_set_offload(fd, 1) != 0 {
                    throw EmulatorError.system(call: "TUNSETOFFLOAD on \(iface)", errno: .last)
                }
            }
            clientFDs[link.name] = c
            let initial = DirectionParameters(bytesPerSecond: nil, delayMicroseconds: 0)
            for (direction, src, dst) in [(LinkDirection.uplink, c, s), (.downlink, s, c)] {
                let log = options.eventLogDirectory.map { "\($0)/\(link.name)-\(direction.rawValue).log" }
                let pipe = try LinkPipe(
                    link: link.name, direction: direction, sourceFD: src, destinationFD: dst,
                    parameters: initial, queueLimitBytes: 64 << 10, arenaBytes: options.arenaBytes,
                    seed: options.seed &+ UInt64(i * 2 + (direction == .uplink ? 0 : 1)) &* 0x9E37_79B9,
                    maxPacketBytes: maxPacket, eventLogPath: log)
                pipes.append(pipe)
            }
        }
        pipes.forEach { $0.start() }
        logger.info("user-space emulator attached: \(topology.links.map(\.interface).joined(separator: ", ")) (offload \(options.offload ? "on" : "off"))")
    }

    /// Without offload the emulator only ever carries wire-size packets, so the device should say so:
    /// a TUN device comes up with GSO and GRO on, and libpcap then sizes every capture-ring slot for a
    /// 64 KiB super-packet (a 16 MiB ring holds 256 packets and drops under a burst while the capture
    /// thread waits for a core). With them off, a slot is MTU-sized and the same ring holds thousands.
    private static func wireSizePackets(_ name: String) throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw EmulatorError.system(call: "socket for ethtool on \(name)", errno: .last) }
        defer { close(fd) }
        guard cshims_ethtool_disable_offloads(fd, name) == 0 else {
            throw EmulatorError.system(call: "ethtool: GRO and segmentation offloads off on \(name)", errno: .last)
        }
    }

    private static func openTUN(_ name: String, vnet: Int32) throws -> Int32 {
        let fd = cshims_tun_open(name, vnet)
        guard fd >= 0 else { throw EmulatorError.system(call: "TUNSETIFF \(name)", errno: .last) }
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        return fd
    }

    /// Drop-tail limit for a direction: the configured one, or 1.5 × bandwidth-delay product (RTT taken
    /// as twice the one-way delay) with a 64 KiB floor so slow links still absorb a TCP burst.
    func queueLimit(for p: DirectionParameters) -> Int {
        if let q = options.queueLimitBytes { return q }
        guard let rate = p.bytesPerSecond else { return Int.max / 2 }
        let bdp = rate * (2 * p.delayMicroseconds) / 1e6
        return max(Int(1.5 * bdp), 64 << 10)
    }

    public func apply(link: String, direction: LinkDirection, parameters: DirectionParameters) throws {
        guard let pipe = pipes.first(where: { $0.link == link && $0.direction == direction }) else {
            throw EmulatorError.unknownLink(link)
        }
        pipe.update(parameters, queueLimitBytes: queueLimit(for: parameters))
    }

    public func setCarrier(link: String, up: Bool) throws {
        guard let fd = clientFDs[link] else { throw EmulatorError.unknownLink(link) }
        guard cshims_tun_set_carrier(fd, up ? 1 : 0) == 0 else {
            throw EmulatorError.system(call: "TUNSETCARRIER \(link)", errno: .last)
        }
    }

    public func counters() -> [DirectionCounters] { pipes.map(\.counters) }

    /// Departure lateness (actual − scheduled) over every direction so far.
    public func lateness() -> LatenessHistogram {
        var h = LatenessHistogram()
        for p in pipes { h.merge(p.lateness) }
        return h
    }

    public func detach() {
        pipes.forEach { $0.stop() }
        pipes.removeAll()
        ownedFDs.forEach { close($0) }
        ownedFDs.removeAll()
        clientFDs.removeAll()
    }
}
