import CShims
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import LinuxSupport
import SystemPackage

/// Errors of the netem backend that are not kernel errors (those are `NetlinkError`).
public enum NetemShaperError: Error, Equatable, CustomStringConvertible {
    case notAttached
    case alreadyAttached
    case unknownLink(String)
    case invalidInterfaceName(String)

    public var description: String {
        switch self {
        case .notAttached: return "netem shaper: not attached to a topology"
        case .alreadyAttached: return "netem shaper: already attached; detach first"
        case .unknownLink(let name): return "netem shaper: no link named \(name)"
        case .invalidInterfaceName(let name):
            return "netem shaper: invalid interface name \"\(name)\" (1 to 15 characters, no '/', ':' or spaces)"
        }
    }
}

/// The kernel backend (docs/testbed.md, Link emulation): one veth pair per link between the two namespaces,
/// netem as root qdisc on the sending end (uplink: the client end; downlink: the server end), GRO
/// and every segmentation offload (TSO, GSO, ...) off so netem sees wire-size packets. Every update
/// goes through rtnetlink and carries the whole parameter set.
///
/// Carrier: `setCarrier(link:up:false)` sets the *server* end administratively down, which the
/// kernel reports on the client end as NO-CARRIER (IFLA_CARRIER 0, operstate LOWERLAYERDOWN)
/// while the client end stays admin up, so its addresses and routes survive, as on a laptop whose
/// WiFi lost its access point. On the server side the kernel flushes routes through that device
/// while it is down; connected routes of its addresses come back with it, any others must be re-added.
///
/// Counters come from the netem qdisc's statistics (read at each `apply` and in `counters()`).
/// netem has a single drop counter, so drops are attributed by the parameters in force when they
/// happened: all of them to `outageDrops` during an outage; otherwise `lossFraction` × packets offered
/// to `lossDrops` (an estimate) and the rest to `queueDrops`. `packetsIn` = sent + dropped + held;
/// `bytesIn` = bytes sent + bytes held (netem does not count the bytes of dropped packets).
///
/// Thread-safe: all operations are serialized by one lock.
public final class NetemShaper: Shaper {
    public let kind: ShaperKind = .netem
    private let baseSeed: UInt64
    private let mtuBytes: Int
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameters:
    ///   - seed: base seed of netem's loss PRNG; each update uses a seed derived from it, the link,
    ///     the direction and the update number (`NetemOptions.derivedSeed`).
    ///   - mtuBytes: packet size assumed when sizing netem's limit from the bandwidth-delay product.
    public init(seed: UInt64 = 1, mtuBytes: Int = 1500, logger: Logger) {
        self.baseSeed = seed
        self.mtuBytes = mtuBytes
        self.logger = logger
    }

    deinit { detach() }

    public func attach(topology: TopologySpec) throws {
        try state.withLock { st in
            guard st.client == nil else { throw NetemShaperError.alreadyAttached }
            var seen = Set<String>()
            for link in topology.links {
                guard Self.isValidInterfaceName(link.interface), seen.insert(link.interface).inserted else {
                    throw NetemShaperError.invalidInterfaceName(link.interface)
                }
            }
            let serverNamespace = NetlinkNamespace.named(topology.serverNamespace)
            let client = try NamespaceControl.open(.named(topology.clientNamespace))
            let server = try NamespaceControl.open(serverNamespace)
            var created: [String] = []
            do {
                for (i, link) in topology.links.enumerated() {
                    let name = link.interface
                    // Leftovers of a crashed run: deleting either end removes the pair.
                    try client.deleteLinkIfPresent(name)
                    try server.deleteLinkIfPresent(name)
                    let serverHandle = try serverNamespace.openHandle()
                    defer { close(serverHandle) }
                    try client.netlink.perform(RouteMessages.createVethPair(name: name, peerName: name, peerNamespaceFD: serverHandle))
                    created.append(name)
                    let clientIndex = try client.linkInfo(name).index
                    let serverIndex = try server.linkInfo(name).index
                    try client.disableOffloads(name)
                    try server.disableOffloads(name)
                    try client.netlink.perform(RouteMessages.setLinkUp(index: clientIndex, name: name, up: true))
                    try server.netlink.perform(RouteMessages.setLinkUp(index: serverIndex, name: name, up: true))
                    st.links.append(LinkDevices(name: link.name, interface: name, position: i,
                                                clientIndex: clientIndex, serverIndex: serverIndex))
                    for direction in LinkDirection.allCases {
                        st.directions[DirectionKey(link: link.name, direction: direction)] =
                            DirectionState(counters: DirectionCounters(link: link.name, direction: direction))
                    }
                }
            } catch {
                for name in created { try? client.netlink.perform(RouteMessages.deleteLink(name: name)) }
                st = State()
                throw error
            }
            st.client = client
            st.server = server
            logger.info("netem: veth pairs \(st.links.map(\.interface).joined(separator: ", ")) between \(topology.clientNamespace) and \(topology.serverNamespace)")
        }
    }

