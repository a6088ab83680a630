#if canImport(Glibc)
import Glibc
#endif
import Logging

/// Problems a user can hit bringing the testbed up, each a one-line message with what to do.
public enum TopologyError: Error, CustomStringConvertible {
    case notRoot
    case toolMissing(String)
    case namespacesUnsupported(String)
    case inUse(prefix: String, pid: Int32)
    case invalidPrefix(String)

    public var description: String {
        switch self {
        case .notRoot:
            return "must run as root: network namespaces and TUN devices need CAP_NET_ADMIN (try sudo)"
        case .toolMissing(let tool):
            return "'\(tool)' not found in PATH: run `make setup` (installs iproute2 and friends)"
        case .namespacesUnsupported(let why):
            return "this kernel or container does not support network namespaces: \(why)"
        case .inUse(let prefix, let pid):
            return "testbed '\(prefix)' is in use by running process \(pid): stop it or run `intnw-lab net down --prefix \(prefix)`"
        case .invalidPrefix(let p):
            return "prefix '\(p)' must be 1-8 lowercase letters/digits starting with a letter"
        }
    }
}

/// Creates and destroys the two-namespace testbed of docs/testbed.md, Topology from Swift. The commands are
/// the ones `netns-scripts/topology.sh` runs; they are built by pure functions so tests can read them.
public struct Topology: Sendable {
    public let spec: TopologySpec
    /// Where running testbeds record themselves (shared with netns-scripts/topology.sh).
    public static let stateDirectory = "/run/intnw-lab"

    public init(spec: TopologySpec) { self.spec = spec }

    /// txqueuelen of the link devices (packets).
    public static let deviceQueuePackets = 5000

    // MARK: - Preflight

    /// Checks root, `ip` and namespace support; throws a `TopologyError` a user can act on.
    public static func preflight() throws {
        guard geteuid() == 0 else { throw TopologyError.notRoot }
        guard which("ip") != nil else { throw TopologyError.toolMissing("ip") }
        guard access("/proc/self/ns/net", F_OK) == 0 else {
            throw TopologyError.namespacesUnsupported("/proc/self/ns/net is missing")
        }
    }

