/// Watches local interfaces through rtnetlink (libmnl): one RTM_GETLINK and one RTM_GETADDR dump
/// at start, then RTMGRP_LINK | RTMGRP_IPV4_IFADDR multicast events on the I/O loop. No polling.
/// Reports the set of usable networks (up, carrier, IPv4 address, not loopback) whenever it changes.
#if canImport(Glibc)
import Glibc
#endif
import CMnl
import LinuxSupport
import CShims
import Logging

/// What one interface looks like according to the kernel.
struct InterfaceState: Equatable {
    var index: UInt32
    var name: String
    var flags: UInt32
    var addresses: [UInt32] = []

    static let lowerUp: UInt32 = 1 << 16  // IFF_LOWER_UP (linux/if.h)
    var isUp: Bool { flags & UInt32(IFF_UP) != 0 }
    var hasCarrier: Bool { flags & UInt32(IFF_RUNNING) != 0 && flags & InterfaceState.lowerUp != 0 }
    var isLoopback: Bool { flags & UInt32(IFF_LOOPBACK) != 0 }
}

/// Pure reduction of netlink events into interface state, and of that into usable networks.
struct InterfaceTable {
    var interfaces: [UInt32: InterfaceState] = [:]

    mutating func link(index: UInt32, name: String?, flags: UInt32, removed: Bool) {
        if removed {
            interfaces[index] = nil
            return
        }
        var s = interfaces[index] ?? InterfaceState(index: index, name: name ?? "if\(index)", flags: flags)
        if let name { s.name = name }
        s.flags = flags
        interfaces[index] = s
    }

    mutating func address(index: UInt32, address: UInt32, removed: Bool) {
        var s = interfaces[index] ?? InterfaceState(index: index, name: "if\(index)", flags: 0)
        s.addresses.removeAll { $0 == address }
        if !removed { s.addresses.append(address) }
        interfaces[index] = s
    }

    func usableNetworks(classifier: NetworkClassifier, only: [String]?) -> [LocalNetwork] {
        var out: [LocalNetwork] = []
        for s in interfaces.values.sorted(by: { $0.index < $1.index }) {
            guard s.isUp, s.hasCarrier, !s.isLoopback, let addr = s.addresses.first else { continue }
            if let only, !only.contains(s.name) { continue }
            guard let kind = classifier.kind(of: s.name) else { continue }
            out.append(LocalNetwork(networkID: s.index, kind: kind, interfaceName: s.name, address: addr))
        }
        return out
    }
}

final class NetworkMonitor: IOHandler {
    private let loop: IOLoop
    private var nl: OpaquePointer?
    private let fd: Int32
    private let classifier: NetworkClassifier
    private let only: [String]?
    private let onChange: ([LocalNetwork], UInt64) -> Void
    private var log: Logger
    private var table = InterfaceTable()
    private var lastReported: [LocalNetwork]?
    private var buffer: [UInt8]
    private var seq: UInt32 = 1

    /// Call on the loop thread, under the lock (the socket joins the loop thread's namespace).
    init(loop: IOLoop, classifier: NetworkClassifier, interfaces: [String]?, logger: Logger,
         onChange: @escaping ([LocalNetwork], UInt64) -> Void) throws {
        self.loop = loop
        self.classifier = classifier
        self.only = interfaces
        self.onChange = onChange
        self.log = logger
        buffer = [UInt8](repeating: 0, count: max(Int(cshims_mnl_socket_buffer_size()), 8192) * 4)
        guard let sock = mnl_socket_open(NETLINK_ROUTE) else { throw IntNWError.errno("mnl_socket_open(NETLINK_ROUTE)") }
        nl = sock
        let groups = UInt32(RTMGRP_LINK) | UInt32(RTMGRP_IPV4_IFADDR)
        if mnl_socket_bind(sock, groups, pid_t(0)) < 0 {
            let e = IntNWError.errno("mnl_socket_bind(rtnetlink)")
            mnl_socket_close(sock)
            throw e
        }
        fd = mnl_socket_get_fd(sock)
        // Initial state, synchronously: links, then IPv4 addresses.
        try dump(type: UInt16(RTM_GETLINK))
        try dump(type: UInt16(RTM_GETADDR))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        loop.register(fd: fd, self)
        report(nowNs: cshims_monotonic_ns())
    }

    func stop() {
        guard let sock = nl else { return }
        loop.unregister(fd: fd)
        mnl_socket_close(sock)
        nl = nil
    }

