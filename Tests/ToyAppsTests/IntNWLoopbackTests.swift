import Foundation
import IntNW
import Testing
import ToyProtocol
@testable import ToyApps
import LinuxSupport

/// The apps over the real IntNW runtime on loopback: two "networks" are two loopback source
/// addresses, as in the IntNW runtime tests.
@Suite("IntNW apps over loopback", .serialized)
struct IntNWLoopbackTests {
    static var transport: IntNWTransport {
        IntNWTransport(options: MultiSocketOptions(staticNetworks: [
            LocalNetwork(networkID: 1, kind: .wifi, interfaceName: "lo-wifi", address: IPv4Endpoint.parse("127.0.0.1")!),
            LocalNetwork(networkID: 2, kind: .cellular, interfaceName: "lo-cell", address: IPv4Endpoint.parse("127.0.0.2")!),
        ], connectTimeoutSeconds: 5))
    }

    @Test("labels: requests and replies foreground+small, chunks and acks background+large")
    func labels() {
        for kind in [ToyMessageKind.fgRequest, .fgReply] {
            let l = IntNWTransport.labels(for: kind)
            #expect(l.isForeground && l.isSmall && !l.isLarge)
        }
        for kind in [ToyMessageKind.bgChunk, .bgAck] {
            let l = IntNWTransport.labels(for: kind)
            #expect(l.isBackground && l.isLarge && !l.isSmall)
        }
        // The drive experiment's strategies: no hints, and a network restriction on top.
        let bare = MessageLabeling(labeled: false).labels(for: .bgChunk)
        #expect(bare == .none)
        let cell = MessageLabeling(labeled: true, restriction: .cellularOnly).labels(for: .fgRequest)
        #expect(cell.restriction == .cellularOnly && cell.isForeground && cell.isSmall)
        let pref = MessageLabeling(labeled: false, restriction: .wifiPreferred).labels(for: .bgChunk)
        #expect(pref.restriction == .wifiPreferred && pref.rawValue & (Labels.foregroundBit | Labels.backgroundBit) == 0)
    }

    /// Catches: a server that labels its answers with its own labeling (the default foreground+small /
    /// background+large, no restriction) instead of copying the request's labels. The client sends
    /// requests and chunks under labelings the server would never choose and reads the labels of the
    /// IROBs that carry the answers, on the client.
    @Test("answers carry the labels of what they answer, read on the client")
    func answersCopyLabels() async throws {
        let server = ToyServer(settings: ServerSettings(address: "127.0.0.1", port: 0, replyBytes: 64),
                               transport: Self.transport, sink: MemoryLineSink(), warn: { _ in })
        let port = try server.start()
        defer { _ = server.stop() }
        let labelings = [MessageLabeling(labeled: false, restriction: .wifiPreferred),
                         MessageLabeling(labeled: true, restriction: .wifiPreferred)]
        let seen = try await onThread { () -> [(sent: Labels, answer: Labels?, kind: ToyMessageKind?)] in
            var seen: [(sent: Labels, answer: Labels?, kind: ToyMessageKind?)] = []
            for labeling in labelings {
                let transport = IntNWTransport(labeling: labeling, options: Self.transport.options)
                let c = try transport.connect(host: "127.0.0.1", port: port, timeoutSeconds: 5, stop: StopToken())
                defer { c.close() }
                for (seq, kind) in [ToyMessageKind.fgRequest, .bgChunk].enumerated() {
                    _ = try c.send(ToyHeader(kind: kind, appID: 1, sequence: UInt64(seq), payloadLength: 1000))
                    let answer = try c.receive()
                    seen.append((labeling.labels(for: kind), answer?.labels, answer?.header.kind))
                }
            }
            return seen
        }
        #expect(seen.count == 4)
        for s in seen {
            #expect(s.answer == s.sent, "answer (\(String(describing: s.kind))) labelled \(String(describing: s.answer)), its request \(s.sent)")
            // The labels differ from what the server would pick for the answer itself.
            if let kind = s.kind { #expect(s.sent != MessageLabeling().labels(for: kind)) }
        }
        #expect(Set(seen.compactMap(\.kind)) == [.fgReply, .bgAck])
    }

    @Test("a run with copied labels: every request answered, every chunk acked")
    func answersCopyLabelsRun() async throws {
        let transport = IntNWTransport(labeling: MessageLabeling(labeled: false, restriction: .wifiPreferred),
                                       options: Self.transport.options)
        let r = try await runLoopback(transport: transport,
                                      connections: [[.fg(FGClientSettings(appID: 1, intervalSeconds: 0.05)),
                                                     .bg(BGClientSettings(appID: 2, chunkBytes: 65_536, depth: 2))]],
                                      // Long enough to connect and exchange on a loaded 2-core machine.
                                      seconds: 2.0)
        try PlainLoopbackTests.checkRun(r, fgApp: 1, bgApp: 2, minRequests: 5, variant: .intnw)
    }

    @Test("FG and BG on two multisockets: every request answered, every chunk acked, counts agree")
    func separate() async throws {
        let r = try await runLoopback(transport: Self.transport,
                                connections: [[.fg(FGClientSettings(appID: 1, intervalSeconds: 0.05))],
                                              [.bg(BGClientSettings(appID: 2, chunkBytes: 262_144, depth: 4))]],
                                seconds: 1.5)
        try PlainLoopbackTests.checkRun(r, fgApp: 1, bgApp: 2, minRequests: 10, variant: .intnw, chunkBytes: 262_144)
        #expect(r.server.connections == 2)
    }

    @Test("FG and BG sharing one multisocket: answers routed by app id")
    func shared() async throws {
        let r = try await runLoopback(transport: Self.transport,
                                connections: [[.fg(FGClientSettings(appID: 1, intervalSeconds: 0.05)),
                                               .bg(BGClientSettings(appID: 2, chunkBytes: 262_144, depth: 4))]],
                                seconds: 1.5)
        try PlainLoopbackTests.checkRun(r, fgApp: 1, bgApp: 2, minRequests: 10, variant: .intnw, chunkBytes: 262_144)
        #expect(r.server.connections == 1)
    }

    @Test("an IROB that is not exactly one toy message is a protocol violation")
    func irobFraming() async throws {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: Self.transport.options)
        let accepted = try await listener.accept()
        let conn = IntNWConnection(socket: accepted, peer: "test", closeTimeoutSeconds: 0.5)
        // Two messages in one IROB.
        let two = ToyHeader(kind: .fgRequest, appID: 1, sequence: 0, payloadLength: 0).encoded
            + ToyHeader(kind: .fgRequest, appID: 1, sequence: 1, payloadLength: 0).encoded
        try await client.send(two, labels: .foreground)
        let received = try await onThread { () -> ToyAppError? in
            do throws(ToyAppError) {
                _ = try conn.receive()
                return nil
            } catch {
                return error
            }
        }
        guard case .protocolViolation(let why) = received else {
            Issue.record("expected a protocol violation, got \(String(describing: received))")
            return
        }
        #expect(why.contains("holds 48 bytes") && why.contains("says 24"))
        await client.close(timeoutSeconds: 0.5)
        try await onThread { conn.close() }
    }

    /// Catches: apps whose IntNW calls need a thread of Swift's shared cooperative pool. Every pool
    /// thread is held by a blocking task (as a test doing socket calls once did) while a server and
    /// a client exchange a request and its answer through the IntNW transport; with the calls on
    /// the pool they stalled until the pool came back, on the apps' own executor they complete.
    static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