    /// First match of `tool` in PATH.
    static func which(_ tool: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(tool)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    // MARK: - Pure command builders

    /// `sysctl` settings per namespace: ignore routes over links without carrier in the client (so the
    /// main table falls back to cellular once the OS notices WiFi is gone), no reverse-path filtering.
    public func sysctls(forClient client: Bool, tcpBufferBytes: Int? = nil, tcp: TCPSettings = TCPSettings()) -> [String] {
        // IPv6 off: the testbed is IPv4-only, and link-local chatter would only add noise to captures.
        var s = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                 "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
        if client {
            s += ["net.ipv4.conf.all.ignore_routes_with_linkdown=1",
                  "net.ipv4.conf.default.ignore_routes_with_linkdown=1"]
        }
        if let b = tcpBufferBytes {
            s += ["net.ipv4.tcp_rmem=4096 131072 \(b)", "net.ipv4.tcp_wmem=4096 16384 \(b)"]
        }
        return s + tcp.sysctls
    }

    /// `ip -batch` lines run in the server namespace at creation.
    public func serverBaseCommands() -> [String] {
        ["link set lo up", "addr replace \(spec.serviceAddress)/32 dev lo"]
    }

    /// `ip -batch` lines that give the link devices addresses and routes (client side, server side).
    public func linkCommands() -> (client: [String], server: [String]) {
        var c: [String] = ["link set lo up"]
        var s: [String] = []
        for l in spec.links {
            c.append("addr replace \(l.clientAddress)/\(l.prefixLength) dev \(l.interface)")
            s.append("addr replace \(l.serverAddress)/\(l.prefixLength) dev \(l.interface)")
            // A long device queue absorbs bursts while the emulator thread is busy writing: with the
            // default 500 the user-space emulator lost packets (and throughput) at >1 Gbit/s.
            c.append("link set \(l.interface) txqueuelen \(Topology.deviceQueuePackets) up")
            s.append("link set \(l.interface) txqueuelen \(Topology.deviceQueuePackets) up")
            // On veth links a lookup that failed while the link was out stays stuck until the next ARP
            // retry (1 s by default): retry every 50 ms so a returning link carries traffic at once.
            c.append("ntable change name arp_cache dev \(l.interface) retrans 50")
            s.append("ntable change name arp_cache dev \(l.interface) retrans 50")
            c.append("route replace default via \(l.serverAddress) dev \(l.interface) table \(l.routingTable) onlink")
            // Without carrier the route above is ignored; this keeps a socket bound to the link's address
            // from leaking out of another link with the wrong source (it gets ENETUNREACH instead).
            c.append("route replace unreachable default table \(l.routingTable) metric 65535")
            c.append("rule add pref \(l.routingTable) from \(l.clientAddress) lookup \(l.routingTable)")
            c.append("route replace default via \(l.serverAddress) dev \(l.interface) metric \(l.defaultRouteMetric) onlink")
        }
        return (c, s)
    }

    /// `ip -batch` lines configuring Linux MPTCP's in-kernel path manager (client, server): limits on
    /// both sides, and on the client every link's address as a subflow endpoint (`mptcpEndpointCommand`:
    /// the non-primary links `backup` in that mode). The primary link (WiFi) is an endpoint too, so a
    /// connection that started on cellular also opens a WiFi subflow when it can.
    public func mptcpCommands(_ mode: MPTCPMode) -> (client: [String], server: [String]) {
        var c = ["mptcp limits set subflows 2 add_addr_accepted 2", "mptcp endpoint flush"]
        for l in spec.links { if let add = mptcpEndpointCommand(link: l.name, up: true, mode: mode) { c.append(add) } }
        return (c, ["mptcp limits set subflows 2 add_addr_accepted 2"])
    }

    /// The client's `ip mptcp endpoint` line for link `link` (a `TopologySpec` link name) when its
    /// carrier comes up (`add`, with a fixed id: the link's position + 1) or goes down (`delete` by that
    /// id); nil for an unknown link. The testbed follows the carrier with these, as a phone's connection
    /// manager does (NetworkManager adds an MPTCP endpoint for an interface's address when it connects
    /// and removes it when it disconnects): the in-kernel path manager only opens subflows for endpoints
    /// when a connection is established or when an endpoint is added, so without this a connection made
    /// over cellular while WiFi was absent would never get a WiFi subflow.
    public func mptcpEndpointCommand(link: String, up: Bool, mode: MPTCPMode) -> String? {
        guard let i = spec.links.firstIndex(where: { $0.name == link }) else { return nil }
        let l = spec.links[i]
        guard up else { return "mptcp endpoint delete id \(i + 1)" }
        let backup = i > 0 && mode == .backup ? " backup" : ""
        return "mptcp endpoint add \(l.clientAddress) id \(i + 1) dev \(l.interface) subflow\(backup)"
    }

    /// Applies `mptcpEndpointCommand` in the client namespace.
    public func followCarrierForMPTCP(link: String, up: Bool, mode: MPTCPMode) async throws {
        guard let line = mptcpEndpointCommand(link: link, up: up, mode: mode) else { return }
        try await CommandRunner.run(["ip", "-n", spec.clientNamespace] + line.split(separator: " ").map(String.init))
    }

    /// Applies `mptcpCommands` and turns MPTCP on in both namespaces.
    public func configureMPTCP(_ mode: MPTCPMode) async throws {
        if let why = MPTCPMode.kernelSupport { throw TopologyError.namespacesUnsupported(why) }
        let (c, s) = mptcpCommands(mode)
        for ns in [spec.clientNamespace, spec.serverNamespace] {
            try await CommandRunner.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.mptcp.enabled=1"])
        }
        try await CommandRunner.run(["ip", "-n", spec.clientNamespace, "-batch", "-"], input: c.joined(separator: "\n") + "\n")
        try await CommandRunner.run(["ip", "-n", spec.serverNamespace, "-batch", "-"], input: s.joined(separator: "\n") + "\n")
    }

    /// `ip -batch` lines creating one unshaped veth pair per link (the netem backend shapes them).
    public func vethCommands() -> [String] {
        spec.links.map {
            "link add \($0.interface) netns \(spec.clientNamespace) type veth peer name \($0.interface) netns \(spec.serverNamespace)"
        }
    }

    // MARK: - Actions

    /// Whether both namespaces exist.
    public var exists: Bool {
        access("/run/netns/\(spec.clientNamespace)", F_OK) == 0 || access("/run/netns/\(spec.serverNamespace)", F_OK) == 0
    }

    /// Creates the namespaces (reclaiming leftovers of a crashed run with the same prefix first).
    /// Link devices come from the shaper; call `configureLinks` once they exist.
    public func create(tcpBufferBytes: Int? = nil, tcp: TCPSettings = TCPSettings(), logger: Logger) async throws {
        try Topology.preflight()
        guard TopologySpec.isValidPrefix(spec.prefix), spec.prefix == spec.prefix.lowercased() else {
            throw TopologyError.invalidPrefix(spec.prefix)
        }
        if let pid = Topology.ownerPID(prefix: spec.prefix), pid != getpid() {
            throw TopologyError.inUse(prefix: spec.prefix, pid: pid)
        }
        if exists {
            logger.notice("reclaiming leftovers of an earlier testbed '\(spec.prefix)'")
            await destroy(logger: logger)
        }
        Topology.record(prefix: spec.prefix)
        for ns in [spec.clientNamespace, spec.serverNamespace] {
            do {
                try await CommandRunner.run(["ip", "netns", "add", ns])
            } catch let e as CommandError {
                throw TopologyError.namespacesUnsupported(e.description)
            }
        }
        try await CommandRunner.run(["ip", "-n", spec.serverNamespace, "-batch", "-"],
                                    input: serverBaseCommands().joined(separator: "\n") + "\n")
        try Topology.allowCongestionControl(tcp.congestionControl.rawValue)
        try await CommandRunner.run(["ip", "netns", "exec", spec.clientNamespace, "sysctl", "-qw"]
                                    + sysctls(forClient: true, tcpBufferBytes: tcpBufferBytes, tcp: tcp))
        try await CommandRunner.run(["ip", "netns", "exec", spec.serverNamespace, "sysctl", "-qw"]
                                    + sysctls(forClient: false, tcpBufferBytes: tcpBufferBytes, tcp: tcp))
        logger.info("namespaces \(spec.clientNamespace) and \(spec.serverNamespace) created")
    }

    /// A namespace other than the host's may only default to an algorithm in the host's
    /// `net.ipv4.tcp_allowed_congestion_control` (the kernel refuses others with EPERM). If `name` is
    /// available but not allowed, it is appended to that list (a permissive, additive change to the host:
    /// it lets unprivileged sockets pick that algorithm too; nothing else changes).
    static func allowCongestionControl(_ name: String) throws {
        func read(_ key: String) -> [String] {
            guard let f = fopen("/proc/sys/net/ipv4/\(key)", "r") else { return [] }
            defer { fclose(f) }
            var buf = [CChar](repeating: 0, count: 1024)
            guard fgets(&buf, Int32(buf.count), f) != nil else { return [] }
            return String(cString: buf).split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init)
        }
        let allowed = read("tcp_allowed_congestion_control")
        if allowed.contains(name) { return }
        guard read("tcp_available_congestion_control").contains(name) else {
            throw TopologyError.namespacesUnsupported("TCP congestion control '\(name)' is not available in this kernel (try `modprobe tcp_\(name)`)")
        }
        let text = (allowed + [name]).joined(separator: " ") + "\n"
        guard let f = fopen("/proc/sys/net/ipv4/tcp_allowed_congestion_control", "w") else {
            throw TopologyError.namespacesUnsupported("cannot allow congestion control '\(name)': /proc/sys/net/ipv4/tcp_allowed_congestion_control is not writable")
        }
        let ok = fputs(text, f) >= 0
        let closed = fclose(f) == 0
        guard ok && closed, read("tcp_allowed_congestion_control").contains(name) else {
            throw TopologyError.namespacesUnsupported("could not add '\(name)' to net.ipv4.tcp_allowed_congestion_control")
        }
    }

