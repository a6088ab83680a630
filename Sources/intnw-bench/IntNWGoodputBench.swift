/// IntNW send/receive path benchmark: goodput of one multisocket as a ratio of one plain kernel TCP
/// connection over the same veth pair between two namespaces.
/// - unshaped: CPU-bound, measures how lean the IntNW path is (goal ≥ 0.5);
/// - shaped (token bucket on the sender's egress): bandwidth-bound, measures protocol overhead
///   (goal ≥ 0.97).
/// Needs root; without it, runs unshaped over loopback.
import Emulation
import Foundation
import IntNW
import LinuxSupport
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

    /// State the plain-TCP receiver thread hands back (written before it signals `done`).
    // @unchecked: written by the receiver thread before it signals `done`, read after `done.wait()`.
    private final class Shared: @unchecked Sendable {
        var received = 0
        var elapsed = 0.0
        var failure: Error?
    }

    /// One blocking kernel TCP connection: the sockets are made in their namespaces
    /// (`NetworkNamespaceEntry.run`), then a receiver thread and this thread move the bytes.
    /// Any failed call (namespace entry, socket, bind, connect, send, recv) ends the run with its error.
    static func plainTCP(seconds: Double, messageBytes: Int, clientNS: String?, serverNS: String?,
                         clientAddr: String, serverAddr: String) throws -> Double {
        func target(_ ns: String?) -> NetworkNamespaceEntry.Target { ns.map { .named($0) } ?? .current }
        guard let serverEP = IPv4Endpoint(serverAddr, port: 0) else { throw BenchError("'\(serverAddr)' is not an IPv4 address") }
        guard let clientEP = IPv4Endpoint(clientAddr, port: 0) else { throw BenchError("'\(clientAddr)' is not an IPv4 address") }
        let listener = try NetworkNamespaceEntry.run(in: target(serverNS)) { () throws -> Int32 in
            let l = try Syscall.check("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
            _ = try Syscall.check("bind \(serverEP)") { serverEP.withSockaddr { bind(l, $0, $1) } }
            _ = try Syscall.check("listen") { listen(l, 1) }
            return l
        }
        defer { close(listener) }
        guard let port = IPv4Endpoint.receiving({ getsockname(listener, $0, $1) }).endpoint?.port else {
            throw SystemCallError("getsockname", .last)
        }
        let client = try NetworkNamespaceEntry.run(in: target(clientNS)) { () throws -> Int32 in
            let s = try Syscall.check("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
            _ = try Syscall.check("bind \(clientEP)") { clientEP.withSockaddr { bind(s, $0, $1) } }
            return s
        }
        let done = DispatchSemaphore(value: 0)
        let shared = Shared()
        let serverThread = Thread {
            defer { done.signal() }
            let c: Int32
            do { c = try Syscall.check("accept") { accept(listener, nil, nil) } } catch { shared.failure = error; return }
            defer { close(c) }
            var buf = [UInt8](repeating: 0, count: 256 << 10)
            let t0 = Date()
            var received = 0
            receiving: while true {
                switch Syscall.retrying({ buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) } }) {
                case .success(0): break receiving
                case .success(let n): received += n
                case .failure(let e):
                    shared.failure = SystemCallError("recv", e)
                    break receiving
                }
            }
            shared.received = received
            shared.elapsed = Date().timeIntervalSince(t0)
        }
        serverThread.start()
        var sendFailure: Error?
        do {
            let to = IPv4Endpoint(address: serverEP.address, port: port)
            _ = try Syscall.check("connect \(to)") { to.withSockaddr { connect(client, $0, $1) } }
            let payload = [UInt8](repeating: 0xA5, count: messageBytes)
            let t0 = Date()
            while Date().timeIntervalSince(t0) < seconds {
                _ = try Syscall.check("send") { payload.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
            }
        } catch {
            sendFailure = error
        }
        close(client)
        done.wait()
        if let e = sendFailure ?? shared.failure { throw e }
        return Double(shared.received) / shared.elapsed
    }
}