    public func apply(link: String, direction: LinkDirection, parameters: DirectionParameters) throws {
        try state.withLock { st in
            let (devices, control, index) = try st.endpoint(link: link, direction: direction)
            let key = DirectionKey(link: link, direction: direction)
            var d = st.directions[key]!
            // Attribute drops so far to the parameters they happened under, before changing them.
            Self.refresh(&d, control: control, index: index, interface: devices.interface, logger: logger)
            let seed = NetemOptions.derivedSeed(base: baseSeed, linkIndex: devices.position, direction: direction, update: d.updates)
            let options = NetemOptions(parameters, seed: seed, mtuBytes: mtuBytes)
            try control.netlink.perform(RouteMessages.replaceNetem(index: index, interface: devices.interface, options: options))
            d.parameters = parameters
            d.updates += 1
            st.directions[key] = d
            logger.trace("netem: \(link) \(direction.rawValue) delay \(options.latencyNanoseconds) ns, rate \(options.rateBytesPerSecond) B/s, loss \(options.lossProbability)/2^32, limit \(options.limitPackets)")
        }
    }

    public func setCarrier(link: String, up: Bool) throws {
        try state.withLock { st in
            guard let server = st.server else { throw NetemShaperError.notAttached }
            guard let devices = st.links.first(where: { $0.name == link }) else { throw NetemShaperError.unknownLink(link) }
            try server.netlink.perform(RouteMessages.setLinkUp(index: devices.serverIndex, name: devices.interface, up: up))
        }
    }

    public func counters() -> [DirectionCounters] {
        state.withLock { st in
            var result: [DirectionCounters] = []
            for devices in st.links {
                for direction in LinkDirection.allCases {
                    guard let (_, control, index) = try? st.endpoint(link: devices.name, direction: direction) else { continue }
                    let key = DirectionKey(link: devices.name, direction: direction)
                    var d = st.directions[key]!
                    Self.refresh(&d, control: control, index: index, interface: devices.interface, logger: logger)
                    st.directions[key] = d
                    var c = d.counters
                    let drops = c.queueDrops + c.lossDrops + c.outageDrops
                    c.packetsIn = c.packetsOut + drops + UInt64(d.heldPackets)
                    c.bytesIn = c.bytesOut + UInt64(d.heldBytes)
                    result.append(c)
                }
            }
            return result
        }
    }

    public func detach() {
        state.withLock { st in
            if let client = st.client {
                for devices in st.links {
                    do {
                        try client.deleteLinkIfPresent(devices.interface)
                    } catch {
                        logger.warning("netem: could not delete \(devices.interface): \(error)")
                    }
                }
            }
            st = State()
        }
    }

    /// Reads the netem qdisc's statistics and folds the change since the last read into `d`.
    /// Reading is best effort (a failure leaves the counters as they were).
    private static func refresh(_ d: inout DirectionState, control: NamespaceControl, index: Int32, interface: String, logger: Logger) {
        guard let parameters = d.parameters else { return }
        let raw: QdiscStats
        do {
            guard let reply = try control.netlink.query(RouteMessages.getRootQdisc(index: index, interface: interface)).first else { return }
            let info = try QdiscInfo(message: reply)
            guard info.kind == "netem", let stats = info.stats else { return }
            raw = stats
        } catch {
            logger.debug("netem: reading statistics of \(interface): \(error)")
            return
        }
        d.fold(raw, under: parameters)
    }

    static func isValidInterfaceName(_ name: String) -> Bool {
        // IFNAMSIZ is 16 including the NUL; the kernel rejects '/', ':' and whitespace.
        !name.isEmpty && name.utf8.count <= 15 && name != "." && name != ".."
            && !name.contains { $0 == "/" || $0 == ":" || $0.isWhitespace }
    }
}

// MARK: - state

extension NetemShaper {

    struct DirectionKey: Hashable {
        var link: String
        var direction: LinkDirection
    }

