/// IntNW send/receive path benchmark: goodput of one multisocket as a ratio of one plain kernel TCP
/// connection over the same veth pair between two namespaces.
/// - unshaped: CPU-bound, measures how lean the IntNW path is (goal ≥ 0.5);
/// - shaped (token bucket on the sender's egress): bandwidth-bound, measures protocol overhead
///   (goal ≥ 0.97).
/// Needs root; without it, runs unshaped over loopback.
import Emulation
import Foundation
import IntNW
import Logging
import CShims
#if canImport(Glibc)
import Glibc
#endif

enum IntNWGoodputBench {
    struct Result {
        var intnwBytesPerSecond: Double
        var tcpBytesPerSecond: Double
        var path: String
        /// IntNW's passive estimate of the link after the transfer.
        var estimate: NetworkEstimate?
        var ratio: Double { intnwBytesPerSecond / tcpBytesPerSecond }
    }

    /// The `make bench` section: unshaped (CPU-bound) and shaped (bandwidth-bound) ratios.
    static func report(seconds: Double) async throws -> [String] {
        var lines: [String] = []
        let t = min(seconds, 4)
        let cpu = try await run(seconds: t, prefix: "inwb")
        lines.append(String(format: "intnw: one multisocket over %@: %.0f MB/s vs kernel TCP %.0f MB/s, ratio %.3f (goal >= 0.5)",
                            cpu.path, cpu.intnwBytesPerSecond / 1e6, cpu.tcpBytesPerSecond / 1e6, cpu.ratio))
        print(lines.last!)
        let bw = try await run(seconds: max(seconds, 5), shapedBytesPerSecond: 2_500_000, prefix: "inwb")
        lines.append(String(format: "intnw: one multisocket over %@: %.3f MB/s vs kernel TCP %.3f MB/s, ratio %.3f (goal >= 0.97); passive estimate %.3f MB/s, RTT %.1f ms",
                            bw.path, bw.intnwBytesPerSecond / 1e6, bw.tcpBytesPerSecond / 1e6, bw.ratio,
                            (bw.estimate?.bandwidthBytesPerSecond ?? 0) / 1e6, bw.estimate?.rttMilliseconds ?? 0))
        print(lines.last!)
        let emu = try await emulatedWiFi(seconds: max(seconds, 5))
        lines.append(String(format: "intnw: one multisocket over %@: %.3f MB/s vs kernel TCP %.3f MB/s, ratio %.3f (goal >= 0.97)",
                            emu.path, emu.intnwBytesPerSecond / 1e6, emu.tcpBytesPerSecond / 1e6, emu.ratio))
        print(lines.last!)
        return lines
    }

    /// The same pair of transfers over the testbed's own shaped WiFi link (the user-space emulator at
    /// 2.5 MB/s each way, 20 ms RTT), client 198.18.1.2 to the service address.
    static func emulatedWiFi(seconds: Double) async throws -> Result {
        let wifi = LinkConditions(downBytesPerSecond: 2_500_000, upBytesPerSecond: 2_500_000, rttMilliseconds: 20)
        let cell = LinkConditions(downBytesPerSecond: 250_000, upBytesPerSecond: 250_000, rttMilliseconds: 100)
        var config = Testbed.Configuration(trace: Trace.constant(wifi: wifi, cellular: cell, durationSeconds: 3600))
        config.prefix = "inwbe"
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        return try await Testbed.with(config, logger: logger) { bed in
            let spec = bed.topology.spec
            let c = "/var/run/netns/\(spec.clientNamespace)", s = "/var/run/netns/\(spec.serverNamespace)"
            let tcp = try plainTCP(seconds: seconds, messageBytes: 256 << 10, clientNS: c, serverNS: s,
                                   clientAddr: "198.18.1.2", serverAddr: spec.serviceAddress)
            let (intnw, estimate) = try await multisocket(seconds: seconds, messageBytes: 256 << 10, clientNS: c, serverNS: s,
                                                          clientAddr: "198.18.1.2", serverAddr: spec.serviceAddress,
                                                          interface: "wifi0")
            return Result(intnwBytesPerSecond: intnw, tcpBytesPerSecond: tcp,
                          path: "the emulated WiFi link (2.5 MB/s, 20 ms RTT)", estimate: estimate)
        }
    }

    static let ipTool = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "ip"