    /// Current values of `keys` in namespace `ns` (keys this kernel lacks are left out).
    public func readSysctls(namespace ns: String, keys: [String]) async throws -> [String: String] {
        let out = try await CommandRunner.run(["ip", "netns", "exec", ns, "sysctl", "-e"] + keys)
        var values: [String: String] = [:]
        for line in out.split(whereSeparator: \.isNewline) {
            guard let eq = line.range(of: " = ") else { continue }
            let value = line[eq.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            values[String(line[..<eq.lowerBound])] = value
        }
        return values
    }

    /// Creates unshaped veth pairs for every link (used by the netem backend and for plain runs).
    public func createVeths() async throws {
        try await CommandRunner.run(["ip", "-batch", "-"], input: vethCommands().joined(separator: "\n") + "\n")
    }

    /// Assigns addresses and routes once the link devices exist in both namespaces.
    public func configureLinks() async throws {
        let (c, s) = linkCommands()
        // `ip rule add` is not idempotent: drop our rules first, ignoring "not found".
        let deletes = spec.links.map { "rule del pref \($0.routingTable)" }.joined(separator: "\n") + "\n"
        _ = try? await CommandRunner.run(["ip", "-force", "-n", spec.clientNamespace, "-batch", "-"], input: deletes)
        try await CommandRunner.run(["ip", "-n", spec.clientNamespace, "-batch", "-"], input: c.joined(separator: "\n") + "\n")
        try await CommandRunner.run(["ip", "-n", spec.serverNamespace, "-batch", "-"], input: s.joined(separator: "\n") + "\n")
    }

    /// Removes everything the testbed created: processes inside the namespaces, the namespaces (and with
    /// them every device in them), IntNW shared-memory segments of the client namespace, state files.
    /// Never throws: teardown must go as far as it can.
    public func destroy(logger: Logger) async {
        for ns in [spec.clientNamespace, spec.serverNamespace] where access("/run/netns/\(ns)", F_OK) == 0 {
            Topology.removeSharedMemory(namespacePath: "/run/netns/\(ns)")
            if let out = try? await CommandRunner.run(["ip", "netns", "pids", ns]) {
                for pid in out.split(whereSeparator: \.isNewline).compactMap({ Int32($0) }) where pid != getpid() {
                    kill(pid, SIGKILL)
                }
            }
            do {
                try await CommandRunner.run(["ip", "netns", "del", ns])
            } catch {
                logger.warning("could not delete namespace \(ns): \(error)")
            }
        }
        // The prefix names files under the state directory: never unlink with one that could
        // leave it ("../../../etc/x").
        guard TopologySpec.isValidPrefix(spec.prefix) else { return }
        unlink("\(Topology.stateDirectory)/prefixes/\(spec.prefix)")
        unlink("\(Topology.stateDirectory)/\(spec.prefix).json")
    }

    // MARK: - State shared with netns-scripts/topology.sh

    static func record(prefix: String) {
        guard TopologySpec.isValidPrefix(prefix) else { return }
        mkdir(stateDirectory, 0o755)
        mkdir("\(stateDirectory)/prefixes", 0o755)
        let fd = open("\(stateDirectory)/prefixes/\(prefix)", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        if fd >= 0 { close(fd) }
    }

    /// Records `pid` as the owner of testbed `prefix` (the emulator process), with its start time
    /// (`PID START_TICKS`), so a reader can tell the emulator from a later process that got its pid.
    public static func writeOwner(prefix: String, pid: Int32) {
        guard TopologySpec.isValidPrefix(prefix) else { return }
        mkdir(stateDirectory, 0o755)
        let path = "\(stateDirectory)/\(prefix).pid"
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        let text = startTicks(pid).map { "\(pid) \($0)\n" } ?? "\(pid)\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    public static func clearOwner(prefix: String) {
        guard TopologySpec.isValidPrefix(prefix) else { return }
        unlink("\(stateDirectory)/\(prefix).pid")
    }

    /// The live process that owns testbed `prefix`, if any (a stale pid file is ignored).
    public static func ownerPID(prefix: String) -> Int32? {
        guard TopologySpec.isValidPrefix(prefix) else { return nil }
        let path = "\(stateDirectory)/\(prefix).pid"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &buf, 31)
        guard n > 0 else { return nil }
        let fields = String(decoding: buf[0..<n], as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard let first = fields.first, let pid = Int32(first), fields.count <= 2 else { return nil }
        if fields.count == 2 {
            // The recorded start time must match: otherwise the pid now names another process.
            guard let recorded = UInt64(fields[1]), startTicks(pid) == recorded else { return nil }
        }
        return isLiveTestbedProcess(pid) ? pid : nil
    }

    /// Start time of process `pid` in clock ticks since boot (/proc/PID/stat field 22), or nil.
    static func startTicks(_ pid: Int32) -> UInt64? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        guard n > 0, let close = buf[0..<n].lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // After "pid (comm)": field 3 (state) is the first; field 22 is the 20th.
        let rest = buf[(close + 1)..<n].split(separator: UInt8(ascii: " "))
        guard rest.count >= 20 else { return nil }
        return UInt64(String(decoding: rest[19], as: UTF8.self))
    }

    /// A pid file can outlive its process (SIGKILL) and the pid can be reused: only a running, non-zombie
    /// process of ours counts.
    static func isLiveTestbedProcess(_ pid: Int32) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 else { return false }
        func slurp(_ path: String) -> [UInt8] {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return [] }
            defer { close(fd) }
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &buf, buf.count)
            return n > 0 ? Array(buf[0..<n]) : []
        }
        let stat = slurp("/proc/\(pid)/stat")
        if let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count, stat[close + 2] == UInt8(ascii: "Z") {
            return false
        }
        let cmdline = String(decoding: slurp("/proc/\(pid)/cmdline").map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        return cmdline.lowercased().contains("intnw")
    }

    /// IntNW names its multi-app segments `intnw-u<uid>-n<netns inode>` (IntNW's
    /// `SharedLayout.segmentName`): remove those of the namespace bound at `namespacePath`. The whole
    /// name must match, so namespace inode 12 never takes inode 123's segment.
    static func removeSharedMemory(namespacePath: String) {
        var st = stat()
        guard stat(namespacePath, &st) == 0 else { return }
        guard let dir = opendir("/dev/shm") else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if isSegmentName(name, namespaceInode: UInt64(st.st_ino)) { unlink("/dev/shm/\(name)") }
        }
    }

    /// Whether `name` (a /dev/shm entry) is `intnw-u<digits>-n<namespaceInode>` exactly.
    public static func isSegmentName(_ name: String, namespaceInode: UInt64) -> Bool {
        guard name.hasPrefix("intnw-u"), name.hasSuffix("-n\(namespaceInode)") else { return false }
        let uid = name.dropFirst("intnw-u".count).dropLast("-n\(namespaceInode)".count)
        return !uid.isEmpty && uid.allSatisfy { $0.isASCII && $0.isNumber }
    }
}