    private func dump(type: UInt16) throws {
        guard let sock = nl else { return }
        seq += 1
        let mySeq = seq
        let sent: Int = buffer.withUnsafeMutableBytes { b in
            let nlh = mnl_nlmsg_put_header(b.baseAddress)!
            nlh.pointee.nlmsg_type = type
            nlh.pointee.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
            nlh.pointee.nlmsg_seq = mySeq
            // rtgenmsg: just the address family.
            let fam = mnl_nlmsg_put_extra_header(nlh, 1)!.assumingMemoryBound(to: UInt8.self)
            fam.pointee = UInt8(type == UInt16(RTM_GETADDR) ? AF_INET : AF_UNSPEC)
            return mnl_socket_sendto(sock, nlh, Int(nlh.pointee.nlmsg_len))
        }
        if sent < 0 { throw IntNWError.errno("mnl_socket_sendto(dump)") }
        while true {
            let n: Int
            switch Syscall.retrying({ buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(sock, $0.baseAddress, $0.count) } }) {
            case .success(let got): n = got
            case .failure(let e): throw IntNWError.system(call: "mnl_socket_recvfrom(dump)", errno: e)
            }
            let r = parse(count: n)
            if r <= MNL_CB_STOP { break }
        }
    }

    /// Runs the libmnl callback machinery over `count` received bytes. Returns mnl_cb_run's result.
    private func parse(count: Int) -> Int32 {
        let ctx = Unmanaged.passUnretained(self).toOpaque()
        return buffer.withUnsafeBytes { b in
            mnl_cb_run(b.baseAddress, count, 0, 0, { nlh, data in
                guard let nlh, let data else { return MNL_CB_OK }
                let me = Unmanaged<NetworkMonitor>.fromOpaque(data).takeUnretainedValue()
                me.message(nlh)
                return MNL_CB_OK
            }, ctx)
        }
    }

    /// Attribute callback context: collects the few attributes we read.
    private final class Attrs {
        var name: String?
        var local: UInt32?
        var address: UInt32?
    }

    private func message(_ nlh: UnsafePointer<nlmsghdr>) {
        let type = Int32(nlh.pointee.nlmsg_type)
        let attrs = Attrs()
        let actx = Unmanaged.passUnretained(attrs).toOpaque()
        switch type {
        case Int32(RTM_NEWLINK), Int32(RTM_DELLINK):
            let ifi = mnl_nlmsg_get_payload(nlh)!.assumingMemoryBound(to: ifinfomsg.self).pointee
            mnl_attr_parse(nlh, UInt32(MemoryLayout<ifinfomsg>.size), { attr, data in
                guard let attr, let data else { return MNL_CB_OK }
                let a = Unmanaged<Attrs>.fromOpaque(data).takeUnretainedValue()
                if mnl_attr_get_type(attr) == UInt16(IFLA_IFNAME), mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0 {
                    a.name = String(cString: mnl_attr_get_str(attr))
                }
                return MNL_CB_OK
            }, actx)
            table.link(index: UInt32(bitPattern: ifi.ifi_index), name: attrs.name, flags: ifi.ifi_flags,
                       removed: type == Int32(RTM_DELLINK))
        case Int32(RTM_NEWADDR), Int32(RTM_DELADDR):
            let ifa = mnl_nlmsg_get_payload(nlh)!.assumingMemoryBound(to: ifaddrmsg.self).pointee
            guard Int32(ifa.ifa_family) == AF_INET else { return }
            mnl_attr_parse(nlh, UInt32(MemoryLayout<ifaddrmsg>.size), { attr, data in
                guard let attr, let data else { return MNL_CB_OK }
                let a = Unmanaged<Attrs>.fromOpaque(data).takeUnretainedValue()
                let t = mnl_attr_get_type(attr)
                guard (t == UInt16(IFA_LOCAL) || t == UInt16(IFA_ADDRESS)), mnl_attr_validate(attr, MNL_TYPE_U32) >= 0 else {
                    return MNL_CB_OK
                }
                // Network byte order on the wire.
                let v = UInt32(bigEndian: mnl_attr_get_u32(attr))
                if t == UInt16(IFA_LOCAL) { a.local = v } else { a.address = v }
                return MNL_CB_OK
            }, actx)
            if let addr = attrs.local ?? attrs.address {
                table.address(index: ifa.ifa_index, address: addr, removed: type == Int32(RTM_DELADDR))
            }
        default:
            break
        }
    }

    private func report(nowNs: UInt64) {
        let nets = table.usableNetworks(classifier: classifier, only: only)
        if nets != lastReported {
            lastReported = nets
            log.debug("usable networks", metadata: ["networks": "\(nets.map { "\($0.interfaceName)(\($0.kind))" })"])
            onChange(nets, nowNs)
        }
    }

    func pollEvents(fd: Int32) -> Int16 { Int16(POLLIN) }

    func handle(fd: Int32, revents: Int16, nowNs: UInt64) {
        guard let sock = nl else { return }
        receiving: while true {
            switch Syscall.retrying({ buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(sock, $0.baseAddress, $0.count) } }) {
            case .success(let n):
                _ = parse(count: n)
            case .failure(.noBufferSpace):
                // Events were lost: rebuild the whole view.
                log.warning("netlink overrun, re-reading interfaces")
                table = InterfaceTable()
                _ = fcntl(self.fd, F_SETFL, fcntl(self.fd, F_GETFL) & ~O_NONBLOCK)
                do {
                    try dump(type: UInt16(RTM_GETLINK))
                    try dump(type: UInt16(RTM_GETADDR))
                } catch {
                    log.error("re-reading interfaces failed; the network view may be stale", metadata: ["error": "\(error)"])
                }
                _ = fcntl(self.fd, F_SETFL, fcntl(self.fd, F_GETFL) | O_NONBLOCK)
            case .failure(let e):
                if !e.isWouldBlock { log.warning("netlink receive failed", metadata: ["error": "\(e)"]) }
                break receiving  // EAGAIN: drained
            }
        }
        report(nowNs: nowNs)
    }
}
