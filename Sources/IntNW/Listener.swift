/// Server side: the listening socket, connections waiting for their HELLO (bounded in number,
/// time and memory), and the grouping of connections into sessions by session id.
#if canImport(Glibc)
import Glibc
#endif
import CShims
import Crypto
import LinuxSupport
import Logging

final class ListenerCore: IOHandler {
    struct Pending {
        var decoder: FrameDecoder
        var peer: IPv4Endpoint
        var acceptedNs: UInt64
        /// Unique per accepted connection: fd numbers are reused, so a timeout armed for an
        /// earlier connection must not close a later one that got the same fd.
        var serial: UInt64 = 0
        /// The client's HELLO, once read; its AUTH comes next.
        var hello: Hello?
        /// A join in progress: the session it names and the client proof that completes it.
        var joining: Session?
        var expectedProof: (clientNonce: [UInt8], serverNonce: [UInt8])?
    }

    let loop: IOLoop
    let listenFD: Int32
    let endpoint: IPv4Endpoint
    let options: ListenerOptions
    var log: Logger
    private(set) var pending: [Int32: Pending] = [:]
    private(set) var sessions: [SessionID: Session] = [:]
    private var acceptQueue: [Session] = []
    private var acceptWaiters: [CheckedContinuation<Session, Error>] = []
    private var closed = false
    private var acceptSerial: UInt64 = 0
    /// Every session's receive memory, under one cap (ReceiveMemory.swift).
    let memoryBudget: ReceiveMemoryBudget
    /// Key shares answered with a key agreement (X25519), for tests: refusals must not cost one.
    private(set) var keyAgreements = 0
    /// A HELLO is about 60 bytes, an AUTH at most 54: a connection that has not finished its
    /// attach never buffers more than one such frame plus one read.
    static let helloFrameLimit = 128

    init(loop: IOLoop, endpoint: IPv4Endpoint, options: ListenerOptions) throws {
        self.loop = loop
        self.options = options
        self.log = options.session.logger
        self.memoryBudget = ReceiveMemoryBudget(limitBytes: options.receiveMemoryLimitBytes)
        listenFD = try Sockets.listen(on: endpoint)
        self.endpoint = Sockets.localEndpoint(listenFD) ?? endpoint
        loop.register(fd: listenFD, self)
        log.info("listening", metadata: ["endpoint": "\(self.endpoint)"])
    }

    func pollEvents(fd: Int32) -> Int16 { Int16(POLLIN) }

    func handle(fd: Int32, revents: Int16, nowNs: UInt64) {
        if fd == listenFD {
            acceptPending(nowNs: nowNs)
        } else {
            readHello(fd: fd, nowNs: nowNs)
        }
    }

    private func acceptPending(nowNs: UInt64) {
        for _ in 0..<64 {
            guard let (fd, peer) = (try? Sockets.accept(listenFD)) ?? nil else { return }
            if pending.count >= options.maxPendingConnections,
               let oldest = pending.min(by: { $0.value.acceptedNs < $1.value.acceptedNs })?.key {
                // Evict the oldest silent connection rather than refuse the new one: a real client
                // sends its HELLO within one RTT, so half-open connections cannot starve it.
                dropPending(oldest, reason: "evicted: \(options.maxPendingConnections) connections without HELLO")
            }
            Sockets.configureConnection(fd, notSentLowWatermarkBytes: options.session.notSentLowWatermarkBytes)
            acceptSerial += 1
            let serial = acceptSerial
            pending[fd] = Pending(decoder: FrameDecoder(maxFrameLength: ListenerCore.helloFrameLimit), peer: peer,
                                  acceptedNs: nowNs, serial: serial)
            loop.register(fd: fd, self)
            let deadline = nowNs + UInt64(options.helloTimeoutSeconds * 1e9)
            loop.schedule(atNs: deadline) { [weak self] in
                guard let self, self.pending[fd]?.serial == serial else { return }
                self.dropPending(fd, reason: "attach not completed within \(self.options.helloTimeoutSeconds) s")
            }
        }
    }

    private func dropPending(_ fd: Int32, reason: String) {
        guard let p = pending.removeValue(forKey: fd) else { return }
        loop.unregister(fd: fd)
        Glibc.close(fd)
        log.debug("dropped connection", metadata: ["peer": "\(p.peer)", "reason": "\(reason)"])
    }

