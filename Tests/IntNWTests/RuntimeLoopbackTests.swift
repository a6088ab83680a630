import Testing
import Foundation
@testable import IntNW
import TestSupport

/// Runs the real runtime over loopback: two "networks" are two loopback source addresses.
@Suite("Runtime over loopback", .serialized)
struct RuntimeLoopbackTests {
    static func clientOptions() -> MultiSocketOptions {
        MultiSocketOptions(staticNetworks: [
            LocalNetwork(networkID: 1, kind: .wifi, interfaceName: "lo-wifi", address: IPv4Endpoint.parse("127.0.0.1")!),
            LocalNetwork(networkID: 2, kind: .cellular, interfaceName: "lo-cell", address: IPv4Endpoint.parse("127.0.0.2")!),
        ], connectTimeoutSeconds: 5)
    }

    @Test("messages flow both ways exactly once, byte-identical, in dependency order; close flushes")
    func roundTrip() async throws {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: Self.clientOptions())
        let server = try await listener.accept()
        #expect(server.sessionID == client.sessionID)

        let up = Workload(count: 300, maxBytes: 16 << 10, seed: 11)
        let down = Workload(count: 300, maxBytes: 16 << 10, seed: 12)
        async let received: [Message] = {
            var out: [Message] = []
            for _ in 0..<up.items.count { out.append(try await server.receive()) }
            return out
        }()
        for item in up.items { try await client.send(item.bytes, labels: item.labels, dependsOn: item.deps) }
        let got = try await received
        #expect(up.verify(got) == [])

        async let back: [Message] = {
            var out: [Message] = []
            for _ in 0..<down.items.count { out.append(try await client.receive()) }
            return out
        }()
        for item in down.items { try await server.send(item.bytes, labels: item.labels, dependsOn: item.deps) }
        let gotBack = try await back
        #expect(down.verify(gotBack) == [])

        // Both networks came up; with "WiFi" usable, all payload went over it.
        let nets = client.networks
        #expect(nets.count == 2 && nets.allSatisfy(\.usable))
        let wifi = nets.first { $0.kind == .wifi }!, cell = nets.first { $0.kind == .cellular }!
        #expect(wifi.bytesSent > 0 && cell.bytesSent == 0)
        #expect(wifi.bytesReceived > 0 && cell.bytesReceived == 0)

        let report = await client.close()
        #expect(report.flushed && report.undelivered.isEmpty)
        // The server sees the orderly end of the stream.
        await #expect(throws: IntNWError.endOfStream) { _ = try await server.receive() }
        await server.close()
    }

    @Test("restricted messages wait, fail, or defer to a thunk when no network suits them")
    func restrictions() async throws {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        // Only a cellular network.
        var opts = Self.clientOptions()
        opts.staticNetworks = [opts.staticNetworks![1]]
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: opts)
        let server = try await listener.accept()
        #expect(!client.hasNetwork(for: .wifiOnly) && client.hasNetwork(for: .cellularOnly))
        await #expect(throws: IntNWError.noSuitableNetwork(.wifiOnly)) {
            try await client.send([1, 2, 3], labels: .wifiOnly, ifNoNetwork: .fail)
        }
        let deferred = try await client.sendOrDefer([1], labels: .wifiOnly) {}
        #expect(deferred == nil)
        // WiFi preferred falls back to cellular; cellular-only goes.
        let a = try await client.send([7], labels: .wifiPreferred, dependsOn: .none)
        let b = try await client.send([8], labels: .cellularOnly, dependsOn: .none)
        let m1 = try await server.receive(), m2 = try await server.receive()
        #expect(Set([m1.id, m2.id]) == [a, b])
        #expect(Set([m1.labels.restriction, m2.labels.restriction]) == [.wifiPreferred, .cellularOnly])
        // A waiting wifi-only message is reported undelivered at close.
        let waiting = try await client.send([9], labels: .wifiOnly, dependsOn: .none)
        let report = await client.close(timeoutSeconds: 0.2)
        #expect(report.undelivered == [waiting] && !report.flushed)
        await server.close()
    }

    @Test("bad arguments are clear errors")
    func badArguments() async throws {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: Self.clientOptions())
        await #expect(throws: IntNWError.invalidDependency(IROBID(5))) { try await client.send([1], dependsOn: .on([IROBID(5)])) }
        await #expect(throws: IntNWError.messageTooLarge(bytes: 17 << 20, limit: 16 << 20)) {
            try await client.send([UInt8](repeating: 0, count: 17 << 20))
        }
        await client.close()
        await #expect(throws: IntNWError.closed) { try await client.send([1]) }
        #expect(throws: IntNWError.self) { try MultiSocketListener(port: 0, address: "not-an-address") }
        // Nothing listens on this port: connect gives up with a clear error.
        var opts = Self.clientOptions()
        opts.connectTimeoutSeconds = 0.5
        await #expect(throws: IntNWError.self) { _ = try await MultiSocket.connect(to: "127.0.0.1", port: 1, options: opts) }
    }
}

