import CMnl
#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// A ready-to-send netlink request: the bytes (sequence number 0; the socket stamps its own), and how
/// to describe it in an error.
public struct NetlinkRequest: Sendable, Equatable {
    public var bytes: [UInt8]
    /// E.g. "RTM_NEWQDISC netem on wifi0".
    public var operation: String
    /// Extra explanation for specific errno values, e.g. ENOENT on a netem request.
    public var hints: [Errno: String]

    public init(bytes: [UInt8], operation: String, hints: [Errno: String] = [:]) {
        self.bytes = bytes
        self.operation = operation
        self.hints = hints
    }
}

/// TCA_NETEM_PRNG_SEED (u64) from linux/pkt_sched.h: added in Linux 6.6 as the enum value after
/// TCA_NETEM_SLOT_DIST. This machine's header predates it, so it is defined here from the kernel
/// uapi. Kernels without it skip the attribute (netem parses its options liberally) and draw a
/// random seed instead.
public let netemAttributePRNGSeed: UInt16 = 14

/// The qdisc handle used for netem, 1:0 (`tc ... root handle 1:`). A fixed handle makes each later
/// NLM_F_REPLACE a `change` of the same qdisc, which keeps its statistics.
public let netemQdiscHandle: UInt32 = 0x0001_0000

/// Builders for the rtnetlink requests the netem backend sends. Pure functions: they return bytes
/// and touch no socket, so tests can decode them without privileges.
public enum RouteMessages {
    /// Largest request built here; every builder stays far below it.
    static let capacity = 1024

    /// RTM_NEWLINK creating a veth pair: `name` in the socket's namespace, `peerName` in the
    /// namespace open at `peerNamespaceFD` (IFLA_NET_NS_FD inside VETH_INFO_PEER). Fails with EEXIST
    /// if `name` exists.
    public static func createVethPair(name: String, peerName: String, peerNamespaceFD: Int32) -> NetlinkRequest {
        let bytes = build(type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) { nlh in
            putInterfaceHeader(nlh, index: 0)
            mnl_attr_put_strz(nlh, UInt16(IFLA_IFNAME), name)
            let linkInfo = mnl_attr_nest_start(nlh, UInt16(IFLA_LINKINFO))
            mnl_attr_put_strz(nlh, UInt16(IFLA_INFO_KIND), "veth")
            let data = mnl_attr_nest_start(nlh, UInt16(IFLA_INFO_DATA))
            // VETH_INFO_PEER is a struct ifinfomsg followed by attributes, not a plain nest:
            // send it without NLA_F_NESTED, as iproute2 does.
            let peer = structNestStart(nlh, type: UInt16(VETH_INFO_PEER))
            putInterfaceHeader(nlh, index: 0)
            mnl_attr_put_strz(nlh, UInt16(IFLA_IFNAME), peerName)
            mnl_attr_put_u32(nlh, UInt16(IFLA_NET_NS_FD), UInt32(bitPattern: peerNamespaceFD))
            mnl_attr_nest_end(nlh, peer)
            mnl_attr_nest_end(nlh, data)
            mnl_attr_nest_end(nlh, linkInfo)
        }
        return NetlinkRequest(bytes: bytes, operation: "RTM_NEWLINK veth \(name) (peer \(peerName))")
    }

    /// RTM_NEWLINK setting the administrative state (IFF_UP) of interface `index`, leaving other flags.
    public static func setLinkUp(index: Int32, name: String, up: Bool) -> NetlinkRequest {
        let bytes = build(type: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_ACK) { nlh in
            putInterfaceHeader(nlh, index: index, flags: up ? UInt32(IFF_UP) : 0, change: UInt32(IFF_UP))
        }
        return NetlinkRequest(bytes: bytes, operation: "RTM_NEWLINK set \(name) \(up ? "up" : "down")")
    }

    /// RTM_DELLINK by name. Deleting one end of a veth pair deletes both.
    public static func deleteLink(name: String) -> NetlinkRequest {
        let bytes = build(type: RTM_DELLINK, flags: NLM_F_REQUEST | NLM_F_ACK) { nlh in
            putInterfaceHeader(nlh, index: 0)
            mnl_attr_put_strz(nlh, UInt16(IFLA_IFNAME), name)
        }
        return NetlinkRequest(bytes: bytes, operation: "RTM_DELLINK \(name)")
    }

