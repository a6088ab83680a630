import Foundation
import Logging
import Testing
@testable import Emulation
import LinuxSupport

/// Whether this machine lets tests create network namespaces. With INTNW_REQUIRE_NETNS=1 the tests
/// run regardless and fail (rather than skip) when the capability is missing.
enum NetemNetnsGate {
    static let required = ProcessInfo.processInfo.environment["INTNW_REQUIRE_NETNS"] == "1"
    /// INTNW_TEST_NO_NETNS=1 pretends namespaces are unavailable (to test this gate).
    static let available: Bool = ProcessInfo.processInfo.environment["INTNW_TEST_NO_NETNS"] != "1"
        && geteuid() == 0 && Shell.run(["ip", "netns", "list"]).status == 0
    static let enabled = available || required
    static let reason: Comment = "needs root and `ip netns` (INTNW_REQUIRE_NETNS=1 makes this a failure)"
}

enum Shell {
    /// Runs a command, returning its exit status and combined output.
    @discardableResult
    static func run(_ arguments: [String]) -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { return (127, "\(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

/// The two namespaces of a test topology with prefix `prefix` (each test uses its own, so tests can
/// run in parallel). Removed by `remove()`, also when a test fails.
struct TestNamespaces {
    let spec: TopologySpec

    init(prefix: String) throws {
        spec = TopologySpec(prefix: prefix)
        remove()  // leftovers of an interrupted earlier run
        for ns in [spec.clientNamespace, spec.serverNamespace] {
            let r = Shell.run(["ip", "netns", "add", ns])
            try #require(r.status == 0, "ip netns add \(ns): \(r.output)")
        }
    }

    func remove() {
        for ns in [spec.clientNamespace, spec.serverNamespace] where access("/run/netns/\(ns)", F_OK) == 0 {
            Shell.run(["ip", "netns", "del", ns])
        }
    }

    func link(_ name: String, in namespace: String) throws -> LinkInfo {
        let socket = try NetlinkSocket.open(in: .named(namespace))
        let reply = try #require(try socket.query(RouteMessages.getLink(name: name)).first)
        return try LinkInfo(message: reply)
    }

    func linkExists(_ name: String, in namespace: String) throws -> Bool {
        do {
            _ = try link(name, in: namespace)
            return true
        } catch let error as NetlinkError where error.errno == .operationNotSupportedByDevice {
            return false
        }
    }
}

@Suite struct NetemNamespaceTests {
    let logger = Logger(label: "netem-test")

    @Test(.enabled(if: NetemNetnsGate.enabled, NetemNetnsGate.reason))
    func attachCreatesVethPairsInBothNamespacesAndDetachRemovesThem() throws {
        try #require(NetemNetnsGate.available, NetemNetnsGate.reason)
        let namespaces = try TestNamespaces(prefix: "tnma")
        defer { namespaces.remove() }
        let spec = namespaces.spec
        let shaper = NetemShaper(logger: logger)
        try shaper.attach(topology: spec)
        #expect(throws: NetemShaperError.alreadyAttached) { try shaper.attach(topology: spec) }

        for link in spec.links {
            let client = try namespaces.link(link.interface, in: spec.clientNamespace)
            let server = try namespaces.link(link.interface, in: spec.serverNamespace)
            #expect(client.name == link.interface && server.name == link.interface)
            #expect(client.isUp && server.isUp)
            #expect(client.carrier == true, "peer is up, so the client end has carrier")
            for ns in [spec.clientNamespace, spec.serverNamespace] {
                let features = Shell.run(["ip", "netns", "exec", ns, "ethtool", "-k", link.interface]).output
                for feature in ["generic-receive-offload", "generic-segmentation-offload", "tcp-segmentation-offload"] {
                    #expect(features.contains("\(feature): off"), "\(feature) on \(link.interface) in \(ns)")
                }
                // Every changeable segmentation offload, including ones newer than the legacy
                // ETHTOOL_STSO knows (tx-tcp-accecn-segmentation on Linux 6.18).
                let stillOn = features.split(separator: "\n").filter {
                    $0.contains("segmentation") && $0.hasSuffix(": on")
                }
                #expect(stillOn.isEmpty, "\(stillOn) on \(link.interface) in \(ns)")
            }
        }
        #expect(shaper.counters().map { "\($0.link)/\($0.direction.rawValue)" }
                == ["wifi/uplink", "wifi/downlink", "cellular/uplink", "cellular/downlink"])

        shaper.detach()
        for link in spec.links {
            #expect(try !namespaces.linkExists(link.interface, in: spec.clientNamespace))
            #expect(try !namespaces.linkExists(link.interface, in: spec.serverNamespace))
        }
        shaper.detach()  // a second detach is harmless
        #expect(throws: NetemShaperError.notAttached) { try shaper.setCarrier(link: "wifi", up: true) }
    }

    @Test(.enabled(if: NetemNetnsGate.enabled, NetemNetnsGate.reason))
    func carrierFollowsTheServerEnd() throws {
        try #require(NetemNetnsGate.available, NetemNetnsGate.reason)
        let namespaces = try TestNamespaces(prefix: "tnmb")
        defer { namespaces.remove() }
        let spec = namespaces.spec
        let shaper = NetemShaper(logger: logger)
        try shaper.attach(topology: spec)
        defer { shaper.detach() }

        try shaper.setCarrier(link: "wifi", up: false)
        let client = try namespaces.link("wifi0", in: spec.clientNamespace)
        #expect(client.isUp, "the client end stays administratively up, keeping its addresses and routes")
        #expect(client.carrier == false)
        #expect(try !namespaces.link("wifi0", in: spec.serverNamespace).isUp)
        #expect(try namespaces.link("cell0", in: spec.clientNamespace).carrier == true, "other links unaffected")

        try shaper.setCarrier(link: "wifi", up: true)
        #expect(try namespaces.link("wifi0", in: spec.clientNamespace).carrier == true)
        #expect(throws: NetemShaperError.unknownLink("bluetooth")) { try shaper.setCarrier(link: "bluetooth", up: true) }
    }

    @Test(.enabled(if: NetemNetnsGate.enabled, NetemNetnsGate.reason))
    func applyInstallsNetemOrFailsClearlyWithoutIt() throws {
        try #require(NetemNetnsGate.available, NetemNetnsGate.reason)
        let namespaces = try TestNamespaces(prefix: "inmc")
        defer { namespaces.remove() }
        let spec = namespaces.spec
        let shaper = NetemShaper(seed: 5, logger: logger)
        try shaper.attach(topology: spec)
        defer { shaper.detach() }
        let parameters = DirectionParameters(bytesPerSecond: 1_250_000, delayMicroseconds: 15_000, lossFraction: 0.01)

        if NetemSupport.probe().available {
            for direction in LinkDirection.allCases {
                try shaper.apply(link: "wifi", direction: direction, parameters: parameters)
                let ns = direction == .uplink ? spec.clientNamespace : spec.serverNamespace
                let socket = try NetlinkSocket.open(in: .named(ns))
                let index = try namespaces.link("wifi0", in: ns).index
                let reply = try #require(try socket.query(RouteMessages.getRootQdisc(index: index, interface: "wifi0")).first)
                #expect(try QdiscInfo(message: reply).kind == "netem")
                let options = try #require(try reply.attributes(afterFixedHeaderOfSize: 20).first(2))
                // Hand-computed, not taken from NetemOptions: limit 1.5 × 1.25 MB/s × 30 ms / 1500 B = 37.5
                // → the floor of 100 packets; loss 0.01 × UINT32_MAX = 42,949,672.95 → 42,949,673;
                // latency 15 ms = 234,375 ticks of 64 ns.
                #expect(try options.payload.loadInteger(UInt32.self, at: 0) == 234_375)
                #expect(try options.payload.loadInteger(UInt32.self, at: 4) == 100)
                #expect(try options.payload.loadInteger(UInt32.self, at: 8) == 42_949_673)
            }
            // Measured: 15 ms each way must show as a ping RTT of 30 ms (+ at most 5 ms of scheduling).
            // Catches a delay that is installed but not applied, or applied to one direction only.
            for command in [["ip", "-n", spec.clientNamespace, "addr", "add", "198.18.1.2/24", "dev", "wifi0"],
                            ["ip", "-n", spec.serverNamespace, "addr", "add", "198.18.1.1/24", "dev", "wifi0"]] {
                let r = Shell.run(command)
                try #require(r.status == 0, "\(command.joined(separator: " ")): \(r.output)")
            }
            // TCP handshake time (SYN out, SYN-ACK back): the fastest of 5 connects, in ms.
            let script = """
            ip netns exec \(spec.serverNamespace) python3 -c '
            import socket; s = socket.socket(); s.bind(("198.18.1.1", 7999)); s.listen(8); s.settimeout(10)
            for _ in range(5): s.accept()[0].close()
            ' & sleep 0.5
            ip netns exec \(spec.clientNamespace) python3 -c '
            import socket, time; best = 1e9
            for _ in range(5):
                t = time.monotonic(); c = socket.create_connection(("198.18.1.1", 7999), timeout=10); best = min(best, time.monotonic() - t); c.close()
            print(best * 1000)
            '
            wait
            """
            let handshake = Shell.run(["bash", "-c", script])
            let rtt = try #require(Double(handshake.output.trimmingCharacters(in: .whitespacesAndNewlines)), "handshake probe: \(handshake.output)")
            #expect(rtt >= 30 && rtt <= 35, "fastest handshake \(rtt) ms with 15 ms each way")
        } else {
            let error = #expect(throws: NetlinkError.self) {
                try shaper.apply(link: "wifi", direction: .uplink, parameters: parameters)
            }
            #expect(error?.description.hasPrefix(
                "RTM_NEWQDISC netem on wifi0 in inmc-client: No such file or directory (kernel has no sch_netem?)") == true,
                "got: \(error.map { "\($0)" } ?? "nothing")")
            #expect(error?.description.contains("\n") == false)
        }
        #expect(throws: NetemShaperError.unknownLink("lte")) {
            try shaper.apply(link: "lte", direction: .uplink, parameters: parameters)
        }
    }

    @Test(.enabled(if: NetemNetnsGate.enabled, NetemNetnsGate.reason))
    func attachReplacesLeftoverDevices() throws {
        try #require(NetemNetnsGate.available, NetemNetnsGate.reason)
        let namespaces = try TestNamespaces(prefix: "inmd")
        defer { namespaces.remove() }
        let spec = namespaces.spec
        // What a crashed run (or `ip link add ... type veth`) leaves behind.
        let stale = Shell.run(["ip", "link", "add", "wifi0", "netns", spec.clientNamespace, "type", "veth",
                               "peer", "name", "wifi0", "netns", spec.serverNamespace])
        try #require(stale.status == 0, "ip link add: \(stale.output)")
        let staleIndex = try namespaces.link("wifi0", in: spec.clientNamespace).index

        let shaper = NetemShaper(logger: logger)
        try shaper.attach(topology: spec)
        let fresh = try namespaces.link("wifi0", in: spec.clientNamespace)
        #expect(fresh.index != staleIndex, "the pair was re-created")
        #expect(fresh.isUp && fresh.carrier == true)
        shaper.detach()
        #expect(try !namespaces.linkExists("wifi0", in: spec.serverNamespace))
    }

    @Test(.enabled(if: NetemNetnsGate.enabled, NetemNetnsGate.reason))
    func probeAgreesWithTcAndLeavesNothingBehind() throws {
        try #require(NetemNetnsGate.available, NetemNetnsGate.reason)
        // The probe works in an anonymous namespace: the test process's own `lo` keeps its qdisc
        // (on a kernel with netem, a probe run in the wrong namespace would leave netem on it).
        let here = try NetlinkSocket.open(in: .current)
        func loQdiscKind() throws -> String {
            let lo = try LinkInfo(message: try #require(try here.query(RouteMessages.getLink(name: "lo")).first))
            // Built-in qdiscs (noqueue) are not reported: only the ack comes back.
            guard let reply = try here.query(RouteMessages.getRootQdisc(index: lo.index, interface: "lo")).first else { return "built-in" }
            return try QdiscInfo(message: reply).kind
        }
        let before = try loQdiscKind()
        let support = NetemSupport.probe()
        #expect(try loQdiscKind() == before)
        #expect(try loQdiscKind() != "netem")
        #expect(!support.explanation.isEmpty && !support.explanation.contains("\n"))

        // Independent check: ask tc in a namespace of our own.
        let probeNamespace = "inme-probe"
        Shell.run(["ip", "netns", "del", probeNamespace])
        try #require(Shell.run(["ip", "netns", "add", probeNamespace]).status == 0)
        defer { Shell.run(["ip", "netns", "del", probeNamespace]) }
        let tc = Shell.run(["ip", "netns", "exec", probeNamespace, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        #expect(support.available == (tc.status == 0), "probe: \(support.explanation); tc: \(tc.output)")

        #expect(try ShaperSelection.resolve(requested: .auto) == (support.available ? .netem : .userspace))
        if !support.available {
            // This machine's kernel (CONFIG_NET_SCH_NETEM unset): auto picks userspace, netem fails clearly.
            #expect(support.explanation.hasPrefix("creating a netem qdisc in a scratch network namespace failed: No such file or directory"))
            let error = #expect(throws: NetemUnavailableError.self) { try ShaperSelection.resolve(requested: .netem) }
            #expect(error?.description.hasPrefix("netem requested but this kernel has no sch_netem (") == true)
            #expect(error?.description.hasSuffix("); use --shaper userspace or auto") == true)
        }
    }

    /// This kernel has no netem, so the statistics path is checked on a TBF qdisc (same
    /// RTM_GETQDISC reply layout) carrying real traffic.
    @Test(.enabled(if: NetemNetnsGate.enabled, NetemNetnsGate.reason))
    func qdiscStatisticsAreReadFromTheKernel() throws {
        try #require(NetemNetnsGate.available, NetemNetnsGate.reason)
        let namespaces = try TestNamespaces(prefix: "inmg")
        defer { namespaces.remove() }
        let spec = namespaces.spec
        let shaper = NetemShaper(logger: logger)
        try shaper.attach(topology: spec)
        defer { shaper.detach() }
        let client = spec.clientNamespace, server = spec.serverNamespace
        for command in [["ip", "-n", client, "addr", "add", "198.18.1.2/24", "dev", "wifi0"],
                        ["ip", "-n", server, "addr", "add", "198.18.1.1/24", "dev", "wifi0"],
                        ["ip", "netns", "exec", client, "tc", "qdisc", "add", "dev", "wifi0", "root", "handle", "1:",
                         "tbf", "rate", "10mbit", "burst", "20kb", "latency", "50ms"]] {
            let r = Shell.run(command)
            try #require(r.status == 0, "\(command.joined(separator: " ")): \(r.output)")
        }
        // Three 1000-byte UDP datagrams to the discard port, sent from inside the client namespace.
        let sent = try NetlinkNamespace.named(client).run { () -> Int in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { return -1 }
            defer { close(fd) }
            let address = IPv4Endpoint("198.18.1.1", port: 9)!
            let payload = [UInt8](repeating: 0x5a, count: 1000)
            var count = 0
            for _ in 0..<3 {
                let n = address.withSockaddr { sendto(fd, payload, payload.count, 0, $0, $1) }
                if n == payload.count { count += 1 }
            }
            return count
        }
        #expect(sent == 3)

        let netlink = try NetlinkSocket.open(in: .named(client))
        let index = try namespaces.link("wifi0", in: client).index
        // ARP resolution releases the held datagrams through the qdisc: await it (up to 5 s) instead of
        // sleeping a fixed 300 ms.
        var reply = try #require(try netlink.query(RouteMessages.getRootQdisc(index: index, interface: "wifi0")).first)
        let deadline = Date().addingTimeInterval(5)
        while (try QdiscInfo(message: reply).stats?.bytes ?? 0) < 3 * 1042 && Date() < deadline {
            usleep(10_000)
            reply = try #require(try netlink.query(RouteMessages.getRootQdisc(index: index, interface: "wifi0")).first)
        }
        let info = try QdiscInfo(message: reply)
        #expect(info.kind == "tbf")
        #expect(info.interfaceIndex == index)
        #expect(info.handle == 0x0001_0000)
        #expect(info.parent == 0xFFFF_FFFF)
        let stats = try #require(info.stats)
        #expect(stats.packets >= 3, "3 datagrams (plus ARP) left through the qdisc")
        #expect(stats.bytes >= 3 * 1042, "each frame: 1000 bytes of data, UDP, IP and Ethernet headers")
        #expect(stats.drops == 0)
    }

    @Test func attachWithoutNamespacesIsAClearError() {
        let shaper = NetemShaper(logger: logger)
        let error = #expect(throws: NetlinkError.self) { try shaper.attach(topology: TopologySpec(prefix: "inmf")) }
        #expect(error?.description == "open /run/netns/inmf-client in inmf-client: No such file or directory")
        #expect(throws: NetemShaperError.notAttached) {
            try shaper.apply(link: "wifi", direction: .uplink, parameters: DirectionParameters(bytesPerSecond: nil, delayMicroseconds: 0))
        }
    }
}
