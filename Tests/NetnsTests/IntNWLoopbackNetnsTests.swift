import Testing
import Foundation
@testable import IntNW
import TestSupport

final class RecoveryTimes: @unchecked Sendable {
    private let lock = NSLock()
    private var v: [Double] = []
    func add(_ x: Double) { lock.lock(); v.append(x); lock.unlock() }
    var values: [Double] { lock.lock(); defer { lock.unlock() }; return v }
}

/// Two namespaces joined by two plain veth pairs named wifi0 and cell0 (docs/testbed.md, Topology
/// addressing), built and torn down with `ip`.
struct INWTopology {
    static let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/ip"
    let client = "tveth-client"
    let server = "tveth-server"
    static let serviceAddress = "198.19.0.1"

    struct CommandFailed: Error, CustomStringConvertible {
        var command: String
        var output: String
        var description: String { "\(command): \(output)" }
    }

    @discardableResult
    static func run(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ip)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let out = String(decoding: data, as: UTF8.self)
        if p.terminationStatus != 0 { throw CommandFailed(command: "ip " + args.joined(separator: " "), output: out) }
        return out
    }

    func teardown() {
        for ns in [client, server] { _ = try? INWTopology.run(["netns", "del", ns]) }
    }

    func setUp() throws {
        teardown()
        func r(_ a: [String]) throws { _ = try INWTopology.run(a) }
        try r(["netns", "add", client])
        try r(["netns", "add", server])
        for (name, subnet, table) in [("wifi0", "198.18.1", "101"), ("cell0", "198.18.2", "102")] {
            try r(["link", "add", name, "netns", client, "type", "veth", "peer", "name", name, "netns", server])
            try r(["-n", client, "addr", "add", "\(subnet).2/24", "dev", name])
            try r(["-n", server, "addr", "add", "\(subnet).1/24", "dev", name])
            // A link that comes back should not wait for the kernel's ARP retry timer (1 s by
            // default): the entry for the server is left INCOMPLETE by traffic sent into the dead
            // link, and the first SYN afterwards waits for the next probe.
            try r(["-n", client, "ntable", "change", "name", "arp_cache", "dev", name, "retrans", "50"])
            try r(["-n", client, "link", "set", name, "up"])
            try r(["-n", server, "link", "set", name, "up"])
            // Source-based policy routing: a socket bound to this address leaves on this link.
            try r(["-n", client, "route", "add", INWTopology.serviceAddress, "via", "\(subnet).1", "dev", name, "table", table])
            try r(["-n", client, "rule", "add", "from", "\(subnet).2", "table", table])
        }
        for ns in [client, server] { try r(["-n", ns, "link", "set", "lo", "up"]) }
        try r(["-n", server, "addr", "add", "\(INWTopology.serviceAddress)/32", "dev", "lo"])
        // What a non-IntNW app sees: WiFi preferred, cellular as fallback.
        try r(["-n", client, "route", "add", INWTopology.serviceAddress, "via", "198.18.1.1", "metric", "100"])
        try r(["-n", client, "route", "add", INWTopology.serviceAddress, "via", "198.18.2.1", "metric", "200"])
    }

    func setServerLink(_ name: String, up: Bool) throws {
        _ = try INWTopology.run(["-n", server, "link", "set", name, up ? "up" : "down"])
    }
}

@Suite("IntNW over two veth links in namespaces", .serialized, .netnsAvailableOrRequired, .netnsRequired, .timeLimit(.minutes(3)))
struct IntNWLoopbackNetnsTests {
    let topo = INWTopology()

    private func wifiShare(_ before: [NetworkStatus], _ after: [NetworkStatus], sent: Bool) -> (wifi: UInt64, total: UInt64) {
        var wifi: UInt64 = 0, total: UInt64 = 0
        for n in after {
            let b = before.first { $0.networkID == n.networkID }
            let delta = sent ? n.bytesSent - (b?.bytesSent ?? 0) : n.bytesReceived - (b?.bytesReceived ?? 0)
            total += delta
            if n.kind == .wifi { wifi += delta }
        }
        return (wifi, total)
    }

