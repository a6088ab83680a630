import Emulation
import Foundation
import IntNW
import TestSupport
import Testing

/// Issue 3 on the emulated testbed: IntNW over the shaped WiFi and cellular links while the trace takes
/// WiFi away and brings it back three times (the OS notices each outage after the notification delay).
/// Runs in phase 1, alongside other tests: what it checks (exactly-once delivery in dependency order,
/// the outages reaching the OS, cellular carrying traffic meanwhile, WiFi carrying the traffic once it
/// is back for good) does not depend on how fast the machine is; the timed claim (new traffic on WiFi
/// within 1 s of its carrier) is `WiFiReturnNetnsTests`, in the quiet phase 2.
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct IntNWEmulatedNetnsTests {
    static let wifi = LinkConditions(downBytesPerSecond: 2_500_000, upBytesPerSecond: 2_500_000, rttMilliseconds: 20)
    static let cell = LinkConditions(downBytesPerSecond: 250_000, upBytesPerSecond: 250_000, rttMilliseconds: 100)
    static let off = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)

    /// WiFi on for 4 s, off for 3 s, three times, then on for good.
    static func flappingTrace() -> Trace {
        var slices: [TraceSlice] = []
        for k in 0..<3 {
            slices.append(TraceSlice(startSeconds: Double(k) * 7, conditions: [wifi, cell]))
            slices.append(TraceSlice(startSeconds: Double(k) * 7 + 4, conditions: [off, cell]))
        }
        slices.append(TraceSlice(startSeconds: 21, conditions: [wifi, cell]))
        return Trace(slices: slices, durationSeconds: 600, source: "wifi flapping x3")
    }


    @Test("1,000 IROBs each way exactly once in dependency order while WiFi comes and goes three times")
    func flappingWiFi() async throws {
        var config = Testbed.Configuration(trace: Self.flappingTrace())
        config.prefix = "tinw"
        config.notifyDelaySeconds = 1
        try await withTestbed(config) { bed in
            let spec = bed.topology.spec
            var serverOpts = ListenerOptions()
            serverOpts.session.networkNamespacePath = "/var/run/netns/\(spec.serverNamespace)"
            let listener = try MultiSocketListener(port: 0, address: spec.serviceAddress, options: serverOpts)
            defer { listener.close() }
            var clientOpts = MultiSocketOptions(classifier: NetworkClassifier(), interfaces: ["wifi0", "cell0"])
            clientOpts.networkNamespacePath = "/var/run/netns/\(spec.clientNamespace)"
            clientOpts.logger.logLevel = .warning
            let client = try await MultiSocket.connect(to: spec.serviceAddress, port: listener.localEndpoint.port, options: clientOpts)
            let server = try await listener.accept()
            try await waitUntil("both networks", timeoutSeconds: 5) { client.networks.filter(\.usable).count == 2 }
            bed.startReplay()

            // Paced so each direction spans outages: ~1,000 sends over ~10 s.
            func run(_ w: Workload, from: MultiSocket, to: MultiSocket) async throws -> [String] {
                async let received: [Message] = {
                    var out: [Message] = []
                    for _ in 0..<w.items.count {
                        out.append(try await to.receive())
                    }
                    return out
                }()
                for item in w.items {
                    try await from.send(item.bytes, labels: item.labels, dependsOn: item.deps)
                    try await Task.sleep(for: .milliseconds(10))
                }
                return w.verify(try await received)
            }
            let up = Workload(count: 1000, maxBytes: 16 << 10, seed: 301)
            let p1 = try await run(up, from: client, to: server)
            #expect(p1.isEmpty, "client to server: \(p1.count) problems: \(p1.prefix(5))")
            // IROB ids are per direction, from 1: the server has sent nothing yet.
            let down = Workload(count: 1000, maxBytes: 16 << 10, seed: 302)
            let p2 = try await run(down, from: server, to: client)
            #expect(p2.isEmpty, "server to client: \(p2.count) problems: \(p2.prefix(5))")

            let events = bed.replayer.events
            #expect(events.filter { $0.kind == .carrierDown }.count >= 2, "the outages reached the OS")
            let cellular = client.networks.first { $0.kind == .cellular }!
            #expect(cellular.bytesSent > 0 && cellular.bytesReceived > 0, "cellular carried traffic while WiFi was out")

            // Once WiFi is back for good (t = 21 s), new traffic goes over it.
            let origin = Double(bed.replayer.startNs) / 1e9
            let sinceStart = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 - origin }
            if sinceStart() < 21 { try await Task.sleep(for: .seconds(21 - sinceStart())) }
            try await waitUntil("WiFi usable after the last outage", timeoutSeconds: 3) {
                client.networks.contains { $0.kind == .wifi && $0.usable }
            }
            let before = client.networks
            // The client's ids continue after its first 1,000.
            let tail = Workload(count: 100, maxBytes: 16 << 10, seed: 303, firstID: 1001)
            let p3 = try await run(tail, from: client, to: server)
            #expect(p3.isEmpty)
            var wifiBytes: UInt64 = 0, total: UInt64 = 0
            for n in client.networks {
                let delta = n.bytesSent - (before.first { $0.networkID == n.networkID }?.bytesSent ?? 0)
                total += delta
                if n.kind == .wifi { wifiBytes += delta }
            }
            #expect(Double(wifiBytes) >= 0.99 * Double(total), "after WiFi returned: \(wifiBytes) of \(total) bytes on WiFi")
            let report = await client.close()
            #expect(report.flushed && report.undelivered.isEmpty)
            await server.close()
        }
    }

}