    /// RTM_GETLINK by name; the reply is one RTM_NEWLINK message (see `LinkInfo`).
    public static func getLink(name: String) -> NetlinkRequest {
        let bytes = build(type: RTM_GETLINK, flags: NLM_F_REQUEST | NLM_F_ACK) { nlh in
            putInterfaceHeader(nlh, index: 0)
            mnl_attr_put_strz(nlh, UInt16(IFLA_IFNAME), name)
        }
        return NetlinkRequest(bytes: bytes, operation: "RTM_GETLINK \(name)")
    }

    /// RTM_NEWQDISC with NLM_F_CREATE|NLM_F_REPLACE: root netem qdisc, handle 1:, on interface
    /// `index`, carrying the whole parameter set. TCA_OPTIONS is netem's legacy layout: a
    /// `struct tc_netem_qopt` followed by netem attributes, without NLA_F_NESTED.
    public static func replaceNetem(index: Int32, interface: String, options: NetemOptions) -> NetlinkRequest {
        let bytes = build(type: RTM_NEWQDISC, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE) { nlh in
            putQdiscHeader(nlh, index: index, handle: netemQdiscHandle)
            mnl_attr_put_strz(nlh, UInt16(TCA_KIND), "netem")
            let opts = structNestStart(nlh, type: UInt16(TCA_OPTIONS))
            let qopt = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<tc_netem_qopt>.size)!
                .bindMemory(to: tc_netem_qopt.self, capacity: 1)
            // qopt.latency is in psched ticks of 64 ns; LATENCY64 below overrides it with nanoseconds.
            qopt.pointee.latency = UInt32(clamping: options.latencyNanoseconds >> 6)
            qopt.pointee.limit = options.limitPackets
            qopt.pointee.loss = options.lossProbability
            qopt.pointee.gap = 0
            qopt.pointee.duplicate = 0
            qopt.pointee.jitter = 0
            mnl_attr_put_u64(nlh, UInt16(TCA_NETEM_LATENCY64), UInt64(clamping: Int64(clamping: options.latencyNanoseconds)))
            // Always sent, 0 included, so an earlier rate never lingers. Rates of 2^32 B/s and more go
            // in RATE64 with the u32 saturated, which the kernel combines as max(rate, rate64).
            var rate = tc_netem_rate()
            rate.rate = UInt32(clamping: options.rateBytesPerSecond)
            withUnsafeBytes(of: &rate) { raw in
                mnl_attr_put(nlh, UInt16(TCA_NETEM_RATE), raw.count, raw.baseAddress)
            }
            if options.rateBytesPerSecond > UInt64(UInt32.max) {
                mnl_attr_put_u64(nlh, UInt16(TCA_NETEM_RATE64), options.rateBytesPerSecond)
            }
            mnl_attr_put_u64(nlh, netemAttributePRNGSeed, options.seed)
            mnl_attr_nest_end(nlh, opts)
        }
        return NetlinkRequest(bytes: bytes, operation: "RTM_NEWQDISC netem on \(interface)",
                              hints: [.noSuchFileOrDirectory: "kernel has no sch_netem?", .notSupported: "kernel has no sch_netem?"])
    }

    /// RTM_GETQDISC for the root qdisc of interface `index`; the reply is one RTM_NEWQDISC message
    /// (see `QdiscInfo`), or none for a built-in qdisc (noqueue). NLM_F_ECHO: recent kernels (6.18
    /// here) answer a qdisc GET only to an echo request; older ones answer regardless.
    public static func getRootQdisc(index: Int32, interface: String) -> NetlinkRequest {
        let bytes = build(type: RTM_GETQDISC, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_ECHO) { nlh in
            putQdiscHeader(nlh, index: index, handle: 0)
        }
        return NetlinkRequest(bytes: bytes, operation: "RTM_GETQDISC root on \(interface)")
    }

    // MARK: - building blocks

    /// Builds one message with libmnl in a scratch buffer and returns exactly its bytes.
    static func build(type: Int, flags: Int32, _ fill: (UnsafeMutablePointer<nlmsghdr>) -> Void) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: capacity)
        let length = buffer.withUnsafeMutableBytes { raw -> Int in
            let nlh = mnl_nlmsg_put_header(raw.baseAddress)!
            nlh.pointee.nlmsg_type = UInt16(type)
            nlh.pointee.nlmsg_flags = UInt16(flags)
            fill(nlh)
            let length = Int(nlh.pointee.nlmsg_len)
            precondition(length <= capacity, "netlink request overflowed its \(capacity)-byte buffer")
            return length
        }
        return Array(buffer.prefix(length))
    }

    /// Starts an attribute whose payload begins with a fixed struct (libmnl's nest sets NLA_F_NESTED,
    /// which such attributes must not carry). Close it with `mnl_attr_nest_end`.
    static func structNestStart(_ nlh: UnsafeMutablePointer<nlmsghdr>, type: UInt16) -> UnsafeMutablePointer<nlattr> {
        let attr = mnl_attr_nest_start(nlh, type)!
        attr.pointee.nla_type = type
        return attr
    }

    static func putInterfaceHeader(_ nlh: UnsafeMutablePointer<nlmsghdr>, index: Int32, flags: UInt32 = 0, change: UInt32 = 0) {
        let ifi = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<ifinfomsg>.size)!.bindMemory(to: ifinfomsg.self, capacity: 1)
        ifi.pointee.ifi_family = UInt8(AF_UNSPEC)
        ifi.pointee.ifi_index = index
        ifi.pointee.ifi_flags = flags
        ifi.pointee.ifi_change = change
    }

    static func putQdiscHeader(_ nlh: UnsafeMutablePointer<nlmsghdr>, index: Int32, handle: UInt32) {
        let tcm = mnl_nlmsg_put_extra_header(nlh, MemoryLayout<tcmsg>.size)!.bindMemory(to: tcmsg.self, capacity: 1)
        tcm.pointee.tcm_family = UInt8(AF_UNSPEC)
        tcm.pointee.tcm_ifindex = index
        tcm.pointee.tcm_handle = handle
        tcm.pointee.tcm_parent = TC_H_ROOT
    }
}

