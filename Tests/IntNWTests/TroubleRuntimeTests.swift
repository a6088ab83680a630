import Foundation
import Testing
@testable import IntNW

/// The response to a trouble verdict over loopback, driven by a detector the test switches: the
/// peer is told (NETWORK_TROUBLE) and stops using the network too, and both sides return to it when
/// the trouble clears. (Real stalls, on the emulated links, are in NetnsTests/TroubleNetnsTests.)
@Suite("Trouble response", .serialized)
struct TroubleRuntimeTests {
    func waitFor(_ what: String, seconds: Double = 20, _ cond: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !cond() {
            if Date() > deadline {
                Issue.record("timed out waiting for \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    func sent(_ s: MultiSocket, _ k: NetworkKind) -> UInt64 { s.networks.filter { $0.kind == k }.reduce(0) { $0 + $1.bytesSent } }

    @Test("the peer learns of the trouble, answers on the other network, and returns when it clears")
    func peerFollowsTheNotice() async throws {
        let state = SeamState()
        var lo = ListenerOptions()
        lo.session.troubleDetector = NoTroubleDetector()  // the server only hears about it
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1", options: lo)
        defer { listener.close() }
        var co = RuntimeLoopbackTests.clientOptions()
        co.troubleDetector = KindTroubleDetector(state: state)
        co.maintenanceIntervalMilliseconds = 20
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: co)
        let server = try await listener.accept()
        try await waitFor("both networks") { client.networks.filter(\.usable).count == 2 && server.networks.filter(\.usable).count == 2 }

        // Healthy: both directions use WiFi.
        try await client.send([1], labels: .foreground | .small)
        _ = try await server.receive()
        let wifi0 = sent(server, .wifi)
        try await server.send([2], labels: .foreground | .small)
        _ = try await client.receive()
        #expect(sent(server, .wifi) == wifi0 + 1)

        // The client's detector flags WiFi when FG data is outstanding on it.
        state.troubledKind = .wifi
        try await client.send([3], labels: .foreground | .small)
        _ = try await server.receive()
        try await waitFor("client to flag WiFi") { client.networks.contains { $0.kind == .wifi && $0.troubled } }
        try await waitFor("server to hear of it") { server.networks.contains { $0.kind == .wifi && $0.troubled } }
        let (w1, c1) = (sent(server, .wifi), sent(server, .cellular))
        try await server.send([UInt8](repeating: 4, count: 100), labels: .foreground | .small)
        let m = try await client.receive()
        #expect(m.bytes.count == 100)
        #expect(sent(server, .wifi) == w1 && sent(server, .cellular) == c1 + 100, "the server answers over cellular")

        // Cleared: the notice brings both sides back to WiFi.
        state.troubledKind = nil
        try await waitFor("client to clear WiFi") { !client.networks.contains { $0.kind == .wifi && $0.troubled } }
        try await waitFor("server to hear of it") { !server.networks.contains { $0.kind == .wifi && $0.troubled } }
        let w2 = sent(server, .wifi)
        try await server.send([5], labels: .foreground | .small)
        _ = try await client.receive()
        #expect(sent(server, .wifi) == w2 + 1)
        await client.close()
        await server.close()
    }

    @Test("a malformed or unknown extension frame is skipped, not fatal")
    func hostileNotices() async throws {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port,
                                                   options: RuntimeLoopbackTests.clientOptions())
        let server = try await listener.accept()
        try await waitFor("both networks") { server.networks.filter(\.usable).count == 2 }
        // Inject frames the way the peer would send them: bad body, unknown network, unknown type.
        client.session.loop.withLock {
            for c in client.session.conns.byNetwork.values {
                c.control.append(.extension(type: TroubleNotice.frameType, body: [1, 2, 3]))
                c.control.append(TroubleNotice.frame(networkID: 999, troubled: true))
                c.control.append(.extension(type: 0xEE, body: [9, 9]))
            }
            client.session.loop.markDirty(client.session)
        }
        client.session.loop.wake()
        try await client.send([7])
        #expect(try await server.receive().bytes == [7])
        #expect(server.networks.filter { $0.usable && !$0.troubled }.count == 2)
        await client.close()
        await server.close()
    }
}