@Suite("Runtime backpressure", .serialized)
struct RuntimeBackpressureTests {
    @Test("a receiver that does not read stops reading at its bound; the sender blocks; nothing is lost")
    func backpressure() async throws {
        var lo = ListenerOptions()
        lo.session.receiveLimits = ReceiveLimits(bufferBytes: 1 << 20, hardLimitBytes: 4 << 20)
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1", options: lo)
        defer { listener.close() }
        var co = RuntimeLoopbackTests.clientOptions()
        co.sendLimits = SendLimits(windowBytes: 2 << 20, maxIROBBytes: 1 << 20)
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: co)
        let server = try await listener.accept()
        let w = Workload(count: 200, maxBytes: 64 << 10, seed: 21)
        let sender = Task {
            for item in w.items { try await client.send(item.bytes, labels: item.labels, dependsOn: item.deps) }
        }
        // Nobody receives for a while: the server must hold at most its hard limit.
        var peak = 0
        for _ in 0..<200 where peak < 1 << 20 {
            try await Task.sleep(for: .milliseconds(25))
            peak = max(peak, server.session.loop.withLock { server.session.receiver.bufferedBytes })
        }
        // A little longer, to see that it stays bounded.
        for _ in 0..<10 {
            try await Task.sleep(for: .milliseconds(25))
            peak = max(peak, server.session.loop.withLock { server.session.receiver.bufferedBytes })
        }
        // It filled up to its soft bound (and then stopped reading), never past the hard limit,
        // although the workload (about 6.5 MB) is larger than both.
        #expect(peak >= 1 << 20 && peak <= 4 << 20, "peak \(peak)")
        #expect(w.items.reduce(0) { $0 + $1.bytes.count } > 4 << 20)
        var got: [Message] = []
        for _ in 0..<w.items.count { got.append(try await server.receive()) }
        try await sender.value
        #expect(w.verify(got) == [])
        await client.close()
        await server.close()
    }
}

/// Thread-safe switches and counters for the scheduler-seam tests.
final class SeamState: @unchecked Sendable {
    private let lock = NSLock()
    private var _allowBackground = false
    private var _troubledKind: NetworkKind?
    private var _events: [ForegroundEvent] = []
    var allowBackground: Bool {
        get { lock.lock(); defer { lock.unlock() }; return _allowBackground }
        set { lock.lock(); _allowBackground = newValue; lock.unlock() }
    }
    var troubledKind: NetworkKind? {
        get { lock.lock(); defer { lock.unlock() }; return _troubledKind }
        set { lock.lock(); _troubledKind = newValue; lock.unlock() }
    }
    var events: [ForegroundEvent] { lock.lock(); defer { lock.unlock() }; return _events }
    func record(_ e: ForegroundEvent) { lock.lock(); _events.append(e); lock.unlock() }
}

struct GatedBackgroundPolicy: BackgroundPolicy {
    let state: SeamState
    func decide(_ context: BackgroundContext) -> BackgroundDecision {
        state.allowBackground ? .send(maxBytes: Int.max) : .wait(untilNs: context.nowNs + 20_000_000)
    }
    func observe(_ event: ForegroundEvent) { state.record(event) }
}

struct KindTroubleDetector: TroubleDetector {
    let state: SeamState
    func evaluate(_ sample: TroubleSample) -> TroubleVerdict {
        TroubleVerdict(troubled: sample.network.kind == state.troubledKind)
    }
}

@Suite("Scheduler seams", .serialized)
struct SchedulerSeamTests {
    @Test("a background policy holds BG back while FG flows, and sees FG activity")
    func backgroundPolicy() async throws {
        let state = SeamState()
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        var co = RuntimeLoopbackTests.clientOptions()
        co.backgroundPolicy = GatedBackgroundPolicy(state: state)
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: co)
        let server = try await listener.accept()
        let bg = try await client.send([UInt8](repeating: 2, count: 100_000), labels: .background | .large, dependsOn: .none)
        let fg = try await client.send([1], labels: .foreground | .small, dependsOn: .none)
        let first = try await server.receive()
        #expect(first.id == fg)
        // The FG IROB gets ACKed; the BG one is still held back by the policy.
        for _ in 0..<500 where client.unacknowledgedCount != 1 { try await Task.sleep(for: .milliseconds(10)) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(client.unacknowledgedCount == 1)
        state.allowBackground = true
        let second = try await server.receive()
        #expect(second.id == bg && second.bytes.count == 100_000)
        #expect(state.events.contains { if case .sent(let id, _, _, _) = $0 { id == fg } else { false } })
        #expect(state.events.contains(where: { if case .acknowledged(let id, _) = $0 { id == fg } else { false } }))
        await client.close()
        await server.close()
    }

    @Test("a troubled network stops carrying data; what it carried is resent elsewhere")
    func troubleDetector() async throws {
        let state = SeamState()
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        var co = RuntimeLoopbackTests.clientOptions()
        co.troubleDetector = KindTroubleDetector(state: state)
        co.maintenanceIntervalMilliseconds = 20
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: co)
        let server = try await listener.accept()
        while client.networks.filter(\.usable).count < 2 { try await Task.sleep(for: .milliseconds(10)) }
        state.troubledKind = .wifi
        var sent = 0
        let deadline = Date().addingTimeInterval(10)
        while !client.networks.contains(where: { $0.kind == .wifi && $0.troubled }) && Date() < deadline {
            try await client.send([UInt8](repeating: 3, count: 1000))
            sent += 1
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(client.networks.contains { $0.kind == .wifi && $0.troubled })
        let cellBefore = client.networks.first { $0.kind == .cellular }!.bytesSent
        try await client.send([UInt8](repeating: 4, count: 5000), labels: .foreground)
        sent += 1
        for _ in 0..<sent { _ = try await server.receive() }
        #expect(client.networks.first { $0.kind == .cellular }!.bytesSent >= cellBefore + 5000)
        await client.close()
        await server.close()
    }
}