/// A network interface as the kernel reports it (RTM_NEWLINK reply).
public struct LinkInfo: Sendable, Equatable {
    public var index: Int32
    public var name: String
    /// `ifi_flags` (IFF_UP, IFF_LOWER_UP, ...).
    public var flags: UInt32
    /// IFLA_CARRIER: for a veth end, false while its peer is administratively down.
    public var carrier: Bool?

    public var isUp: Bool { flags & UInt32(IFF_UP) != 0 }

    public init(message: NetlinkMessage) throws {
        guard message.type == UInt16(RTM_NEWLINK) else {
            throw NetlinkParseError(detail: "expected RTM_NEWLINK, got message type \(message.type)")
        }
        index = try message.payload.loadInteger(Int32.self, at: MemoryLayout.offset(of: \ifinfomsg.ifi_index)!)
        flags = try message.payload.loadInteger(UInt32.self, at: MemoryLayout.offset(of: \ifinfomsg.ifi_flags)!)
        let attributes = try message.attributes(afterFixedHeaderOfSize: MemoryLayout<ifinfomsg>.size)
        name = try attributes.first(UInt16(IFLA_IFNAME)).map { try $0.string() } ?? ""
        carrier = try attributes.first(UInt16(IFLA_CARRIER)).map { try $0.u8() != 0 }
    }
}

/// A qdisc as the kernel reports it (RTM_NEWQDISC reply).
public struct QdiscInfo: Sendable, Equatable {
    public var interfaceIndex: Int32
    public var handle: UInt32
    public var parent: UInt32
    /// TCA_KIND, e.g. "netem", "noqueue".
    public var kind: String
    /// Statistics, when the kernel included them.
    public var stats: QdiscStats?