/// How fast IntNW puts new traffic back on WiFi once its carrier returns: a wall-clock bound, so in the
/// quiet phase 2 (`QUIET_SUITES` in scripts/run-tests.sh).
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct WiFiReturnNetnsTests {
    static let wifi = IntNWEmulatedNetnsTests.wifi, cell = IntNWEmulatedNetnsTests.cell, off = IntNWEmulatedNetnsTests.off

    @Test("new traffic is on WiFi within 1 s of its carrier coming up")
    func wifiReturnsQuickly() async throws {
        // WiFi out from 1 s to 4 s with a 0.5 s notification delay: carrier down at 1.5 s, up at 4 s.
        let trace = Trace(slices: [TraceSlice(startSeconds: 0, conditions: [Self.wifi, Self.cell]),
                                   TraceSlice(startSeconds: 1, conditions: [Self.off, Self.cell]),
                                   TraceSlice(startSeconds: 4, conditions: [Self.wifi, Self.cell])],
                          durationSeconds: 600, source: "one outage")
        var config = Testbed.Configuration(trace: trace)
        config.prefix = "tinwr"
        config.notifyDelaySeconds = 0.5
        try await withTestbed(config) { bed in
            let spec = bed.topology.spec
            var serverOpts = ListenerOptions()
            serverOpts.session.networkNamespacePath = "/var/run/netns/\(spec.serverNamespace)"
            let listener = try MultiSocketListener(port: 0, address: spec.serviceAddress, options: serverOpts)
            defer { listener.close() }
            var clientOpts = MultiSocketOptions(classifier: NetworkClassifier(), interfaces: ["wifi0", "cell0"])
            clientOpts.networkNamespacePath = "/var/run/netns/\(spec.clientNamespace)"
            clientOpts.logger.logLevel = .warning
            let client = try await MultiSocket.connect(to: spec.serviceAddress, port: listener.localEndpoint.port, options: clientOpts)
            let server = try await listener.accept()
            try await waitUntil("both networks", timeoutSeconds: 5) { client.networks.filter(\.usable).count == 2 }
            bed.startReplay()
            let receiver = Task { while true { _ = try await server.receive() } }
            defer { receiver.cancel() }
            // Small FG messages every 20 ms throughout; find when WiFi carries them again.
            let origin = Double(bed.replayer.startNs) / 1e9
            var wifiBackAt: Double?
            var lastWifiBytes = client.networks.first { $0.kind == .wifi }?.bytesSent ?? 0
            while true {
                let t = Double(DispatchTime.now().uptimeNanoseconds) / 1e9 - origin
                if t > 7 { break }
                _ = try await client.send([UInt8](repeating: 7, count: 200), labels: .foreground | .small)
                try await Task.sleep(for: .milliseconds(20))
                let wifiBytes = client.networks.first { $0.kind == .wifi }?.bytesSent ?? 0
                if t > 4, wifiBytes > lastWifiBytes, wifiBackAt == nil { wifiBackAt = t }
                lastWifiBytes = wifiBytes
            }
            let up = try #require(bed.replayer.events.first { $0.kind == .carrierUp }, "carrier never came back")
            let back = try #require(wifiBackAt, "no traffic on WiFi after it returned")
            #expect(back - up.scheduledSeconds < 1.0, "WiFi carried traffic \(back - up.scheduledSeconds) s after carrier up")
            print("IntNW on the emulator: traffic back on WiFi \(String(format: "%.3f", back - up.scheduledSeconds)) s after carrier up")
            _ = await client.close()
            await server.close()
        }
    }
}

/// Polls `cond` every 10 ms until it holds, or throws after `timeoutSeconds`.
func waitUntil(_ what: String, timeoutSeconds: Double, _ cond: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while !cond() {
        if Date() > deadline { throw INWTopology.CommandFailed(command: "wait for \(what)", output: "timed out") }
        try await Task.sleep(for: .milliseconds(10))
    }
}
