import Testing
import Foundation
@testable import IntNW
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The probes of issue 14 replayed against the real server on loopback, bounded in time: session
/// hijack, session-table lockout with throwaway HELLOs and slowloris sessions, and a server that
/// no longer knows the session. Timing goals are measured with generous bounds here; the numbers
/// of record come from the same probes run by hand (docs/wire-protocol.md, "Threat model").
@Suite("Hostile clients against the server's session layer", .serialized)
struct HostileSessionTests {
    /// Interface names of their own: multisockets of one process coordinate foreground/background
    /// by interface name, and these probes must not hold up other suites' apps running alongside.
    static func clientOptions(wifi: String = "127.0.0.1", cellular: String = "127.0.0.2") -> MultiSocketOptions {
        var o = MultiSocketOptions(staticNetworks: [
            LocalNetwork(networkID: 1, kind: .wifi, interfaceName: "hs-wifi", address: IPv4Endpoint.parse(wifi)!),
            LocalNetwork(networkID: 2, kind: .cellular, interfaceName: "hs-cell", address: IPv4Endpoint.parse(cellular)!),
        ], connectTimeoutSeconds: 5)
        o.sharedSchedulingSegment = .processLocal
        return o
    }

    /// One client key pair for every throwaway attach of the probes: the server still does its own
    /// key generation and key agreement for each one (what the probe costs it), the test does not
    /// pay an X25519 operation per connection as well. Each attach has a fresh nonce.
    static let throwawayPublicKey = Array(AttachAuth.newKeyPair().publicKey.rawRepresentation)
    static func throwawayKeyShare() -> Frame { .auth(.keyShare(publicKey: throwawayPublicKey, nonce: AttachAuth.nonce())) }

    /// Sends one request and waits for its echo; the round trip in seconds.
    static func roundTrip(_ client: MultiSocket, _ byte: UInt8) async throws -> Double {
        let t0 = Date()
        try await client.send([byte])
        let reply = try await client.receive()
        #expect(reply.bytes == [byte])
        return Date().timeIntervalSince(t0)
    }

    @Test("hijack with a known session id is refused; the victim completes all its requests")
    func hijack() async throws {
        var opts = ListenerOptions()
        opts.helloTimeoutSeconds = 2
        let server = try LoopbackServer(options: opts)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: Self.clientOptions())
        for i in 0..<10 { _ = try await Self.roundTrip(client, UInt8(i)) }
        let victim = client.sessionID