    public init(interfaceIndex: Int32, handle: UInt32, parent: UInt32, kind: String, stats: QdiscStats?) {
        self.interfaceIndex = interfaceIndex
        self.handle = handle
        self.parent = parent
        self.kind = kind
        self.stats = stats
    }

    /// Parses an RTM_NEWQDISC message: TCA_STATS2 (basic + queue) when present, else legacy TCA_STATS.
    public init(message: NetlinkMessage) throws {
        guard message.type == UInt16(RTM_NEWQDISC) else {
            throw NetlinkParseError(detail: "expected RTM_NEWQDISC, got message type \(message.type)")
        }
        let p = message.payload
        interfaceIndex = try p.loadInteger(Int32.self, at: MemoryLayout.offset(of: \tcmsg.tcm_ifindex)!)
        handle = try p.loadInteger(UInt32.self, at: MemoryLayout.offset(of: \tcmsg.tcm_handle)!)
        parent = try p.loadInteger(UInt32.self, at: MemoryLayout.offset(of: \tcmsg.tcm_parent)!)
        let attributes = try message.attributes(afterFixedHeaderOfSize: MemoryLayout<tcmsg>.size)
        guard let kindAttribute = attributes.first(UInt16(TCA_KIND)) else {
            throw NetlinkParseError(detail: "qdisc without TCA_KIND")
        }
        kind = try kindAttribute.string()
        if let stats2 = attributes.first(UInt16(TCA_STATS2)) {
            let inner = try stats2.nested()
            var s = QdiscStats()
            if let basic = inner.first(UInt16(TCA_STATS_BASIC)) {
                // struct gnet_stats_basic { __u64 bytes; __u32 packets; } (padded to 16 on 64-bit hosts)
                s.bytes = try basic.payload.loadInteger(UInt64.self, at: 0)
                s.packets = UInt64(try basic.payload.loadInteger(UInt32.self, at: 8))
            }
            if let queue = inner.first(UInt16(TCA_STATS_QUEUE)) {
                // struct gnet_stats_queue { qlen, backlog, drops, requeues, overlimits } (u32 each)
                s.queueLength = try queue.payload.loadInteger(UInt32.self, at: 0)
                s.backlogBytes = try queue.payload.loadInteger(UInt32.self, at: 4)
                s.drops = UInt64(try queue.payload.loadInteger(UInt32.self, at: 8))
                s.overlimits = UInt64(try queue.payload.loadInteger(UInt32.self, at: 16))
            }
            stats = s
        } else if let legacy = attributes.first(UInt16(TCA_STATS)) {
            // struct tc_stats { __u64 bytes; __u32 packets, drops, overlimits, bps, pps, qlen, backlog; }
            let b = legacy.payload
            stats = QdiscStats(bytes: try b.loadInteger(UInt64.self, at: 0),
                               packets: UInt64(try b.loadInteger(UInt32.self, at: 8)),
                               drops: UInt64(try b.loadInteger(UInt32.self, at: 12)),
                               overlimits: UInt64(try b.loadInteger(UInt32.self, at: 16)),
                               queueLength: try b.loadInteger(UInt32.self, at: 28),
                               backlogBytes: try b.loadInteger(UInt32.self, at: 32))
        } else {
            stats = nil
        }
    }
}

/// Counters of one qdisc. For netem, `packets`/`bytes` count what left the qdisc and `drops` counts
/// both random loss and tail drops at the limit (netem does not tell them apart).
public struct QdiscStats: Sendable, Equatable {
    public var bytes: UInt64 = 0
    public var packets: UInt64 = 0
    public var drops: UInt64 = 0
    public var overlimits: UInt64 = 0
    /// Packets held now (for netem: queued plus in the delay line).
    public var queueLength: UInt32 = 0
    public var backlogBytes: UInt32 = 0

    public init(bytes: UInt64 = 0, packets: UInt64 = 0, drops: UInt64 = 0, overlimits: UInt64 = 0,
                queueLength: UInt32 = 0, backlogBytes: UInt32 = 0) {
        self.bytes = bytes
        self.packets = packets
        self.drops = drops
        self.overlimits = overlimits
        self.queueLength = queueLength
        self.backlogBytes = backlogBytes
    }
}