    struct LinkDevices {
        var name: String
        var interface: String
        /// Position of the link in the topology (feeds the seed derivation).
        var position: Int
        var clientIndex: Int32
        var serverIndex: Int32
    }

    struct DirectionState {
        /// Parameters in force; nil until the first `apply` installs netem.
        var parameters: DirectionParameters?
        var updates: UInt64 = 0
        var lastRaw: QdiscStats?
        var heldPackets: UInt32 = 0
        var heldBytes: UInt32 = 0
        var counters: DirectionCounters

        init(parameters: DirectionParameters? = nil, counters: DirectionCounters) {
            self.parameters = parameters
            self.counters = counters
        }

        /// Adds the difference between `raw` and the previous reading, attributing drops by `parameters`.
        mutating func fold(_ raw: QdiscStats, under parameters: DirectionParameters) {
            // A re-created qdisc counts from zero again.
            let previous = lastRaw.flatMap { last in
                raw.packets >= last.packets && raw.bytes >= last.bytes && raw.drops >= last.drops ? last : nil
            } ?? QdiscStats()
            let sent = raw.packets - previous.packets
            let drops = raw.drops - previous.drops
            counters.packetsOut += sent
            counters.bytesOut += raw.bytes - previous.bytes
            if !parameters.available {
                counters.outageDrops += drops
            } else {
                let fraction = min(1, max(0, parameters.lossFraction.isFinite ? parameters.lossFraction : 0))
                let expectedLoss = UInt64((fraction * Double(sent + drops)).rounded())
                let loss = min(drops, expectedLoss)
                counters.lossDrops += loss
                counters.queueDrops += drops - loss
            }
            heldPackets = raw.queueLength
            heldBytes = raw.backlogBytes
            lastRaw = raw
        }
    }

    struct State {
        var client: NamespaceControl?
        var server: NamespaceControl?
        var links: [LinkDevices] = []
        var directions: [DirectionKey: DirectionState] = [:]

        /// The sending end of `direction` on `link`: the client end for uplink, the server end for downlink.
        func endpoint(link: String, direction: LinkDirection) throws -> (LinkDevices, NamespaceControl, Int32) {
            guard let client, let server else { throw NetemShaperError.notAttached }
            guard let devices = links.first(where: { $0.name == link }) else { throw NetemShaperError.unknownLink(link) }
            return direction == .uplink ? (devices, client, devices.clientIndex) : (devices, server, devices.serverIndex)
        }
    }

    /// The sockets the backend keeps in one namespace: rtnetlink, plus a datagram socket for the
    /// ethtool ioctl (which acts on devices of the socket's namespace).
    final class NamespaceControl {
        let netlink: NetlinkSocket
        private let ioctlSocket: Int32

        private init(netlink: NetlinkSocket, ioctlSocket: Int32) {
            self.netlink = netlink
            self.ioctlSocket = ioctlSocket
        }

        static func open(_ namespace: NetlinkNamespace) throws -> NamespaceControl {
            try namespace.run {
                let netlink = try NetlinkSocket(openingHere: namespace)
                let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                guard fd >= 0 else { throw NetlinkError.system(call: "socket(AF_INET, SOCK_DGRAM)", namespace: namespace.description, errno: .last) }
                return NamespaceControl(netlink: netlink, ioctlSocket: fd)
            }
        }

        deinit { close(ioctlSocket) }

        func linkInfo(_ name: String) throws -> LinkInfo {
            let request = RouteMessages.getLink(name: name)
            guard let reply = try netlink.query(request).first else {
                throw NetlinkError.malformedReply(operation: request.operation, namespace: netlink.namespace.description, detail: "no RTM_NEWLINK reply")
            }
            do {
                return try LinkInfo(message: reply)
            } catch {
                throw NetlinkError.malformedReply(operation: request.operation, namespace: netlink.namespace.description, detail: "\(error)")
            }
        }

        func deleteLinkIfPresent(_ name: String) throws {
            do {
                try netlink.perform(RouteMessages.deleteLink(name: name))
            } catch let error as NetlinkError where error.errno == .operationNotSupportedByDevice {
                return
            }
        }

        func disableOffloads(_ name: String) throws {
            guard cshims_ethtool_disable_offloads(ioctlSocket, name) == 0 else {
                throw NetlinkError.system(call: "ethtool: GRO and segmentation offloads off on \(name)", namespace: netlink.namespace.description, errno: .last)
            }
        }
    }
}