        // The probes block on sockets: off the cooperative pool (see `offPool`).
        let outcomes = try await offPool { () -> [String] in
            var bad: [String] = []
            // A key share naming the victim's session (on each of its networks and others): refused.
            for nid: UInt32 in [1, 2, 3] {
                guard let fd = RawPeer.connect(port) else { bad.append("connect failed"); continue }
                defer { close(fd) }
                RawPeer.send(fd, [RawPeer.hello(victim, network: nid), Self.throwawayKeyShare()])
                let r = RawPeer.read(fd)
                if !(r.closed && r.frames.isEmpty) { bad.append("key share on network \(nid) answered: \(r.frames)") }
            }
            // A join with a forged proof: the server answers HELLO + challenge, then closes on the proof.
            if let fd = RawPeer.connect(port) {
                defer { close(fd) }
                RawPeer.send(fd, [RawPeer.hello(victim, network: 1), .auth(.join(nonce: AttachAuth.nonce()))])
                let first = RawPeer.read(fd, stopAfter: 2)
                if first.frames.count != 2 || first.closed { bad.append("join not answered with HELLO + challenge: \(first)") }
                if case .auth(.challenge) = first.frames.last {} else { bad.append("no challenge: \(first.frames)") }
                RawPeer.send(fd, [.auth(.proof((0..<Wire.authProofLength).map { _ in UInt8.random(in: 0...255) }))])
                let after = RawPeer.read(fd)
                if !(after.closed && after.frames.isEmpty) { bad.append("forged proof not refused: \(after)") }
            } else {
                bad.append("connect failed")
            }
            // Version 1 (no authentication) and a HELLO without AUTH: refused.
            for frames in [[RawPeer.hello(victim, network: 1, version: 1), Self.throwawayKeyShare()],
                           [RawPeer.hello(victim, network: 1), Frame.downInterface(networkID: 2)]] {
                guard let fd = RawPeer.connect(port) else { bad.append("connect failed"); continue }
                defer { close(fd) }
                RawPeer.send(fd, frames)
                let r = RawPeer.read(fd)
                if !(r.closed && r.frames.isEmpty) { bad.append("\(frames) answered: \(r.frames)") }
            }
            return bad
        }
        #expect(outcomes.isEmpty, "\(outcomes)")
        // The victim never noticed: every request is answered, on its own session only.
        for i in 0..<50 { _ = try await Self.roundTrip(client, UInt8(100 + i)) }
        #expect(listener.sessionCount == 1)
        _ = await client.close(timeoutSeconds: 1)
    }

    /// Opens `count` sessions from `source` with a valid key share and returns the connections
    /// on which the server answered (its HELLO + key share: a session-table entry was made).
    /// In batches of `batch` (keep it below the per-address bound: a session evicted before the
    /// server flushed its answer would not count), so the probe waits for the server instead of
    /// piling up the backlog.
    /// `pause` seconds between batches spread a small probe over time, so clients started
    /// meanwhile meet it at every stage (table filling, bounds reached, evictions).
    static func throwawaySessions(port: UInt16, from source: String, count: Int, batch size: Int,
                                  pause: Double = 0, afterBatch: () -> Void = {}) -> (answered: Int, fds: [Int32]) {
        var answered = 0
        var fds: [Int32] = []
        var left = count
        while left > 0 {
            var batch: [Int32] = []
            for _ in 0..<min(size, left) {
                guard let fd = RawPeer.connect(port, from: source) else { continue }
                RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), Self.throwawayKeyShare()])
                batch.append(fd)
            }
            left -= min(size, left)
            answered += batch.filter { RawPeer.read($0, stopAfter: 2).frames.count == 2 }.count
            fds += batch
            afterBatch()
            if pause > 0 && left > 0 { usleep(UInt32(pause * 1e6)) }
        }
        return (answered, fds)
    }

    struct ServedFailure: Error { var text: String }

    /// What a new legitimate client saw while a flood ran: the time from starting its connect to
    /// the echo of its first request (attach + first round trip), for each client started.
    struct ServedDuring {
        var seconds: [Double] = []
        var failures: [String] = []
        var worst: Double { seconds.max() ?? 0 }
        var summary: String {
            let sorted = seconds.sorted()
            let median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
            return "\(seconds.count) new clients served during it (median \(String(format: "%.3f", median)) s, slowest "
                + "\(String(format: "%.3f", worst)) s), \(failures.count) failed"
        }
    }

    /// Runs `flood` (blocking socket calls) on a thread of its own; the flood calls `tick` after
    /// each batch of its connections, and `tick` starts a new legitimate client (each from
    /// addresses of its own, 127.0.1.N and 127.0.2.N: clients that overlap on a loaded machine
    /// must not meet the tight per-address bound of the reduced probe among themselves) whenever `interval` seconds passed since the last one, without waiting for it:
    /// each connects, sends one request, waits for its echo and closes. Started from the flood's
    /// own progress, clients meet every stage of it (table filling, bounds reached, evictions)
    /// however fast it runs.
    static func servedDuring<T: Sendable>(port: UInt16, interval: Double,
                                          _ flood: @escaping @Sendable (_ tick: @escaping @Sendable () -> Void) throws -> T) async throws -> (result: T, served: ServedDuring) {
        let clients = LockedValue<(last: Date, tasks: [Task<Result<Double, ServedFailure>, Never>])>((.distantPast, []))
        let tick: @Sendable () -> Void = {
            let now = Date()
            var start = false
            clients.update { if now.timeIntervalSince($0.last) >= interval { $0.last = now; start = true } }
            guard start else { return }
            let byte = UInt8.random(in: 0...255)
            var k = 0
            clients.update { k = $0.tasks.count % 250 + 1 }
            let task = Task { () -> Result<Double, ServedFailure> in
                let t0 = Date()
                do {
                    let client = try await MultiSocket.connect(to: "127.0.0.1", port: port,
                                                               options: Self.clientOptions(wifi: "127.0.1.\(k)", cellular: "127.0.2.\(k)"))
                    try await client.send([byte])
                    let reply = try await client.receive()
                    let took = Date().timeIntervalSince(t0)
                    _ = await client.close(timeoutSeconds: 0.5)
                    return reply.bytes == [byte] ? .success(took) : .failure(ServedFailure(text: "wrong echo \(reply.bytes)"))
                } catch {
                    return .failure(ServedFailure(text: "after \(String(format: "%.3f", Date().timeIntervalSince(t0))) s: \(error)"))
                }
            }
            clients.update { $0.tasks.append(task) }
        }
        let result = try await offPool { tick(); return try flood(tick) }
        var served = ServedDuring()
        for t in clients.get().tasks {
            switch await t.value {
            case .success(let s): served.seconds.append(s)
            case .failure(let f): served.failures.append(f.text)
            }
        }
        return (result, served)
    }

    /// The lockout probe of issue 14. In `make test` it runs at reduced scale against tight bounds
    /// (several times both the per-address and the global bound, from four addresses, so both
    /// bounds evict); `INTNW_HOSTILE_FULL=1` runs the acceptance scale against the default bounds
    /// (1024 throwaway sessions and 300 slowloris sessions from one address). While each flood
    /// runs, new legitimate clients are started every 25 ms (50 ms at reduced scale) and timed
    /// (`servedDuring`).
    ///
    /// Catches: a session table that fills up (new clients refused until the idle timeout), a
    /// legitimate session evicted by the flood, and a server so busy with the flood's attaches
    /// (key agreements on the loop thread every session shares) that new clients wait seconds.
    @Test("throwaway HELLOs and slowloris sessions beyond every session bound: a new client is served throughout")
    func sessionTableLockout() async throws {
        let full = ProcessInfo.processInfo.environment["INTNW_HOSTILE_FULL"] == "1"
        var opts = ListenerOptions()
        if !full {
            // Small, so the probe exceeds both bounds several times for few key agreements (two
            // X25519 operations each on the server).
            opts.maxSessionsPerPeer = 4
            opts.maxSessions = 12
        }
        // The floods met by new clients come from other addresses than the clients': from a
        // client's own address, a flood of new sessions evicts a new client's
        // session before its first request arrives (docs/wire-protocol.md, "Threat model"); the
        // per-address bound cannot tell them apart. A slowloris flood from the clients' own
        // address follows, with a new client after it.
        let sources = full ? ["127.0.0.9"] : ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]
        let throwawayPerSource = full ? 1024 : 6 * opts.maxSessionsPerPeer
        let slowlorisCount = full ? 300 : 6 * opts.maxSessionsPerPeer
        let batch = min(32, opts.maxSessionsPerPeer / 2)
        // Each flood takes well under a second: a new client every 25 ms at full scale (a flood
        // of 300 takes about 0.2 s); the reduced one is paced (batches of 2 sessions 20 ms apart)
        // and met by a new client every 50 ms, so several clients meet every flood.
        let pause = full ? 0 : 0.02
        let interval = full ? 0.025 : 0.05
        let server = try LoopbackServer(options: opts)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)

        // Sessions opened with a valid key share and abandoned as soon as the server made them
        // (its HELLO + key share arrived): each one really took a session-table entry.
        let (made, duringThrowaway) = try await Self.servedDuring(port: port, interval: interval) { tick -> Int in
            var made = 0
            for source in sources {
                let r = Self.throwawaySessions(port: port, from: source, count: throwawayPerSource, batch: batch, pause: pause, afterBatch: tick)
                for fd in r.fds { close(fd) }
                made += r.answered
            }
            return made
        }
        #expect(made == sources.count * throwawayPerSource, "the server made \(made) of \(sources.count * throwawayPerSource) throwaway sessions")
        // Both bounds held while the probe ran past them (each made session evicted an older one).
        #expect(listener.sessionCount <= opts.maxSessions)
        let first = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: Self.clientOptions())
        let afterThrowaway = try await Self.roundTrip(first, 1)
        _ = await first.close(timeoutSeconds: 1)

        // Sessions whose connection stays open and silent after the attach: each got its session
        // (evicting an older one beyond the bound). First from another address while new clients
        // come, then from the legitimate client's own address.
        let (slow, duringSlowloris) = try await Self.servedDuring(port: port, interval: interval) { tick in
            Self.throwawaySessions(port: port, from: sources[0], count: slowlorisCount, batch: batch, pause: pause, afterBatch: tick)
        }
        defer { for fd in slow.fds { close(fd) } }
        #expect(slow.answered == slowlorisCount)
        let own = try await offPool { Self.throwawaySessions(port: port, from: "127.0.0.1", count: slowlorisCount, batch: batch) }
        defer { for fd in own.fds { close(fd) } }
        #expect(own.answered == slowlorisCount)
        let t0 = Date()
        let second = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: Self.clientOptions())
        let afterSlowloris = try await Self.roundTrip(second, 2)
        let withConnect = Date().timeIntervalSince(t0)
        _ = await second.close(timeoutSeconds: 1)
        print("lockout probe (\(full ? "acceptance scale" : "reduced scale")): \(made) throwaway sessions: \(duringThrowaway.summary), "
              + "a request after it served in \(String(format: "%.3f", afterThrowaway)) s; \(slow.answered) slowloris sessions: "
              + "\(duringSlowloris.summary); after \(own.answered) more from the client's own address, a new client served in \(String(format: "%.3f", withConnect)) s "
              + "(request \(String(format: "%.3f", afterSlowloris)) s); \(listener.keyAgreements) key agreements")
        for (name, d) in [("throwaway", duringThrowaway), ("slowloris", duringSlowloris)] {
            #expect(d.failures.isEmpty, "legitimate clients failed during the \(name) flood: \(d.failures)")
            // The flood really overlapped some clients (else "throughout" was not measured).
            #expect(d.seconds.count >= 3, "only \(d.seconds.count) clients ran during the \(name) flood")
            // Generous bound for a loaded debug build (the acceptance number, 1 s, is measured by
            // hand); before the session bounds, new clients were refused for the idle timeout.
            #expect(d.worst < 3, "a new client during the \(name) flood took \(d.worst) s")
        }
        #expect(afterThrowaway < 3 && withConnect < 3)
        // Both bounds held after it all.
        for a in ["127.0.0.1"] + sources { #expect(listener.sessionCount(from: a) <= opts.maxSessionsPerPeer) }
        #expect(listener.sessionCount <= opts.maxSessions)
    }

    /// Catches: a global session bound that evicts the oldest unused session anywhere, so a flood of
    /// new sessions from a few addresses closes a legitimate client's new session (one session, an
    /// address of its own, its first request not yet sent). The flood's addresses hold the most
    /// sessions and must give them up instead. Deterministic: the client's session is the oldest
    /// unused one when the global bound is first reached.
    @Test("at the global session bound a flood from a few addresses gives up its own sessions, not a lone client's new one")
    func globalBoundEvictsFromTheHeaviestAddresses() async throws {
        var opts = ListenerOptions()
        opts.maxSessionsPerPeer = 4
        opts.maxSessions = 6
        let server = try LoopbackServer(options: opts, echo: false)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)
        let r = try await offPool { () -> (attached: Bool, flood: Int, acked: Bool, fds: [Int32]) in
            guard let fd = RawPeer.connect(port, from: "127.0.0.7") else { return (false, 0, false, []) }
            RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), Self.throwawayKeyShare()])
            let attached = RawPeer.read(fd, stopAfter: 2).frames.count == 2
            var fds = [fd]
            var flood = 0
            for source in ["127.0.0.3", "127.0.0.4"] {
                let t = Self.throwawaySessions(port: port, from: source, count: 10, batch: 2)
                flood += t.answered
                fds += t.fds
            }
            // The client's first request, after the flood: its session must still be there.
            RawPeer.send(fd, [.beginIROB(BeginIROB(id: IROBID(1), labels: .none, length: 1, dependencies: .allEarlier)),
                              .data(DataChunk(id: IROBID(1), offset: 0, bytes: [1])), .endIROB(id: IROBID(1), length: 1)])
            let acked = RawPeer.read(fd, stopAfter: 1).frames.contains { if case .ack = $0 { true } else { false } }
            return (attached, flood, acked, fds)
        }
        defer { for fd in r.fds { close(fd) } }
        #expect(r.attached && r.flood == 20, "attached \(r.attached), flood sessions made \(r.flood) of 20")
        #expect(listener.sessionCount(from: "127.0.0.7") == 1, "the lone client's session was evicted by the flood")
        #expect(r.acked, "the lone client's first request was not acknowledged")
        #expect(listener.sessionCount <= opts.maxSessions)
        for a in ["127.0.0.3", "127.0.0.4"] { #expect(listener.sessionCount(from: a) <= opts.maxSessionsPerPeer) }
    }

    /// Catches: a server that does its key agreement before it knows it has room, so a peer whose
    /// sessions are all in use still makes it spend two X25519 operations per refused attach.
    @Test("a peer at its bound with every session in use is refused before any key agreement")
    func refusedBeforeKeyAgreement() async throws {
        var opts = ListenerOptions()
        opts.maxSessionsPerPeer = 2
        let server = try LoopbackServer(options: opts, echo: false)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)
        let r = try await offPool { () -> (inUse: Int, refused: Bool, before: Int, after: Int) in
            // Two sessions that carry traffic (an IROB each) and stay attached: not evictable.
            var inUse: [Int32] = []
            for _ in 0..<2 {
                guard let fd = RawPeer.connect(port, from: "127.0.0.6") else { continue }
                RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), Self.throwawayKeyShare()])
                if RawPeer.read(fd, stopAfter: 2).frames.count == 2 {
                    RawPeer.send(fd, [.beginIROB(BeginIROB(id: IROBID(1), labels: .none, length: 1, dependencies: .allEarlier)),
                                   .data(DataChunk(id: IROBID(1), offset: 0, bytes: [1])), .endIROB(id: IROBID(1), length: 1)])
                    // Its ACK says the server took the IROB.
                    if RawPeer.read(fd, stopAfter: 1).frames.contains(where: { if case .ack = $0 { true } else { false } }) { inUse.append(fd) }
                }
            }
            defer { for fd in inUse { close(fd) } }
            let before = listener.keyAgreements
            guard let fd = RawPeer.connect(port, from: "127.0.0.6") else { return (inUse.count, false, before, -1) }
            defer { close(fd) }
            RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), Self.throwawayKeyShare()])
            let third = RawPeer.read(fd)
            return (inUse.count, third.closed && third.frames.isEmpty, before, listener.keyAgreements)
        }
        #expect(r.inUse == 2)
        #expect(r.refused, "a third session from the address was not refused")
        #expect(r.after == r.before, "the refused attach cost \(r.after - r.before) key agreements")
        #expect(r.before == 2)
    }

    @Test("a server that no longer knows the session: the client reports undelivered, never flushed")
    func unknownSessionIsReported() async throws {
        var opts = ListenerOptions()
        opts.helloTimeoutSeconds = 2
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1", options: opts)
        defer { listener.close() }
        var copts = Self.clientOptions()
        copts.reconnectDelaySeconds = 0.05
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: copts)
        let server = try await listener.accept()
        try await client.send([1])
        #expect(try await server.receive().bytes == [1])
        // Its ACK reached the client (else IROB 1 is rightly reported undelivered too: the client
        // cannot know the server's application took it).
        let ackDeadline = Date().addingTimeInterval(5)
        while client.session.loop.withLock({ client.session.sender.unackedCount }) > 0 && Date() < ackDeadline {
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        #expect(client.session.loop.withLock { client.session.sender.unackedCount } == 0)
        // The server loses the session without a word (a restart, or expiry after a long outage):
        // its connections reset, the session is gone from the table.
        let session = server.session
        listener.core.loop.withLock {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            let now = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
            for c in session.conns.all { session.connectionFailed(c, reason: "simulated restart", nowNs: now) }
            session.fail(.closed, nowNs: now)
        }
        var sent: IROBID?
        do {
            sent = try await client.send([2])
        } catch {
            #expect(error as? IntNWError == .sessionLost("the server no longer knows this session (it restarted or expired it)"))
        }
        // The client's reconnect meets a server without the session and fails loudly.
        await #expect(throws: IntNWError.self) { _ = try await client.receive() }
        let report = await client.close(timeoutSeconds: 1)
        #expect(!report.flushed)
        if let sent { #expect(report.undelivered == [sent], "\(report.undelivered)") }
    }
}
