import Foundation
import Testing
@testable import IntNW
#if canImport(Glibc)
import Glibc
#endif

/// No silent loss when the server loses a session (issue 14, item 7): after a server restart in
/// the middle of a stream, and after an outage longer than the server's idle timeout, every IROB
/// the client sent was either delivered to the server's application exactly once or reported
/// undelivered to the sending application (`close`'s report, and `sessionLost` on its calls);
/// nothing is both missing and reported flushed, and the client never carries on against a fresh
/// server session.
@Suite("Session loss: every IROB delivered once or reported undelivered", .serialized)
struct SessionLossTests {
    typealias H = HostileSessionTests

    /// What the server's application received, by sequence number (in the message bytes).
    final class Received: @unchecked Sendable {
        private let lock = NSLock()
        private var seqs: [UInt32] = []
        func add(_ s: UInt32) { lock.lock(); seqs.append(s); lock.unlock() }
        var all: [UInt32] { lock.lock(); defer { lock.unlock() }; return seqs }
    }

    static func message(_ seq: UInt32) -> [UInt8] {
        withUnsafeBytes(of: seq.bigEndian) { Array($0) } + [UInt8](repeating: UInt8(truncatingIfNeeded: seq), count: 1000)
    }

    static func collect(_ listener: MultiSocketListener, into received: Received) -> Task<Void, Never> {
        Task {
            while let s = try? await listener.accept() {
                Task {
                    while let m = try? await s.receive() {
                        received.add(m.bytes.prefix(4).reduce(0) { $0 << 8 | UInt32($1) })
                    }
                }
            }
        }
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Sends `count` messages (pausing every 10 so the stream spans the event), calling `event`
    /// once `eventAfter` were sent; returns the IROB id of each sequence number that `send`
    /// accepted, and the error that stopped sending, if one did.
    static func stream(_ client: MultiSocket, count: UInt32, eventAfter: UInt32,
                       event: () async throws -> Void) async throws -> (ids: [UInt32: IROBID], error: IntNWError?) {
        var ids: [UInt32: IROBID] = [:]
        for seq in 0..<count {
            if seq == eventAfter { try await event() }
            do {
                ids[seq] = try await client.send(Self.message(seq), dependsOn: .none)
            } catch let e as IntNWError {
                return (ids, e)
            }
            if seq % 10 == 9 { try await Task.sleep(nanoseconds: 5_000_000) }
        }
        return (ids, nil)
    }

    /// Keeps sending (sequence numbers from 10,000 on) until a call fails, for at most 10 s.
    static func untilLost(_ client: MultiSocket, _ sent: (ids: [UInt32: IROBID], error: IntNWError?)) async throws -> ([UInt32: IROBID], IntNWError?) {
        var ids = sent.ids
        var lost = sent.error
        var seq: UInt32 = 10_000
        let deadline = Date().addingTimeInterval(10)
        while lost == nil && Date() < deadline {
            do { ids[seq] = try await client.send(Self.message(seq), dependsOn: .none) } catch let e as IntNWError { lost = e }
            seq += 1
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        return (ids, lost)
    }

    /// The verdict: each accepted IROB delivered exactly once, or reported undelivered.
    static func check(ids: [UInt32: IROBID], received: [UInt32], report: CloseReport, label: String) {
        var counts: [UInt32: Int] = [:]
        for s in received { counts[s, default: 0] += 1 }
        let duplicated = counts.filter { $0.value > 1 }.keys.sorted()
        #expect(duplicated.isEmpty, "\(label): delivered more than once: \(duplicated)")
        let undelivered = Set(report.undelivered)
        let lost = ids.filter { counts[$0.key] == nil && !undelivered.contains($0.value) }.keys.sorted()
        #expect(lost.isEmpty, "\(label): neither delivered nor reported undelivered: \(lost)")
        let unknown = received.filter { ids[$0] == nil }
        #expect(unknown.isEmpty, "\(label): delivered but never accepted by send: \(unknown)")
        #expect(!report.flushed, "\(label): the close reported everything flushed")
        print("session loss (\(label)): \(ids.count) IROBs accepted, \(counts.count) delivered, \(report.undelivered.count) reported undelivered")
    }

    /// Catches: a client that meets a restarted server with a fresh session (release floor back at
    /// 1, what the old one ACKed never released) and reports `close` as flushed.
    @Test("server restart in the middle of a stream")
    func serverRestart() async throws {
        var opts = ListenerOptions()
        opts.helloTimeoutSeconds = 2
        let first = try MultiSocketListener(port: 0, address: "127.0.0.1", options: opts)
        let port = first.localEndpoint.port
        let received = Received()
        let collector = Self.collect(first, into: received)
        defer { collector.cancel() }
        var copts = H.clientOptions()
        copts.reconnectDelaySeconds = 0.05
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: copts)
        var second: MultiSocketListener?
        let sent = try await Self.stream(client, count: 400, eventAfter: 200) {
            // The server process dies: its connections reset, no GOODBYE, the session table is
            // gone; a new server listens on the same port.
            first.core.loop.withLock {
                for s in Array(first.core.sessions.values) {
                    for c in s.conns.all { s.connectionFailed(c, reason: "simulated crash", nowNs: Self.now()) }
                    s.fail(.closed, nowNs: Self.now())
                }
            }
            first.close()
            second = try MultiSocketListener(port: port, address: "127.0.0.1", options: opts)
        }
        // Later calls fail loudly (the reconnect met a server without the session).
        let (ids, lost) = try await Self.untilLost(client, sent)
        #expect(lost == .sessionLost("the server no longer knows this session (it restarted or expired it)"), "\(String(describing: lost))")
        let report = await client.close(timeoutSeconds: 1)
        Self.check(ids: ids, received: received.all, report: report, label: "server restart")
        #expect(second?.sessionCount == 0, "the restarted server made a session for the old id")
        second?.close()
    }

    /// Catches: a server that expires a session after its idle timeout and then meets the
    /// returning client with a fresh session under the same id.
    @Test("an outage longer than the server's idle timeout")
    func outageBeyondIdleTimeout() async throws {
        var opts = ListenerOptions()
        opts.sessionIdleTimeoutSeconds = 0.5
        opts.session.maintenanceIntervalMilliseconds = 100
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1", options: opts)
        defer { listener.close() }
        let received = Received()
        let collector = Self.collect(listener, into: received)
        defer { collector.cancel() }
        var copts = H.clientOptions()
        copts.reconnectDelaySeconds = 0.05
        let networks = copts.staticNetworks!
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: copts)
        let sent = try await Self.stream(client, count: 300, eventAfter: 150) {
            // Every network goes away (the client keeps sending: IROBs queue), for longer than
            // the server keeps a session without connections; then the networks come back.
            client.session.loop.withLock { client.session.networksChanged([], nowNs: Self.now()) }
            let gone = Date()
            while listener.sessionCount > 0 && Date().timeIntervalSince(gone) < 5 { try await Task.sleep(nanoseconds: 20_000_000) }
            #expect(listener.sessionCount == 0, "the server did not expire the session")
            client.session.loop.withLock {
                client.session.networksChanged(networks, nowNs: Self.now())
                client.session.loop.wakeLocked()
            }
        }
        let (ids, lost) = try await Self.untilLost(client, sent)
        #expect(lost == .sessionLost("the server no longer knows this session (it restarted or expired it)"), "\(String(describing: lost))")
        let report = await client.close(timeoutSeconds: 1)
        Self.check(ids: ids, received: received.all, report: report, label: "outage beyond the idle timeout")
        #expect(listener.sessionCount == 0, "the server made a fresh session for the returning client")
    }
}
