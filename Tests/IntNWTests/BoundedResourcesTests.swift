import Foundation
import Testing
@testable import IntNW
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14's bounds on what one client can make the server hold: the handshake and idle
/// timeouts of connections, and the global receive-memory cap over all sessions. Probes run
/// against the real listener on loopback; blocking socket calls run off the cooperative pool.
@Suite("Server resource bounds: timeouts and the global receive-memory cap", .serialized)
struct BoundedResourcesTests {
    typealias H = HostileSessionTests

    /// Catches: a join that stops after the challenge (or a connection that never says HELLO)
    /// staying open past the handshake timeout.
    @Test("a connection that does not finish its attach is closed after the handshake timeout")
    func handshakeTimeout() async throws {
        var opts = ListenerOptions()
        opts.helloTimeoutSeconds = 0.5
        let server = try LoopbackServer(options: opts, echo: false)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: H.clientOptions())
        let victim = client.sessionID
        let r = try await offPool { () -> (silent: (Bool, Double), join: (Int, Bool, Double)) in
            let t0 = Date()
            guard let silent = RawPeer.connect(port), let join = RawPeer.connect(port) else { return ((false, 0), (0, false, 0)) }
            defer { close(silent); close(join) }
            RawPeer.send(join, [RawPeer.hello(victim, network: 3), .auth(.join(nonce: AttachAuth.nonce()))])
            let challenged = RawPeer.read(join, stopAfter: 2, timeoutSeconds: 2)
            let s = RawPeer.read(silent, timeoutSeconds: 3)
            let sAt = Date().timeIntervalSince(t0)
            let j = RawPeer.read(join, timeoutSeconds: 3)
            return ((s.closed, sAt), (challenged.frames.count, j.closed, Date().timeIntervalSince(t0)))
        }
        _ = await client.close(timeoutSeconds: 0.5)
        #expect(r.silent.0, "a connection that never sent HELLO stayed open")
        #expect(r.join.0 == 2, "the join was not answered with HELLO + challenge")
        #expect(r.join.1, "a join without its proof stayed open")
        // Closed by the timeout, not by the end of the 3 s read.
        #expect(r.silent.1 < 2.5 && r.join.2 < 2.5, "closed after \(r.silent.1) s / \(r.join.2) s")
        #expect(listener.pendingConnectionCount == 0)
    }

    /// Catches: attached connections without an idle timeout (slowloris sessions held forever),
    /// and a client that does not keep an idle session alive against that timeout.
    @Test("a silent attached connection is closed after the idle timeout; an idle client's keepalives keep its own")
    func idleTimeout() async throws {
        var opts = ListenerOptions()
        opts.connectionIdleTimeoutSeconds = 1
        opts.session.maintenanceIntervalMilliseconds = 100
        let server = try LoopbackServer(options: opts)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)
        var copts = H.clientOptions()
        copts.keepaliveIntervalSeconds = 0.3
        copts.maintenanceIntervalMilliseconds = 100
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: copts)
        _ = try await H.roundTrip(client, 1)
        let connectionsBefore = client.session.loop.withLock { Set(client.session.conns.all.map(\.id)) }

        // A session attached and then silent.
        let silent = try await offPool { () -> (attached: Bool, closed: Bool, after: Double) in
            guard let fd = RawPeer.connect(port) else { return (false, false, 0) }
            defer { close(fd) }
            RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), H.throwawayKeyShare()])
            let attached = RawPeer.read(fd, stopAfter: 2).frames.count == 2
            let t0 = Date()
            let r = RawPeer.read(fd, timeoutSeconds: 4)
            return (attached, r.closed, Date().timeIntervalSince(t0))
        }
        #expect(silent.attached)
        #expect(silent.closed && silent.after > 0.8 && silent.after < 3.5, "silent connection: closed \(silent.closed) after \(silent.after) s")

        // The legitimate client, idle all that time (over 2 idle timeouts), kept its connections.
        let connectionsAfter = client.session.loop.withLock { Set(client.session.conns.all.map(\.id)) }
        #expect(connectionsAfter == connectionsBefore, "an idle client's connections were replaced: \(connectionsBefore) -> \(connectionsAfter)")
        _ = try await H.roundTrip(client, 2)
        _ = await client.close(timeoutSeconds: 1)
    }

    /// Catches: a per-session bound without a global one (many sessions, each within its own
    /// limit, together past any cap), and partial IROBs of a departed client pinning memory.
    @Test("sessions together never hold more than the global receive-memory cap; memory comes back when they leave")
    func globalReceiveMemoryCap() async throws {
        var opts = ListenerOptions()
        opts.receiveMemoryLimitBytes = 16 << 20
        let server = try LoopbackServer(options: opts)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)
        let baseline = listener.receiveMemory.used

        // Four sessions from four addresses, each beginning two 3 MiB IROBs (24 MiB asked in all,
        // each session far within its own 64 MiB bound) and sending 64 KiB of each.
        let probe = try await offPool { () -> (fds: [Int32], refused: Int) in
            var fds: [Int32] = []
            var refused = 0
            for a in 0..<4 {
                guard let fd = RawPeer.connect(port, from: "127.0.0.\(10 + a)") else { continue }
                var tv = timeval(tv_sec: 2, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), H.throwawayKeyShare()])
                guard RawPeer.read(fd, stopAfter: 2).frames.count == 2 else { close(fd); continue }
                var frames: [Frame] = []
                for i in 1...2 {
                    frames.append(.beginIROB(BeginIROB(id: IROBID(UInt64(i)), labels: .none, length: 3 << 20, dependencies: .explicit([]))))
                    frames.append(.data(DataChunk(id: IROBID(UInt64(i)), offset: 0, bytes: [UInt8](repeating: 7, count: 64 << 10))))
                }
                RawPeer.send(fd, frames)
                // The server closes a connection whose BEGIN_IROB would pass the cap.
                if RawPeer.read(fd, timeoutSeconds: 1).closed { refused += 1; close(fd) } else { fds.append(fd) }
            }
            return (fds, refused)
        }
        let during = listener.receiveMemory
        #expect(during.peak <= during.limit, "peak \(during.peak) B over the \(during.limit) B cap")
        // Two sessions fit (12 MiB and their read buffers); the third and fourth pass the cap.
        #expect(probe.refused == 2 && probe.fds.count == 2, "\(probe.refused) refused, \(probe.fds.count) kept")

        // A legitimate client is still served meanwhile.
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: H.clientOptions())
        _ = try await H.roundTrip(client, 3)
        _ = await client.close(timeoutSeconds: 1)

        // The probe leaves: what its sessions held comes back (their partial IROBs are dropped).
        for fd in probe.fds { close(fd) }
        let deadline = Date().addingTimeInterval(5)
        while listener.receiveMemory.used > baseline + (1 << 20) && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        let after = listener.receiveMemory
        print("receive-memory probe: peak \(during.peak) B under a \(during.limit) B cap, \(probe.refused) of 4 sessions refused, \(after.used) B held after they left (baseline \(baseline) B)")
        #expect(after.used <= baseline + (1 << 20), "\(after.used) B still charged after the probe left")
    }

    /// Catches: memory a departed client pinned at the global cap locking every other session out.
    /// IROBs that are complete but cannot be released (an earlier id never came) were acknowledged,
    /// so their session keeps them after its last connection went, charged to the global cap until
    /// it expires (120 s): four such sessions of 3 MiB under a 16 MiB cap refused another
    /// session's 3 MiB BEGIN_IROB. Now detached sessions holding memory make room (longest detached
    /// first) before a live session's IROB is refused.
    @Test("complete but unreleasable IROBs of departed clients do not lock others out of the global cap")
    func pinnedMemoryOfDepartedClients() async throws {
        var opts = ListenerOptions()
        opts.receiveMemoryLimitBytes = 16 << 20
        let server = try LoopbackServer(options: opts)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)
        // Four sessions, each completing IROB 2 (3 MiB, after all earlier ones) without IROB 1,
        // then leaving; each got its ACK (the server holds the bytes for good).
        let pinned = try await offPool { () -> Int in
            var acked = 0
            let length = UInt32(3 << 20)
            for a in 0..<4 {
                guard let fd = RawPeer.connect(port, from: "127.0.0.\(50 + a)") else { continue }
                defer { close(fd) }
                var tv = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), H.throwawayKeyShare()])
                guard RawPeer.read(fd, stopAfter: 2).frames.count == 2 else { continue }
                var frames: [Frame] = [.beginIROB(BeginIROB(id: IROBID(2), labels: .none, length: length, dependencies: .allEarlier))]
                var off: UInt32 = 0
                while off < length {
                    let n = min(UInt32(256 << 10), length - off)
                    frames.append(.data(DataChunk(id: IROBID(2), offset: off, bytes: [UInt8](repeating: 9, count: Int(n)))))
                    off += n
                }
                RawPeer.send(fd, frames)
                if RawPeer.read(fd, stopAfter: 1, timeoutSeconds: 5).frames.contains(where: { if case .ack = $0 { true } else { false } }) { acked += 1 }
            }
            return acked
        }
        #expect(pinned == 4)
        let held = listener.receiveMemory
        // A new client's 3 MiB message (with its arrival bitmap 3.4 MiB): it needs room that only the departed sessions hold.
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: H.clientOptions())
        let message = [UInt8](repeating: 3, count: 3 << 20)
        let t0 = Date()
        try await client.send(message)
        let reply = try await client.receive()
        let took = Date().timeIntervalSince(t0)
        _ = await client.close(timeoutSeconds: 1)
        let after = listener.receiveMemory
        print("pinned-memory probe: 4 departed sessions held \(held.used) B of a \(held.limit) B cap; a new client's 3 MiB message echoed in "
              + "\(String(format: "%.3f", took)) s; \(after.used) B held afterwards, peak \(after.peak) B")
        #expect(reply.bytes == message)
        #expect(took < 5, "the new client's message took \(took) s")
        #expect(after.peak <= after.limit)
    }

    /// Catches: reassembly whose cost grows with the fragmentation of an IROB (a sorted range list
    /// made one-byte DATA frames at descending offsets quadratic), run on the loop thread every
    /// session of the listener shares: 1.4 MiB of such input blocked it for 10 s. Also catches one
    /// connection's loop pass holding that thread for long (the pass budget of 64 frames, or a read
    /// buffer grown element by element: 27 ms per 128 KiB read in a debug build).
    ///
    /// The other session's requests are timed before the probe (its baseline in this run, on this
    /// machine) and while it runs; "delayed" is the slowest request during the probe against that
    /// baseline. Numbers of record: docs/wire-protocol.md, "Threat model".
    @Test("1.4 MiB of one-byte DATA at descending offsets does not hold up another session")
    func descendingOffsets() async throws {
        let server = try LoopbackServer()
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: H.clientOptions())
        _ = try await H.roundTrip(client, 0)

        // Baseline: the same session's requests, one after the other, for 0.5 s without the probe.
        var baseline: [Double] = []
        let b0 = Date()
        while Date().timeIntervalSince(b0) < 0.5 { baseline.append(try await H.roundTrip(client, UInt8(baseline.count & 0xFF))) }
        let baselinePass = listener.core.loop.withLock { defer { listener.core.loop.resetPassStats() }; return listener.core.loop.longestPassNs }
        let attachPass = LockedValue(UInt64(0))

        // The probe: one IROB, then its bytes one per DATA frame from the last offset down.
        let frameBytes = Frame.data(DataChunk(id: IROBID(1), offset: 0, bytes: [1])).encodedLength
        let length = UInt32((1_400 << 10) / frameBytes)
        let done = DoneFlag()
        // On a thread of its own (it blocks on its socket), awaited from a task.
        let attack = Task { try await offPool { () -> (sent: Int, acked: Bool) in
            defer { done.set() }
            guard let fd = RawPeer.connect(port, from: "127.0.0.20") else { return (0, false) }
            defer { close(fd) }
            RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), H.throwawayKeyShare()])
            guard RawPeer.read(fd, stopAfter: 2).frames.count == 2 else { return (0, false) }
            // The attach's passes (its key agreement) apart from the data's.
            attachPass.set(listener.core.loop.withLock { defer { listener.core.loop.resetPassStats() }; return listener.core.loop.longestPassNs })
            // Encoded straight into one buffer (cheap: the probe must not load the machine itself).
            var bytes = Frame.beginIROB(BeginIROB(id: IROBID(1), labels: .none, length: length, dependencies: .explicit([]))).encoded()
            let start = bytes.count
            bytes += [UInt8](repeating: 0, count: Int(length) * frameBytes)
            bytes.withUnsafeMutableBytes { b in
                var at = start
                for off in stride(from: Int(length) - 1, through: 0, by: -1) {
                    let h = FrameEncoder.writeDataHeader(id: IROBID(1), offset: UInt32(off), payloadLength: 1, into: b, at: at)
                    b[at + h] = UInt8(off & 0xFF)
                    at += h + 1
                }
            }
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            let acked = RawPeer.read(fd, stopAfter: 1, timeoutSeconds: 30).frames.contains { if case .ack = $0 { true } else { false } }
            return (bytes.count, acked)
        } }
        // Meanwhile the same session's requests, one after the other, until the probe's IROB is
        // ACKed (and at least 20).
        var during: [(at: Double, rtt: Double)] = []
        var whileRunning = 0
        let t0 = Date()
        while Date().timeIntervalSince(t0) < 30 {
            let at = Date().timeIntervalSince(t0)
            if !done.isSet { whileRunning += 1 }
            during.append((at, try await H.roundTrip(client, UInt8(during.count & 0xFF))))
            if during.count >= 20 && done.isSet { break }
        }
        let r = try await attack.value
        let dataPass = listener.core.loop.withLock { listener.core.loop.longestPassNs }
        _ = await client.close(timeoutSeconds: 1)

        func ms(_ s: Double) -> String { String(format: "%.1f", s * 1000) }
        func median(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.sorted()[v.count / 2] }
        let worst = during.map(\.rtt).max() ?? 0
        let slowest = during.sorted { $0.rtt > $1.rtt }.prefix(3).map { "\(ms($0.rtt)) ms at +\(ms($0.at)) ms" }
        print("descending-offset probe: \(r.sent) B of one-byte DATA frames (IROB of \(length) B), ACKed: \(r.acked); other session "
              + "without the probe: \(baseline.count) requests, median \(ms(median(baseline))) ms, slowest \(ms(baseline.max() ?? 0)) ms; "
              + "during it: \(during.count) requests (\(whileRunning) begun before its ACK), median \(ms(median(during.map(\.rtt)))) ms, "
              + "slowest \(ms(worst)) ms (\(slowest.joined(separator: ", "))), delay over the baseline median \(ms(worst - median(baseline))) ms; "
              + "longest loop pass: baseline \(ms(Double(baselinePass) / 1e9)) ms, probe's attach \(ms(Double(attachPass.get()) / 1e9)) ms, "
              + "its data \(ms(Double(dataPass) / 1e9)) ms")
        #expect(r.acked, "the probe's IROB was not completed")
        #expect(r.sent >= 1_400 << 10)
        // Requests really overlapped the probe (else the numbers say nothing).
        #expect(whileRunning >= 5, "only \(whileRunning) requests overlapped the probe")
        // Generous bounds for a loaded debug build (the quadratic reassembly took 10 s); the
        // acceptance number (50 ms) is measured by hand in debug and release builds.
        #expect(worst < 1.0, "another session's request took \(worst) s")
        #expect(dataPass < 250_000_000, "one loop pass of the probe held the shared thread \(ms(Double(dataPass) / 1e9)) ms")
    }
}

final class LockedValue<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
    func update(_ body: (inout T) -> Void) { lock.lock(); body(&value); lock.unlock() }
}

final class DoneFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() { lock.lock(); flag = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}
