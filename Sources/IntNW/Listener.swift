/// Server side: the listening socket, connections waiting for their HELLO (bounded in number,
/// time and memory), and the grouping of connections into sessions by session id.
#if canImport(Glibc)
import Glibc
#endif
import CShims
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
    /// A HELLO is about 60 bytes: a pre-HELLO connection never buffers more than this.
    static let helloFrameLimit = 128

    init(loop: IOLoop, endpoint: IPv4Endpoint, options: ListenerOptions) throws {
        self.loop = loop
        self.options = options
        self.log = options.session.logger
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
                self.dropPending(fd, reason: "no HELLO within \(self.options.helloTimeoutSeconds) s")
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
        case .success(0): return dropPending(fd, reason: "closed before HELLO")
        case .success(let got): n = got
        case .failure(let e): return e.isWouldBlock ? () : dropPending(fd, reason: "recv: \(e)")
        }
        withUnsafeBytes(of: &buf) { p.decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
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
        guard case .hello(let hello) = frame, hello.role == .client else {
            return dropPending(fd, reason: "first frame is not a client HELLO")
        }
        let leftover = p.decoder.takeBuffered()
        pending[fd] = nil
        loop.unregister(fd: fd)
        guard !closed else {
            Glibc.close(fd)
            return
        }
        let session: Session
        if let s = sessions[hello.session] {
            session = s
        } else if sessions.count >= options.maxSessions {
            Glibc.close(fd)
            log.warning("refused a new session: \(options.maxSessions) sessions already")
            return
        } else {
            session = Session(loop: loop, role: .server, sessionID: hello.session, options: options.session, server: nil,
                              idleTimeoutSeconds: options.sessionIdleTimeoutSeconds)
            session.listener = self
            sessions[hello.session] = session
            if let w = acceptWaiters.first {
                acceptWaiters.removeFirst()
                loop.deferAfterUnlock { w.resume(returning: session) }
            } else {
                acceptQueue.append(session)
            }
        }
        session.attach(fd: fd, hello: hello, leftover: leftover, nowNs: nowNs)
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
