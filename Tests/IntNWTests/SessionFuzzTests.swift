import Foundation
import Logging
import Testing
@testable import IntNW
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A seeded mutation fuzz of the server's session layer (the listener's attach handshake and the
/// session's frame handling), not only of the frame decoder (`FrameFuzzTests`): each case is one
/// hostile connection to a real listener on loopback that sends a *sequence* of frames -- HELLO,
/// AUTH, BEGIN_IROB, DATA, END_IROB, ACK, RESEND_REQUEST, DATA_CHECK, NEW/DOWN_INTERFACE, GOODBYE,
/// PING, PONG, extensions -- in wrong orders, repeated, with wrong ids, offsets and lengths, or
/// the bytes of such a sequence mutated. Every case ends with a PING (its nonce the case number)
/// and a shutdown of the client's sending side, so the server's verdict is observable: it answered
/// that PING (it accepted everything before it) or it closed the connection first, and its log
/// says why. A trap anywhere in the server ends the whole test process (that is the crash check).
///
/// `make test` runs 1,000 cases (a few seconds); `INTNW_FUZZ_CASES=N` runs more and
/// `INTNW_FUZZ_SEED=S` another sequence (the seed and case number of a failure reproduce it).
@Suite("Session-layer fuzz: hostile frame sequences against the real server", .serialized)
struct SessionFuzzTests {
    typealias H = HostileSessionTests

    // MARK: - What the server logged