    static func ip(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ipTool)
        p.arguments = args
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        if p.terminationStatus != 0 { throw IntNWError.invalidArgument("ip \(args.joined(separator: " ")) failed") }
    }

    /// Runs both measurements, `seconds` each, `messageBytes` per IROB / write; with
    /// `shapedBytesPerSecond` the client's egress is limited by a `tbf` qdisc.
    static func run(seconds: Double = 3, messageBytes: Int = 256 << 10, shapedBytesPerSecond: Double? = nil,
                    prefix: String = "inwb") async throws -> Result {
        let client = "\(prefix)-c", server = "\(prefix)-s"
        let useNetns = geteuid() == 0
        var clientNS: String?, serverNS: String?
        var clientAddr = "127.0.0.1", serverAddr = "127.0.0.1"
        if useNetns {
            for ns in [client, server] { try? ip(["netns", "del", ns]) }
            try ip(["netns", "add", client])
            try ip(["netns", "add", server])
            try ip(["link", "add", "bench0", "netns", client, "type", "veth", "peer", "name", "bench0", "netns", server])
            try ip(["-n", client, "addr", "add", "198.18.9.2/24", "dev", "bench0"])
            try ip(["-n", server, "addr", "add", "198.18.9.1/24", "dev", "bench0"])
            for ns in [client, server] {
                try ip(["-n", ns, "link", "set", "bench0", "up"])
                try ip(["-n", ns, "link", "set", "lo", "up"])
            }
            if let rate = shapedBytesPerSecond {
                // tbf is in every kernel that has veth; netem may be missing (minimal VM kernels).
                let bits = Int(rate * 8)
                try ip(["netns", "exec", client, "tc", "qdisc", "add", "dev", "bench0", "root", "tbf",
                        "rate", "\(bits)bit", "burst", "16kb", "latency", "100ms"])
            }
            clientNS = "/var/run/netns/\(client)"
            serverNS = "/var/run/netns/\(server)"
            clientAddr = "198.18.9.2"
            serverAddr = "198.18.9.1"
        }
        defer { if useNetns { for ns in [client, server] { try? ip(["netns", "del", ns]) } } }

        let tcp = try plainTCP(seconds: seconds, messageBytes: messageBytes, clientNS: clientNS, serverNS: serverNS,
                               clientAddr: clientAddr, serverAddr: serverAddr)
        let (intnw, estimate) = try await multisocket(seconds: seconds, messageBytes: messageBytes, clientNS: clientNS, serverNS: serverNS,
                                          clientAddr: clientAddr, serverAddr: serverAddr)
        let path = useNetns ? (shapedBytesPerSecond.map { "veth shaped to \(Int($0)) B/s" } ?? "unshaped veth") : "loopback"
        return Result(intnwBytesPerSecond: intnw, tcpBytesPerSecond: tcp, path: path, estimate: estimate)
    }

    static func multisocket(seconds: Double, messageBytes: Int, clientNS: String?, serverNS: String?,
                            clientAddr: String, serverAddr: String, interface: String = "bench0") async throws -> (Double, NetworkEstimate?) {
        var lo = ListenerOptions()
        lo.session.networkNamespacePath = serverNS
        let listener = try MultiSocketListener(port: 0, address: serverAddr, options: lo)
        defer { listener.close() }
        var co = MultiSocketOptions(staticNetworks: [
            LocalNetwork(networkID: 1, kind: .wifi, interfaceName: interface, address: IPv4Endpoint.parse(clientAddr)!),
        ])
        co.networkNamespacePath = clientNS
        let sock = try await MultiSocket.connect(to: serverAddr, port: listener.localEndpoint.port, options: co)
        let peer = try await listener.accept()
        let payload = [UInt8](repeating: 0xA5, count: messageBytes)
        let start = Date()
        async let received: Int = {
            var n = 0
            while true {
                do { n += try await peer.receive().bytes.count } catch { return n }
            }
        }()
        while Date().timeIntervalSince(start) < seconds {
            try await sock.send(payload, labels: .background | .large)
        }
        let estimate = sock.networks.first?.estimate
        _ = await sock.close(timeoutSeconds: 30)
        let bytes = await received
        let elapsed = Date().timeIntervalSince(start)
        await peer.close()
        return (Double(bytes) / elapsed, estimate)
    }

    /// State the two plain-TCP threads share (written before the semaphores they signal).
    private final class Shared: @unchecked Sendable {
        var port: UInt16 = 0
        var received = 0
        var elapsed = 0.0
    }

    @Sendable static func enterNamespace(_ ns: String?) {
        guard let ns else { return }
        let fd = open(ns, O_RDONLY)
        _ = cshims_setns_net(fd)
        close(fd)
    }

    @Sendable static func sockaddrIPv4(_ a: String, _ port: UInt16) -> sockaddr_in {
        var s = sockaddr_in()
        s.sin_family = sa_family_t(AF_INET)
        s.sin_port = port.bigEndian
        s.sin_addr.s_addr = IPv4Endpoint.parse(a)!.bigEndian
        return s
    }

    /// One blocking kernel TCP connection, sender and receiver threads in their namespaces.
    static func plainTCP(seconds: Double, messageBytes: Int, clientNS: String?, serverNS: String?,
                         clientAddr: String, serverAddr: String) throws -> Double {
        let ready = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let shared = Shared()
        let serverThread = Thread {
            enterNamespace(serverNS)
            let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddrIPv4(serverAddr, 0)
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(l, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            listen(l, 1)
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(l, $0, &len) } }
            shared.port = UInt16(bigEndian: addr.sin_port)
            ready.signal()
            let c = accept(l, nil, nil)
            var buf = [UInt8](repeating: 0, count: 256 << 10)
            let t0 = Date()
            var received = 0
            while true {
                let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                received += n
            }
            shared.received = received
            shared.elapsed = Date().timeIntervalSince(t0)
            close(c)
            close(l)
            done.signal()
        }
        serverThread.start()
        ready.wait()
        let port = shared.port
        let clientThread = Thread {
            enterNamespace(clientNS)
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if let local = IPv4Endpoint.parse(clientAddr) {
                var la = sockaddrIPv4(IPv4Endpoint.format(local), 0)
                _ = withUnsafePointer(to: &la) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
            var addr = sockaddrIPv4(serverAddr, port)
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            let payload = [UInt8](repeating: 0xA5, count: messageBytes)
            let t0 = Date()
            while Date().timeIntervalSince(t0) < seconds {
                _ = payload.withUnsafeBytes { send(s, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
            close(s)
        }
        clientThread.start()
        done.wait()
        return Double(shared.received) / shared.elapsed
    }
}