    private func readHello(fd: Int32, nowNs: UInt64) {
        guard var p = pending[fd] else { return }
        var buf = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        let n: Int
        switch Syscall.retrying({ withUnsafeMutableBytes(of: &buf) { Glibc.recv(fd, $0.baseAddress, $0.count, 0) } }) {
        case .success(0): return dropPending(fd, reason: "closed before its attach")
        case .success(let got): n = got
        case .failure(let e): return e.isWouldBlock ? () : dropPending(fd, reason: "recv: \(e)")
        }
        withUnsafeBytes(of: &buf) { p.decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        while true {
            let frame: Frame?
            do {
                frame = try p.decoder.next()
            } catch {
                return dropPending(fd, reason: "\(error)")
            }
            guard let frame else {
                pending[fd] = p
                return
            }
            guard let hello = p.hello else {
                guard case .hello(let h) = frame, h.role == .client else {
                    return dropPending(fd, reason: "first frame is not a client HELLO")
                }
                guard h.version >= Wire.minimumVersion else {
                    return dropPending(fd, reason: "\(ProtocolError(.unsupportedVersion(h.version)))")
                }
                p.hello = h
                continue
            }
            guard case .auth(let auth) = frame else {
                return dropPending(fd, reason: "expected AUTH after HELLO, got frame type 0x\(String(frame.typeCode, radix: 16))")
            }
            if let expected = p.expectedProof, let session = p.joining {
                // A join: the client's proof that it holds the session key.
                guard case .proof(let proof) = auth, let key = session.authKey, session.phase != .closed,
                      AttachAuth.verify(proof, key: key, role: .client, session: hello.session, networkID: hello.networkID,
                                        clientNonce: expected.clientNonce, serverNonce: expected.serverNonce) else {
                    log.warning("refused a join without a valid proof of the session key", metadata: ["peer": "\(p.peer)", "session": "\(hello.session)"])
                    return dropPending(fd, reason: "bad join proof")
                }
                return handOver(fd, p, to: session, reply: [], nowNs: nowNs)
            }
            switch auth {
            case .keyShare(let clientPublic, let clientNonce):
                if sessions[hello.session] != nil {
                    // Only the holder of the session key may attach to an existing session.
                    log.warning("refused a key share for an existing session (hijack attempt?)", metadata: ["peer": "\(p.peer)", "session": "\(hello.session)"])
                    return dropPending(fd, reason: "key share for an existing session")
                }
                // Room first: a key share that would be refused costs no key agreement, so a
                // peer at its bound cannot make the server burn CPU on X25519 for nothing.
                if let why = roomRefusal(peer: p.peer) {
                    log.warning("refused a new session: \(why)")
                    return dropPending(fd, reason: "no room for another session")
                }
                keyAgreements += 1
                let mine = AttachAuth.newKeyPair()
                let serverPublic = Array(mine.publicKey.rawRepresentation)
                let serverNonce = AttachAuth.nonce()
                guard let key = AttachAuth.sessionKey(privateKey: mine, peerPublicKey: clientPublic, session: hello.session,
                                                      clientPublicKey: clientPublic, serverPublicKey: serverPublic,
                                                      clientNonce: clientNonce, serverNonce: serverNonce) else {
                    return dropPending(fd, reason: "unusable key share")
                }
                guard !closed, let session = newSession(hello.session, peer: p.peer, nowNs: nowNs) else {
                    return dropPending(fd, reason: "no room for another session")
                }
                session.authKey = key
                return handOver(fd, p, to: session, reply: [.hello(serverHello(hello)),
                                                            .auth(.keyShare(publicKey: serverPublic, nonce: serverNonce))], nowNs: nowNs)
            case .join(let clientNonce):
                guard let session = sessions[hello.session], let key = session.authKey, session.phase != .closed else {
                    // A restarted server, or one that expired the session: say so, so the client
                    // reports what may be lost instead of silently starting afresh.
                    sendRaw(fd, [.hello(serverHello(hello)), .auth(.unknownSession)])
                    return dropPending(fd, reason: "join for an unknown session")
                }
                let serverNonce = AttachAuth.nonce()
                let proof = AttachAuth.proof(key: key, role: .server, session: hello.session, networkID: hello.networkID,
                                             clientNonce: clientNonce, serverNonce: serverNonce)
                guard sendRaw(fd, [.hello(serverHello(hello)), .auth(.challenge(nonce: serverNonce, proof: proof))]) else {
                    return dropPending(fd, reason: "could not send the challenge")
                }
                p.joining = session
                p.expectedProof = (clientNonce, serverNonce)
            default:
                return dropPending(fd, reason: "unexpected AUTH from a client")
            }
        }
    }

    private func serverHello(_ h: Hello) -> Hello {
        Hello(role: .server, session: h.session, networkID: h.networkID, networkKind: h.networkKind, interfaceName: h.interfaceName)
    }

    /// Writes a few small frames to a connection that is not attached yet (they fit any socket
    /// buffer); false if the socket did not take them whole.
    @discardableResult
    private func sendRaw(_ fd: Int32, _ frames: [Frame]) -> Bool {
        let bytes = frames.flatMap { $0.encoded() }
        let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        return n == bytes.count
    }

    /// The attach is authenticated: the connection joins `session`.
    private func handOver(_ fd: Int32, _ p: Pending, to session: Session, reply: [Frame], nowNs: UInt64) {
        var p = p
        let leftover = p.decoder.takeBuffered()
        pending[fd] = nil
        loop.unregister(fd: fd)
        guard !closed, let hello = p.hello else {
            Glibc.close(fd)
            return
        }
        if session.conns.count >= options.maxConnectionsPerSession && session.conns.byNetwork[hello.networkID] == nil {
            Glibc.close(fd)
            log.warning("refused a connection: the session already has \(options.maxConnectionsPerSession) connections", metadata: ["session": "\(hello.session)"])
            return
        }
        session.attach(fd: fd, hello: hello, leftover: leftover, reply: reply, nowNs: nowNs)
    }

    /// Why a new session from `peer` would be refused now (nil: there is room, or a session can
    /// be evicted to make it). Checked before any key agreement.
    private func roomRefusal(peer: IPv4Endpoint) -> String? {
        if closed { return "the listener is closed" }
        let fromPeer = sessions.values.filter { $0.peerAddress == peer.address && $0.phase != .closed }
        if fromPeer.count >= options.maxSessionsPerPeer && Self.evictionCandidate(fromPeer) == nil {
            return "\(options.maxSessionsPerPeer) sessions from \(IPv4Endpoint.format(peer.address)) already, all in use"
        }
        if sessions.count >= options.maxSessions && Self.globalEvictionCandidate(Array(sessions.values)) == nil {
            return "\(options.maxSessions) sessions already, all in use"
        }
        return nil
    }

    /// A new server session for `id` from `peer`, within the per-peer and global bounds: when
    /// one is reached, the peer's session (at the global bound: one of the peer addresses holding
    /// the most sessions) that has been without a connection the longest, else the oldest that
    /// never began an IROB, makes room; otherwise nil.
    private func newSession(_ id: SessionID, peer: IPv4Endpoint, nowNs: UInt64) -> Session? {
        let fromPeer = sessions.values.filter { $0.peerAddress == peer.address && $0.phase != .closed }
        if fromPeer.count >= options.maxSessionsPerPeer {
            guard let victim = Self.evictionCandidate(fromPeer) else {
                log.warning("refused a new session: \(options.maxSessionsPerPeer) sessions from \(IPv4Endpoint.format(peer.address)) already")
                return nil
            }
            evict(victim, why: "\(options.maxSessionsPerPeer) sessions from one peer address")
        }
        if sessions.count >= options.maxSessions {
            guard let victim = Self.globalEvictionCandidate(Array(sessions.values)) else {
                log.warning("refused a new session: \(options.maxSessions) sessions already")
                return nil
            }
            evict(victim, why: "\(options.maxSessions) sessions")
        }
        let session = Session(loop: loop, role: .server, sessionID: id, options: options.session, server: nil,
                              idleTimeoutSeconds: options.sessionIdleTimeoutSeconds)
        session.listener = self
        session.peerAddress = peer.address
        session.memoryBudget = memoryBudget
        session.connectionIdleTimeoutNs = UInt64(max(0, options.connectionIdleTimeoutSeconds) * 1e9)
        sessions[id] = session
        if let w = acceptWaiters.first {
            acceptWaiters.removeFirst()
            loop.deferAfterUnlock { w.resume(returning: session) }
        } else {
            acceptQueue.append(session)
        }
        return session
    }

    /// Detached sessions first (longest without a connection), then sessions that never began
    /// an IROB (oldest first). A session carrying traffic is never evicted.
    static func evictionCandidate(_ candidates: [Session]) -> Session? {
        let detached = candidates.filter { $0.conns.isEmpty && $0.phase != .closed }
        if let s = detached.min(by: { ($0.idleSinceNs ?? 0) < ($1.idleSinceNs ?? 0) }) { return s }
        return candidates.filter { !$0.sawIROB && $0.phase != .closed }.min(by: { $0.createdNs < $1.createdNs })
    }

    /// At the global bound, the peer addresses holding the most sessions give one up first (in
    /// `evictionCandidate`'s order among them). Picking the oldest idle session anywhere instead
    /// let a flood of new sessions from a few addresses evict a legitimate client's new session
    /// (from an address of its own, holding one session) before its first request arrived, as soon
    /// as the machine was slow enough for that request to come after a table's worth of flood.
    static func globalEvictionCandidate(_ candidates: [Session]) -> Session? {
        let byPeer = Dictionary(grouping: candidates.filter { $0.phase != .closed }, by: \.peerAddress)
        var heaviest = byPeer.filter { evictionCandidate($0.value) != nil }
        guard let most = heaviest.values.map(\.count).max() else { return nil }
        heaviest = heaviest.filter { $0.value.count == most }
        return evictionCandidate(heaviest.values.flatMap { $0 })
    }

    private func evict(_ s: Session, why: String) {
        log.info("evicted a session to make room", metadata: ["session": "\(s.sessionID)", "reason": "\(why)"])
        s.fail(.closed, nowNs: cshims_monotonic_ns())
        if sessions[s.sessionID] === s { sessions[s.sessionID] = nil }
    }

    /// At the receive-memory cap, a connected session's need goes before what departed clients
    /// left: sessions without a connection that hold memory (IROBs complete and acknowledged but
    /// not yet released, kept for a client that may come back) are closed, longest detached first,
    /// until `bytes` fit. Without this, a few departed clients' unreleasable IROBs held the cap for
    /// the session idle timeout and every other session's next IROB was refused. A client whose
    /// session went this way meets an unknown session when it returns and reports what was not
    /// delivered. True if `bytes` fit now.
    func reclaimDetachedMemory(toAdmit bytes: Int, for requester: Session) -> Bool {
        let candidates = sessions.values
            .filter { $0 !== requester && $0.conns.isEmpty && $0.phase != .closed && $0.memoryCharged > 0 }
            .sorted { ($0.idleSinceNs ?? 0) < ($1.idleSinceNs ?? 0) }
        for s in candidates {
            if memoryBudget.admits(bytes) { break }
            evict(s, why: "the receive-memory cap: a connected session needs \(bytes) bytes")
        }
        return memoryBudget.admits(bytes)
    }

    func addAcceptWaiter(_ c: CheckedContinuation<Session, Error>) {
        if closed {
            loop.deferAfterUnlock { c.resume(throwing: IntNWError.listenerClosed) }
        } else if !acceptQueue.isEmpty {
            let s = acceptQueue.removeFirst()
            loop.deferAfterUnlock { c.resume(returning: s) }
        } else {
            acceptWaiters.append(c)
        }
    }

    func sessionClosed(_ s: Session) {
        if sessions[s.sessionID] === s { sessions[s.sessionID] = nil }
        acceptQueue.removeAll { $0 === s }
    }

    func shutdown() {
        guard !closed else { return }
        closed = true
        loop.unregister(fd: listenFD)
        Glibc.close(listenFD)
        for fd in Array(pending.keys) { dropPending(fd, reason: "listener closed") }
        for s in Array(sessions.values) { s.fail(.closed, nowNs: cshims_monotonic_ns()) }
        let w = acceptWaiters
        acceptWaiters.removeAll()
        for c in w { loop.deferAfterUnlock { c.resume(throwing: IntNWError.listenerClosed) } }
        loop.requestStop()
    }
}