    private func waitFor(_ what: String, timeoutSeconds: Double, _ cond: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while !cond() {
            if Date() > deadline { throw INWTopology.CommandFailed(command: "wait for \(what)", output: "timed out") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends `w` from `from` while `to` receives; `flap` runs (blocking the receiver) after
    /// message `flapAt` has been received, i.e. mid-transfer.
    private func transfer(_ w: Workload, from: MultiSocket, to: MultiSocket, flapAt: Int? = nil,
                          paceMicroseconds: UInt64 = 0, flap: (@Sendable () async throws -> Void)? = nil) async throws -> [String] {
        async let received: [Message] = {
            var out: [Message] = []
            for i in 0..<w.items.count {
                out.append(try await to.receive())
                if let flapAt, i == flapAt, let flap { try await flap() }
            }
            return out
        }()
        for item in w.items {
            try await from.send(item.bytes, labels: item.labels, dependsOn: item.deps)
            if paceMicroseconds > 0 { try await Task.sleep(for: .microseconds(paceMicroseconds)) }
        }
        return w.verify(try await received)
    }

    /// Takes WiFi away on the server side (the client loses carrier), waits until the client has
    /// noticed (the kernel reports carrier changes of a veth late, up to about a second), brings it
    /// back, and returns how long the client took to have WiFi usable again, in seconds.
    private func flapWiFi(_ client: MultiSocket) async throws -> Double {
        try topo.setServerLink("wifi0", up: false)
        try await waitFor("client to notice WiFi loss", timeoutSeconds: 5) {
            !client.networks.contains { $0.kind == .wifi && $0.usable }
        }
        // No WiFi: a wifi-only message fails on request, or defers to a thunk run when WiFi returns.
        await #expect(throws: IntNWError.noSuitableNetwork(.wifiOnly)) {
            try await client.send([1], labels: .wifiOnly, ifNoNetwork: .fail)
        }
        let thunkRan = RecoveryTimes()
        let deferred = try await client.sendOrDefer([1], labels: .wifiOnly) { thunkRan.add(1) }
        #expect(deferred == nil)
        try await Task.sleep(for: .milliseconds(300))
        #expect(thunkRan.values.isEmpty)
        let t0 = Date()
        try topo.setServerLink("wifi0", up: true)
        try await waitFor("WiFi back", timeoutSeconds: 5) { client.networks.contains { $0.kind == .wifi && $0.usable } }
        let recovered = Date().timeIntervalSince(t0)
        try await waitFor("the thunk", timeoutSeconds: 2) { !thunkRan.values.isEmpty }
        return recovered
    }

    @Test("1,000 IROBs each way exactly once in dependency order; WiFi carries the traffic; WiFi flaps lose nothing")
    func twoLinks() async throws {
        try topo.setUp()
        defer { topo.teardown() }

        var serverOpts = ListenerOptions()
        serverOpts.session.networkNamespacePath = "/var/run/netns/\(topo.server)"
        let listener = try MultiSocketListener(port: 0, address: INWTopology.serviceAddress, options: serverOpts)
        defer { listener.close() }
        var clientOpts = MultiSocketOptions(classifier: NetworkClassifier(), interfaces: ["wifi0", "cell0"])
        clientOpts.networkNamespacePath = "/var/run/netns/\(topo.client)"
        clientOpts.logger.logLevel = .warning
        let client = try await MultiSocket.connect(to: INWTopology.serviceAddress, port: listener.localEndpoint.port, options: clientOpts)
        let server = try await listener.accept()
        try await waitFor("both networks", timeoutSeconds: 5) { client.networks.filter(\.usable).count == 2 }
        #expect(Set(client.networks.map(\.kind)) == [.wifi, .cellular])

        // 1. Client → server.
        var before = client.networks
        let up = Workload(count: 1000, maxBytes: 16 << 10, seed: 101)
        let problems1 = try await transfer(up, from: client, to: server)
        #expect(problems1.isEmpty, "\(problems1.count) problems: \(problems1.prefix(5))")
        var share = wifiShare(before, client.networks, sent: true)
        #expect(share.total >= up.items.reduce(0) { $0 + UInt64($1.bytes.count) })
        #expect(Double(share.wifi) >= 0.99 * Double(share.total), "wifi \(share.wifi) of \(share.total)")

        // 2. Server → client.
        before = client.networks
        let down = Workload(count: 1000, maxBytes: 16 << 10, seed: 102)
        let problems2 = try await transfer(down, from: server, to: client)
        #expect(problems2.isEmpty, "\(problems2.count) problems: \(problems2.prefix(5))")
        share = wifiShare(before, client.networks, sent: false)
        #expect(Double(share.wifi) >= 0.99 * Double(share.total), "wifi \(share.wifi) of \(share.total)")

        // 3. WiFi goes away mid-transfer and comes back, client → server.
        let flapUp = Workload(count: 1000, maxBytes: 16 << 10, seed: 103, firstID: 1001)
        let recovery = RecoveryTimes()
        let problems3 = try await transfer(flapUp, from: client, to: server, flapAt: 300, paceMicroseconds: 2000) {
            recovery.add(try await self.flapWiFi(client))
        }
        #expect(problems3.isEmpty, "\(problems3.count) problems: \(problems3.prefix(5))")
        let cellUsed = client.networks.first { $0.kind == .cellular }!.bytesSent
        #expect(cellUsed > 0, "nothing went over cellular while WiFi was down")

        // 4. The same, server → client.
        let flapDown = Workload(count: 1000, maxBytes: 16 << 10, seed: 104, firstID: 1001)
        let cellReceivedBefore = client.networks.first { $0.kind == .cellular }!.bytesReceived
        let problems4 = try await transfer(flapDown, from: server, to: client, flapAt: 300, paceMicroseconds: 2000) {
            recovery.add(try await self.flapWiFi(client))
        }
        let cellReceived = client.networks.first { $0.kind == .cellular }!.bytesReceived - cellReceivedBefore
        #expect(cellReceived > 0, "nothing came over cellular while WiFi was down")
        // From carrier up to WiFi usable again: the issue asks for new traffic on WiFi within 1 s.
        print("IntNW netns: WiFi usable again \(recovery.values.map { String(format: "%.3f s", $0) }) after carrier up")
        #expect(recovery.values.count == 2 && recovery.values.allSatisfy { $0 < 1 })
        #expect(problems4.isEmpty, "\(problems4.count) problems: \(problems4.prefix(5))")

        // 5. Traffic is back on WiFi once it is up again.
        before = client.networks
        let after = Workload(count: 100, maxBytes: 16 << 10, seed: 105, firstID: 2001)
        let problems5 = try await transfer(after, from: client, to: server)
        #expect(problems5.isEmpty, "\(problems5.count) problems: \(problems5.prefix(5))")
        share = wifiShare(before, client.networks, sent: true)
        #expect(Double(share.wifi) >= 0.99 * Double(share.total), "after recovery: wifi \(share.wifi) of \(share.total)")

        let report = await client.close()
        #expect(report.flushed && report.undelivered.isEmpty)
        await #expect(throws: IntNWError.endOfStream) { _ = try await server.receive() }
        await server.close()
    }
}
