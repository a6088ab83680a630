import Foundation
import Testing
@testable import Capture

/// Two namespaces joined by a veth pair, 198.18.250.1 <-> 198.18.250.2. Names carry this
/// helper's `ian` prefix; everything is deleted in `tearDown`, also after failures.
struct VethPair {
    let a = "ian-cap-a"
    let b = "ian-cap-b"

    func setUp() throws {
        tearDown()
        let script = """
        set -e
        ip netns add \(a)
        ip netns add \(b)
        ip link add ianveth0 netns \(a) type veth peer name ianveth1 netns \(b)
        ip -n \(a) addr add 198.18.250.1/24 dev ianveth0
        ip -n \(b) addr add 198.18.250.2/24 dev ianveth1
        ip -n \(a) link set ianveth0 up
        ip -n \(b) link set ianveth1 up
        ip -n \(a) link set lo up
        ip -n \(b) link set lo up
        """
        let r = shell(script)
        if r.status != 0 { throw TestFailure("namespace setup failed: \(r.err)") }
    }

    func tearDown() {
        shell("ip netns del \(a) 2>/dev/null; ip netns del \(b) 2>/dev/null")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@Suite(.serialized) struct LiveCaptureTests {
    @Test(.enabled(if: NetnsGate.shouldRun, "needs root and network namespaces"))
    func capturesKnownUDPAndTCPInANamespace() throws {
        try #require(NetnsGate.available, "INTNW_REQUIRE_NETNS=1 but root/ip netns is not available")
        let net = VethPair()
        try net.setUp()
        defer { net.tearDown() }
        let dir = makeTempDir("live")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/veth.pcap"

        var opts = LiveCaptureOptions(interface: "ianveth0", namespace: net.a, outputPath: path)
        opts.filter = "ip"
        let capture = try LiveCapture.start(opts)
        // Known traffic: three UDP datagrams and one TCP exchange (python listener in b).
        let server = """
        ip netns exec \(net.b) python3 -c '
        import socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("198.18.250.2", 47001)); s.listen(1); s.settimeout(10)
        c, _ = s.accept(); c.settimeout(10); d = c.recv(100); c.sendall(b"pong:" + d); c.close()
        ' &
        # Wait until the listener is up (not a fixed sleep): up to 10 s.
        for i in $(seq 100); do ip netns exec \(net.b) ss -Hltn | grep -q ':47001 ' && break; sleep 0.1; done
        for i in 1 2 3; do ip netns exec \(net.a) bash -c "echo -n udp-probe-$i > /dev/udp/198.18.250.2/47000"; done
        ip netns exec \(net.a) python3 -c '
        import socket
        s = socket.create_connection(("198.18.250.2", 47001), timeout=10); s.sendall(b"tcp-probe"); print(s.recv(100).decode()); s.close()
        '
        wait
        """
        let traffic = shell(server)
        let stats = try capture.stop()
        #expect(traffic.status == 0, "traffic script failed: \(traffic.err)")
        #expect(traffic.out.contains("pong:tcp-probe"))

        #expect(stats.packetsWritten >= 3 + 6)
        #expect(stats.kernelDropped == 0)
        #expect(stats.timestampPrecision == .nanoseconds)
        #expect(CaptureStats.loadSidecar(forPcap: path) == stats)

        var payloads: [String] = []
        let reader = try PcapFileReader(path: path)
        #expect(reader.linkType == .ethernet)
        #expect(reader.filePrecision == .nanoseconds)
        var last: UInt64 = 0
        var monotonic = true
        let summary = try reader.forEachPacket { p in
            monotonic = monotonic && p.timestampNanoseconds >= last
            last = p.timestampNanoseconds
            payloads.append(String(decoding: p.copyBytes().filter { $0 >= 32 && $0 < 127 }, as: UTF8.self))
        }
        #expect(summary.packets == stats.packetsWritten)
        #expect(monotonic)
        for i in 1 ... 3 { #expect(payloads.contains { $0.contains("udp-probe-\(i)") }) }
        #expect(payloads.contains { $0.contains("tcp-probe") })
        #expect(payloads.contains { $0.contains("pong:tcp-probe") })

        let td = shell("tcpdump -nn -r \(path) 2>&1 >/dev/null")
        let warnings = td.err.split(separator: "\n").filter { !$0.hasPrefix("reading from file") }
            + td.out.split(separator: "\n").filter { !$0.hasPrefix("reading from file") }
        #expect(td.status == 0)
        #expect(warnings.isEmpty, "tcpdump complained: \(warnings)")
    }

    @Test(.enabled(if: NetnsGate.shouldRun, "needs root and network namespaces"))
    func aBurstOfSmallPacketsIsCapturedWithoutDrops() throws {
        // Catches: a capture ring that holds too few packets. In libpcap's immediate mode Linux
        // falls back to a ring of fixed 256 KiB slots (the snap length), 64 packets in 16 MiB, and
        // this burst lost thousands of packets before the capture thread could read them.
        try #require(NetnsGate.available, "INTNW_REQUIRE_NETNS=1 but root/ip netns is not available")
        let net = VethPair()
        try net.setUp()
        defer { net.tearDown() }
        let dir = makeTempDir("burst")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/burst.pcap"
        var opts = LiveCaptureOptions(interface: "ianveth0", namespace: net.a, outputPath: path)
        opts.filter = "udp and dst port 47002"
        let capture = try LiveCapture.start(opts)
        let count = 20_000
        let send = shell("""
        ip netns exec \(net.a) python3 -c '
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        d = b"x" * 200
        sent = 0
        while sent < \(count):
            try:
                s.sendto(d, ("198.18.250.2", 47002)); sent += 1
            except BlockingIOError:
                pass
        '
        """)
        let stats = try capture.stop()
        #expect(send.status == 0, "sender failed: \(send.err)")
        #expect(stats.kernelDropped == 0, "the kernel dropped \(stats.kernelDropped) of \(count) packets")
        #expect(stats.packetsWritten == count)
        #expect(try PcapFileReader(path: path).forEachPacket { _ in }.packets == count)
    }

    @Test(.enabled(if: NetnsGate.shouldRun, "needs root and network namespaces"))
    func stopIsPromptWithNoTraffic() throws {
        try #require(NetnsGate.available, "INTNW_REQUIRE_NETNS=1 but root/ip netns is not available")
        let net = VethPair()
        try net.setUp()
        defer { net.tearDown() }
        let dir = makeTempDir("idle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // IPv4 only: nothing sends IPv4 on this pair, so the capture must be empty (IPv6 router
        // solicitations and the like are filtered out).
        var opts = LiveCaptureOptions(interface: "ianveth1", namespace: net.b, outputPath: dir + "/idle.pcap")
        opts.filter = "ip"
        let capture = try LiveCapture.start(opts)
        let t0 = Date()
        let stats = try capture.stop()
        #expect(Date().timeIntervalSince(t0) < 1.0)
        // Catches: a stop() that reports packets that were never captured (phantom or double counts).
        #expect(stats.packetsWritten == 0)
        // An idle capture still leaves a valid (header-only) pcap.
        #expect(try PcapFileReader(path: dir + "/idle.pcap").forEachPacket { _ in }.packets == stats.packetsWritten)
    }

    @Test(.enabled(if: NetnsGate.shouldRun, "needs root and network namespaces"))
    func clearErrorsForMissingNamespaceAndInterface() throws {
        try #require(NetnsGate.available, "INTNW_REQUIRE_NETNS=1 but root/ip netns is not available")
        #expect(throws: CaptureError.namespaceNotFound("ian-does-not-exist")) {
            try LiveCapture.start(LiveCaptureOptions(interface: "eth0", namespace: "ian-does-not-exist", outputPath: "/tmp/ian-x.pcap"))
        }
        let net = VethPair()
        try net.setUp()
        defer { net.tearDown() }
        #expect(throws: CaptureError.noSuchInterface("ian-nothere")) {
            try LiveCapture.start(LiveCaptureOptions(interface: "ian-nothere", namespace: net.a, outputPath: "/tmp/ian-x.pcap"))
        }
    }
}