    /// Collects the server's log records (every level), so a case's fate can be looked up.
    final class LogCapture: @unchecked Sendable {
        struct Record { var level: Logger.Level; var message: String; var metadata: [String: String] }
        private let lock = NSLock()
        private var records: [Record] = []
        func append(_ r: Record) { lock.lock(); records.append(r); lock.unlock() }
        func all() -> [Record] { lock.lock(); defer { lock.unlock() }; return records }
        /// The records so far, forgotten here (a long run does not rescan them for every case).
        func take() -> [Record] { lock.lock(); defer { records.removeAll(); lock.unlock() }; return records }
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            var m: [String: String] = [:]
            for (k, v) in self.metadata.merging(metadata ?? [:], uniquingKeysWith: { $1 }) { m[k] = "\(v)" }
            capture.append(.init(level: level, message: "\(message)", metadata: m))
        }
    }

    // MARK: - Cases

    /// What the server must do with a case.
    enum Expect: String {
        /// Every frame is allowed (if hostile): the server answers the final PING. Catches a server
        /// that drops a peer for valid input (an ACK for ids it never sent, DATA it already has, a
        /// DOWN_INTERFACE for a network it does not know ...).
        case accept
        /// One frame is invalid: the server closes the connection before the final PING, with a
        /// typed reason (a ProtocolError or an attach refusal). Catches a server that lets an
        /// invalid frame pass (it would answer the PING) or closes without saying why.
        case reject
        /// Mutated bytes: either outcome, but a close must have a logged reason.
        case either
    }

    struct Case {
        var bytes: [UInt8] = []
        var expect: Expect = .accept
        var steps: [String] = []
        /// Bytes up to the end of the first HELLO: mutations start after it, so the server's log
        /// still names the connection by the HELLO's interface name.
        var helloEnd = 0
        /// The case says GOODBYE: from then on the server's application may end the session
        /// (the echo server does once it has delivered everything) and close the connection
        /// without a word, so a silent close is an orderly end, not a failure.
        var saidGoodbye = false
        mutating func add(_ f: Frame, _ what: String? = nil) {
            if case .goodbye = f { saidGoodbye = true }
            bytes += f.encoded()
            if case .hello = f, helloEnd == 0 { helloEnd = bytes.count }
            steps.append(what ?? Self.name(f))
        }
        /// A frame the encoder would not produce (bad type, length field, ids): raw bytes.
        mutating func addRaw(length: UInt32, type: UInt8, body: [UInt8], _ what: String) {
            bytes += withUnsafeBytes(of: length.bigEndian) { Array($0) } + [type] + body
            steps.append(what)
        }
        mutating func invalid(_ f: Frame, _ what: String) {
            add(f, "INVALID " + what)
            expect = .reject
        }
        static func name(_ f: Frame) -> String {
            switch f {
            case .hello: "HELLO"
            case .beginIROB(let b): "BEGIN \(b.id.rawValue) len \(b.length)"
            case .data(let d): "DATA \(d.id.rawValue) @\(d.offset)+\(d.bytes.count)"
            case .endIROB(let id, let l): "END \(id.rawValue) len \(l)"
            case .ack(let a): "ACK cum \(a.cumulative) +\(a.entries.count)"
            case .resendRequest(let r): "RESEND \(r.id.rawValue)"
            case .dataCheck(let ids): "DATA_CHECK \(ids.map(\.rawValue))"
            case .newInterface: "NEW_INTERFACE"
            case .downInterface(let n): "DOWN_INTERFACE \(n)"
            case .goodbye: "GOODBYE"
            case .ping: "PING"
            case .pong: "PONG"
            case .auth: "AUTH"
            case .extension(let t, _): "EXT 0x\(String(t, radix: 16))"
            }
        }
    }

    /// Builds case `n` from `rng`. `legit` is the id of the legitimate session running alongside
    /// (attaches naming it must be refused without touching it).
    static func makeCase(_ n: Int, rng: inout SplitMix64, legit: SessionID, memoryCap: Int) -> Case {
        var c = Case()
        let name = "fz\(n)"
        let session = SessionID.random()
        let nid = UInt32(rng.next() % 4 + 1)
        func hello(_ s: SessionID, version: UInt16 = Wire.version, role: Role = .client) -> Frame {
            .hello(Hello(version: version, role: role, session: s, networkID: nid, networkKind: .wifi, interfaceName: name))
        }
        // The attach: mostly a valid new session, else one of the ways an attach goes wrong.
        // The attach: a quarter of the cases go wrong there (eight ways), the rest attach.
        let attach = rng.next() % 32
        switch attach {
        case 0: c.invalid(.ping(nonce: 1), "frame before HELLO")
        case 1: c.add(hello(session)); c.invalid(.beginIROB(BeginIROB(id: IROBID(1), labels: .none, length: 1, dependencies: .allEarlier)), "BEGIN_IROB before AUTH")
        case 2: c.add(hello(legit)); c.invalid(H.throwawayKeyShare(), "key share for the legitimate session")
        case 3: c.add(hello(legit)); c.add(.auth(.join(nonce: AttachAuth.nonce())))
            c.invalid(.auth(.proof((0..<Wire.authProofLength).map { _ in UInt8(truncatingIfNeeded: rng.next()) })), "forged join proof for the legitimate session")
        case 4: c.add(hello(session)); c.invalid(.auth(.join(nonce: AttachAuth.nonce())), "join for an unknown session")
        case 5: c.add(hello(session, version: 1)); c.invalid(H.throwawayKeyShare(), "version 1 HELLO")
        case 6: c.invalid(hello(session, role: .server), "server HELLO from a client")
        case 7: c.add(hello(session)); c.invalid(.auth(.challenge(nonce: AttachAuth.nonce(), proof: [UInt8](repeating: 0, count: Wire.authProofLength))), "AUTH challenge from a client")
        default: c.add(hello(session)); c.add(H.throwawayKeyShare())
        }
        if c.expect == .reject {
            // Whatever follows a refused attach must not matter.
            for _ in 0..<Int(rng.next() % 3) { c.add(.ping(nonce: rng.next())) }
            return mutateMaybe(c, rng: &rng)
        }

        // The attached session: a model of what is valid now (IROBs begun, their lengths).
        // An array, not a dictionary: a dictionary's order changes from run to run (hash seeds).
        var begun: [(id: UInt64, length: UInt32)] = []
        var nextID: UInt64 = 1
        let steps = Int(rng.next() % 24 + 1)
        // Half of the attached cases carry one invalid frame, at a random step.
        let invalidAt = rng.chance(0.5) ? Int(rng.next() % UInt64(steps)) : -1
        for step in 0..<steps {
            let r = step == invalidAt ? 100 : rng.next() % 87
            // Valid but hostile frames.
            if r < 18 {
                let id = nextID + rng.next() % 3
                nextID = id + 1
                let length = UInt32(rng.chance(0.1) ? rng.next() % 65_536 : rng.next() % 64)
                let deps: DependencySpec = rng.chance(0.5) || id == 1 ? .allEarlier
                    : .explicit((0..<Int(rng.next() % 3 + 1)).map { _ in IROBID(1 + rng.next() % (id - 1)) })
                begun.append((id, length))
                c.add(.beginIROB(BeginIROB(id: IROBID(id), labels: Labels(rawValue: UInt32(truncatingIfNeeded: rng.next() % 16)), length: length, dependencies: deps)))
            } else if r < 45, let e = pick(begun, &rng) {
                // Any order, overlapping, repeated; empty payloads too.
                let off = e.length == 0 ? 0 : UInt32(rng.next() % UInt64(e.length))
                let n = Int(min(UInt64(e.length - off), rng.next() % 80))
                c.add(.data(DataChunk(id: IROBID(e.id), offset: off, bytes: (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })))
            } else if r < 52, let e = pick(begun, &rng) {
                c.add(.endIROB(id: IROBID(e.id), length: e.length))
            } else if r < 58 {
                c.add(.ack(Ack(cumulative: rng.chance(0.5) ? rng.next() % 8 : rng.next(),
                               entries: (0..<Int(rng.next() % 4)).map { _ in AckEntry(id: IROBID(1 + rng.next() % 1000), holdMicroseconds: UInt32(truncatingIfNeeded: rng.next())) })))
            } else if r < 63 {
                // Any range of any id, past the IROB's end too (offset + length within 32 bits:
                // beyond is a malformed frame, tested below).
                let off = UInt32(truncatingIfNeeded: rng.next()) >> UInt32(rng.next() % 32)
                c.add(.resendRequest(ResendRequest(id: IROBID(1 + rng.next() % 8), needsBegin: rng.chance(0.5),
                                                   offset: off, length: UInt32(rng.next() % (UInt64(UInt32.max - off) + 1)))))
            } else if r < 68 {
                c.add(.dataCheck(ids: (0..<Int(rng.next() % 5 + 1)).map { _ in IROBID(1 + rng.next() % 100_000) }))
            } else if r < 71 {
                c.add(.newInterface(InterfaceInfo(networkID: UInt32(truncatingIfNeeded: rng.next()), kind: .cellular, ipv4Address: UInt32(truncatingIfNeeded: rng.next()), name: "x")))
            } else if r < 75 {
                c.add(.downInterface(networkID: rng.chance(0.5) ? nid : UInt32(truncatingIfNeeded: rng.next())))
            } else if r < 77 {
                c.add(.goodbye(Goodbye(reason: GoodbyeReason(wire: UInt8(truncatingIfNeeded: rng.next())), lastID: rng.next() % 10)))
            } else if r < 81 {
                c.add(rng.chance(0.5) ? .ping(nonce: rng.next()) : .pong(nonce: rng.next(), holdMicroseconds: 5))
            } else if r < 84 {
                let type = UInt8(0x80 + rng.next() % 0x80)
                c.add(.extension(type: type, body: (0..<Int(rng.next() % 9)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }))
            } else if r < 87 {
                // Far ahead of the ids above (at most 72 of them), so never begun twice.
                c.add(.beginIROB(BeginIROB(id: IROBID(1000 + rng.next() % 100), labels: .none, length: 0, dependencies: .allEarlier)), "BEGIN empty, ahead")
            } else {
                // One invalid frame, and the case is decided.
                let kind = rng.next() % 11
                switch kind {
                case 0: c.invalid(hello(session), "second HELLO")
                case 1: c.invalid(H.throwawayKeyShare(), "AUTH on an attached connection")
                case 2: c.invalid(.data(DataChunk(id: IROBID(50_000), offset: 0, bytes: [1])), "DATA before its BEGIN_IROB")
                case 3: c.invalid(.endIROB(id: IROBID(50_001), length: 1), "END_IROB before its BEGIN_IROB")
                case 4: c.invalid(.beginIROB(BeginIROB(id: IROBID(nextID + 70_000), labels: .none, length: 1, dependencies: .allEarlier)), "IROB id beyond the window")
                case 5: c.invalid(.beginIROB(BeginIROB(id: IROBID(nextID), labels: .none, length: UInt32(memoryCap) + 1, dependencies: .allEarlier)), "BEGIN_IROB beyond the receive-memory cap")
                case 6:
                    if let e = pick(begun, &rng), !isComplete(e.id, c) {
                        c.invalid(.data(DataChunk(id: IROBID(e.id), offset: e.length, bytes: [1, 2])), "DATA beyond the IROB's length")
                    } else {
                        c.addRaw(length: 1, type: UInt8(0x20 + rng.next() % 0x5F), body: [], "INVALID unknown frame type")
                        c.expect = .reject
                    }
                case 7:
                    if let e = pick(begun, &rng), !isComplete(e.id, c) {
                        c.invalid(.endIROB(id: IROBID(e.id), length: e.length &+ 1), "END_IROB with another length")
                    } else {
                        c.addRaw(length: 0, type: 0, body: [], "INVALID frame length 0")
                        c.expect = .reject
                    }
                case 8:
                    // BEGIN_IROB id 0 (never valid): id, labels, length 1, allEarlier, no dependencies.
                    c.addRaw(length: 1 + 19, type: 0x02, body: [UInt8](repeating: 0, count: 8 + 4) + [0, 0, 0, 1, 1, 0, 0], "INVALID BEGIN_IROB id 0")
                    c.expect = .reject
                case 9:
                    // RESEND_REQUEST whose offset + length passes 2^32: id 1, flags 0, offset, length.
                    c.addRaw(length: 1 + 17, type: 0x06, body: [0, 0, 0, 0, 0, 0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 0x20], "INVALID RESEND_REQUEST range past 2^32")
                    c.expect = .reject
                default:
                    c.addRaw(length: UInt32(Wire.maxFrameLength + 1), type: 0x03, body: [], "INVALID frame length over 1 MiB")
                    c.expect = .reject
                }
                break
            }
        }
        return mutateMaybe(c, rng: &rng)
    }

    static func pick(_ a: [(id: UInt64, length: UInt32)], _ rng: inout SplitMix64) -> (id: UInt64, length: UInt32)? {
        a.isEmpty ? nil : a[Int(rng.next() % UInt64(a.count))]
    }

    /// Whether the case may have sent the whole of IROB `id` (then the receiver may have released
    /// it, and DATA beyond its length is re-ACKed and a wrong END_IROB ignored, not refused: it no
    /// longer has the IROB). Conservative: any DATA for it counts.
    static func isComplete(_ id: UInt64, _ c: Case) -> Bool {
        c.steps.contains { $0.hasPrefix("DATA \(id) ") } || c.steps.contains { $0 == "BEGIN \(id) len 0" }
    }

    /// A third of the cases: the bytes after the first HELLO mutated (flips, overwrites with
    /// 0/0xFF, a cut, a chunk repeated, junk inserted), so most still reach the session layer.
    static func mutateMaybe(_ c: Case, rng: inout SplitMix64) -> Case {
        guard rng.chance(0.33), c.bytes.count > 8 else { return c }
        var m = c
        m.expect = .either
        let keep = min(m.bytes.count - 1, m.helloEnd + Int(rng.next() % UInt64(max(1, (m.bytes.count - m.helloEnd) / 4))))
        for _ in 0..<Int(rng.next() % 4 + 1) {
            let at = keep + Int(rng.next() % UInt64(max(1, m.bytes.count - keep)))
            guard at < m.bytes.count else { continue }
            switch rng.next() % 6 {
            case 0: m.bytes[at] ^= UInt8(1 << (rng.next() % 8))
            case 1: m.bytes[at] = rng.chance(0.5) ? 0 : 0xFF
            case 2: m.bytes.removeSubrange(at...)
            case 3: m.bytes.insert(contentsOf: m.bytes[at..<min(m.bytes.count, at + Int(rng.next() % 40 + 1))], at: at)
            case 4: m.bytes.insert(contentsOf: (0..<Int(rng.next() % 8 + 1)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
            default: m.bytes[at] = UInt8(truncatingIfNeeded: rng.next())
            }
        }
        m.steps.append("MUTATED")
        return m
    }

    // MARK: - Running a case

    struct Outcome {
        /// The server answered the case's final PING.
        var answered: Bool
        /// The server closed the connection (after our shutdown, or before).
        var closed: Bool
        /// The client's local address, as the server logs it for a connection before its attach.
        var peer: String
    }

    /// Sends the case, then PING(n) and shuts down its sending side; reads until the server
    /// closes (at most `timeoutSeconds`).
    static func run(_ c: Case, n: Int, port: UInt16, source: String, timeoutSeconds: Double = 5) -> Outcome? {
        guard let fd = RawPeer.connect(port, from: source) else { return nil }
        defer { close(fd) }
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let peer = "\(source):\(UInt16(bigEndian: sa.sin_port))"
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let bytes = c.bytes + Frame.ping(nonce: UInt64(n)).encoded()
        // A send the server refuses midway (it closed) is part of the outcome, not a failure.
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_WR))
        // Read raw (a mutated case can make the server's replies anything the session sends).
        tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var decoder = FrameDecoder()
        var answered = false
        var closed = false
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        var buf = [UInt8](repeating: 0, count: 16 << 10)
        while Date() < deadline {
            let got = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got == 0 { closed = true; break }
            if got < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                closed = true
                break
            }
            decoder.feed(Array(buf[0..<got]))
            while let f = try? decoder.next() {
                if case .pong(let nonce, _) = f, nonce == UInt64(n) { answered = true }
            }
        }
        return Outcome(answered: answered, closed: closed, peer: peer)
    }

    /// Why the server closed case `n`'s connection, from its log: a pending connection is
    /// logged by peer address, an attached one by the interface name its HELLO gave ("fz<n>").
    static func closeReasons(_ records: [LogCapture.Record], name: String, peer: String) -> [String] {
        records.compactMap { r in
            if r.metadata["peer"] == peer, r.message == "dropped connection" { return r.metadata["reason"] }
            if r.metadata["interface"] == name {
                if r.message == "protocol error, closing connection" { return r.metadata["error"] }
                if r.message == "connection closed" { return r.metadata["reason"] }
            }
            return nil
        }
    }

    /// A typed reason: a ProtocolError's description, or one of the listener's attach refusals.
    static let refusals = ["first frame is not a client HELLO", "expected AUTH after HELLO", "bad join proof",
                           "key share for an existing session", "no room for another session", "unusable key share",
                           "join for an unknown session", "unexpected AUTH from a client"]
    static func isTyped(_ reason: String) -> Bool {
        reason.hasPrefix("protocol error: ") || refusals.contains { reason.hasPrefix($0) }
    }
    /// The server saw the client leave (our shutdown after the final PING), or the attach never finished.
    static func isPeerLeaving(_ reason: String) -> Bool {
        reason.hasPrefix("closed by peer") || reason.hasPrefix("closed after GOODBYE") || reason.hasPrefix("closed before its attach")
    }

    @Test("hostile and mutated frame sequences: each rejected connection closes alone with a typed reason; a legitimate session keeps working; memory stays bounded")
    func sessionLayerFuzz() async throws {
        let env = ProcessInfo.processInfo.environment
        let cases = env["INTNW_FUZZ_CASES"].flatMap(Int.init) ?? 1000
        let seed = env["INTNW_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x1414_F022
        let capture = LogCapture()
        var opts = ListenerOptions()
        opts.receiveMemoryLimitBytes = 8 << 20
        opts.session.logger = Logger(label: "fuzz.server") { _ in CapturingHandler(capture: capture) }
        let server = try LoopbackServer(options: opts)
        defer { server.close() }
        let (listener, port) = (server.listener, server.port)

        // The legitimate session, with its own connections, checked between batches of cases.
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: H.clientOptions())
        _ = try await H.roundTrip(client, 0)
        let legit = client.sessionID
        let legitConnections = client.session.loop.withLock { Set(client.session.conns.all.map(\.id)) }
        let baseline = listener.receiveMemory.used

        var rng = SplitMix64(seed: seed)
        var problems: [String] = []
        var tally: [Expect: (accepted: Int, rejected: Int)] = [:]
        var endedAfterGoodbye = 0
        var n = 0
        let t0 = Date()
        while n < cases {
            let batch = (n..<min(cases, n + 25)).map { i in (i, Self.makeCase(i, rng: &rng, legit: legit, memoryCap: opts.receiveMemoryLimitBytes)) }
            n += batch.count
            let outcomes = try await offPool {
                // From eight addresses in turn: the per-address session bound evicts this probe's
                // own detached sessions, never the legitimate one (it carries traffic).
                batch.map { (i, c) in (i, c, Self.run(c, n: i, port: port, source: "127.0.0.\(40 + i % 8)")) }
            }
            var records = capture.take()
            for (i, c, outcome) in outcomes {
                let what = "case \(i) (seed \(seed)) [\(c.steps.joined(separator: ", "))]"
                guard let o = outcome else { problems.append("\(what): could not connect"); continue }
                // No hang: the server closes every connection whose peer left.
                if !o.closed { problems.append("\(what): still open 5 s after the client left") }
                var reasons = Self.closeReasons(records, name: "fz\(i)", peer: o.peer)
                // The server logs a drop just after closing the socket: give its log a moment.
                var waited = 0
                func settled() -> Bool {
                    switch c.expect {
                    case .accept: !c.saidGoodbye
                    case .reject: !reasons.filter({ !Self.isPeerLeaving($0) }).isEmpty
                    case .either: !reasons.isEmpty
                    }
                }
                while !o.answered && !settled() && waited < 20 {
                    try await Task.sleep(nanoseconds: 25_000_000)
                    waited += 1
                    records += capture.take()
                    reasons = Self.closeReasons(records, name: "fz\(i)", peer: o.peer)
                }
                // The server closed without a word after the case's GOODBYE: an orderly end.
                let ended = !o.answered && c.saidGoodbye && reasons.isEmpty
                if ended { endedAfterGoodbye += 1 }
                var t = tally[c.expect] ?? (0, 0)
                if o.answered { t.accepted += 1 } else { t.rejected += 1 }
                tally[c.expect] = t
                switch c.expect {
                case .accept where !o.answered && !ended:
                    problems.append("\(what): valid frames refused: \(reasons)")
                case .reject where o.answered:
                    problems.append("\(what): an invalid frame was accepted")
                default:
                    break
                }
                // A refused connection says why, with a typed reason (not a crash of the session,
                // an errno from a confused state, or nothing at all).
                if !o.answered && !ended {
                    let why = reasons.filter { !Self.isPeerLeaving($0) }
                    if c.expect == .reject && (why.isEmpty || !why.allSatisfy(Self.isTyped)) {
                        problems.append("\(what): closed without a typed reason: \(reasons)")
                    } else if c.expect == .either && !reasons.allSatisfy({ Self.isTyped($0) || Self.isPeerLeaving($0) }) {
                        problems.append("\(what): closed with an untyped reason: \(reasons)")
                    } else if c.expect == .either && reasons.isEmpty {
                        problems.append("\(what): closed without any logged reason")
                    }
                }
            }
            // Only the hostile connections went: the legitimate session still has exactly its
            // connections and is served.
            let now = client.session.loop.withLock { Set(client.session.conns.all.map(\.id)) }
            if now != legitConnections { problems.append("after case \(n - 1): the legitimate session's connections changed: \(legitConnections) -> \(now)") }
            _ = try await H.roundTrip(client, UInt8(n & 0xFF))
            // Memory stays under the cap throughout.
            let m = listener.receiveMemory
            if m.peak > m.limit { problems.append("after case \(n - 1): receive memory peaked at \(m.peak) B over the \(m.limit) B cap") }
            if problems.count > 20 { break }
        }
        let elapsed = Date().timeIntervalSince(t0)
        // When the probe has left, what it held comes back.
        let deadline = Date().addingTimeInterval(5)
        while (listener.receiveMemory.used > baseline + (1 << 20) || listener.pendingConnectionCount > 0) && Date() < deadline {
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        let after = listener.receiveMemory
        #expect(after.used <= baseline + (1 << 20), "\(after.used) B still charged after the fuzz (baseline \(baseline) B)")
        #expect(listener.pendingConnectionCount == 0)
        #expect(listener.sessionCount <= opts.maxSessions)
        #expect(client.session.loop.withLock { Set(client.session.conns.all.map(\.id)) } == legitConnections)
        _ = try await H.roundTrip(client, 0xFF)
        _ = await client.close(timeoutSeconds: 1)

        let summary = [Expect.accept, .reject, .either].map { e in
            let t = tally[e] ?? (0, 0)
            return "\(e.rawValue): \(t.accepted) answered, \(t.rejected) closed"
        }.joined(separator: "; ")
        print("session-layer fuzz: \(n) cases (seed \(seed)) in \(String(format: "%.1f", elapsed)) s; \(summary) (\(endedAfterGoodbye) of them closed without a word after their GOODBYE); receive memory peak "
              + "\(after.peak) B under a \(after.limit) B cap; \(listener.keyAgreements) key agreements")
        #expect(problems.isEmpty, "\(problems.count) problems:\n\(problems.prefix(20).joined(separator: "\n"))")
        // The generator reached every verdict (a fuzz whose cases all end alike tests little).
        for e in [Expect.accept, .reject, .either] {
            let t = tally[e] ?? (0, 0)
            #expect(t.accepted + t.rejected >= cases / 20, "only \(t.accepted + t.rejected) \(e.rawValue) cases")
        }
        #expect((tally[.either]?.accepted ?? 0) > 0 && (tally[.either]?.rejected ?? 0) > 0)
    }
}
