/// The engine of one multisocket: IROB sender and receiver cores, the connections (one per
/// network), scheduling onto them, failover, passive estimation, and the state the async API
/// waits on. Runs on an `IOLoop`; every member is touched only under the loop lock.
///
/// One concern per file (all of them extensions of, or parts owned by, `Session`):
///   Session.swift             state, the loop's entry points (IOHandler), maintenance, close
///   ConnectionSet.swift       connections by socket / id / network; per-network estimates and status
///   AppMailbox.swift          received messages and suspended application calls (no sockets)
///   SessionConnections.swift  client: networks, connect, reconnect; server: attach; establish, failure
///   SessionSendPath.swift     service, the scheduler's pump, ACK encoding, BG allowance, flush
///   SessionReceivePath.swift  reads, frame dispatch, ACK handling
///   SessionApp.swift          what the public API calls (send admission, receive, waiters, close)
///   ../Trouble/SessionTrouble.swift  trouble detection and failover
#if canImport(Glibc)
import Glibc
#endif
import CShims
import Crypto
import Logging

// @unchecked: every member is touched only under the loop lock (IOLoop.withLock / the loop thread).
final class Session: IOHandler, IOService, @unchecked Sendable {
    enum Phase: Equatable {
        case open
        case closing
        case closed
    }

    let loop: IOLoop
    let role: Role
    let sessionID: SessionID
    let options: MultiSocketOptions
    var log: Logger

    var sender: IROBSender
    var receiver: IROBReceiver
    /// Background admission and this session's share of the multi-app foreground state.
    let background: BackgroundScheduler
    let conns = ConnectionSet()
    let mailbox: AppMailbox

    var phase: Phase = .open
    var closeReport: CloseReport?
    /// The error that ended the session, if one did (everything waiting fails with it).
    var failure: IntNWError?
    var peerGoodbye = false
    /// Reads stopped because the receive buffer was full (SessionReceivePath.swift).
    var readPaused = false
    private var maintenanceScheduled = false
    /// Deadline of the earliest armed trouble-check timer (0: none); see Trouble/SessionTrouble.swift.
    var troubleTimerNs: UInt64 = 0
    private var nextDataCheckNs: UInt64 = 0
    /// When a background policy asked to be consulted again (monotonic ns), if it did (SessionSendPath.swift).
    var backgroundWakeNs: UInt64?
    /// When the next look at whether foreground data left the kernel send queues is armed (SessionSendPath.swift).
    var wireCheckWakeNs: UInt64?
    /// An IROB fully sent this long ago without an ACK triggers a DATA_CHECK, in seconds.
    static let dataCheckAfterSeconds = 2.0

    // Client side (SessionConnections.swift).
    let server: IPv4Endpoint?
    var localNetworks: [UInt32: LocalNetwork] = [:]
    var reconnectAttempts: [UInt32: Int] = [:]
    var reconnectPending: Set<UInt32> = []
    var lastConnectError: String = "no usable network"
    var monitor: NetworkMonitor?

    /// The session key agreed on the first connection (SessionAuth.swift); never logged.
    var authKey: SymmetricKey?

    // Server side.
    weak var listener: ListenerCore?
    /// The client's IPv4 address (host order) on the connection that created the session.
    var peerAddress: UInt32 = 0
    let createdNs = cshims_monotonic_ns()
    /// The peer began at least one IROB (sessions that never did are evicted first under pressure).
    var sawIROB = false
    var idleSinceNs: UInt64?
    let idleTimeoutNs: UInt64
    /// An attached connection from which nothing arrives for this long is closed (0: never);
    /// `ListenerOptions.connectionIdleTimeoutSeconds`.
    var connectionIdleTimeoutNs: UInt64 = 0
    /// The listener's global receive-memory budget (ReceiveMemory.swift) and what this session
    /// has charged to it.
    var memoryBudget: ReceiveMemoryBudget?
    var memoryCharged = 0

    static let outCapacity = 192 << 10
    /// Data is appended while less than this is queued in user space (keeps FG close to the socket).
    static let outHighWater = 64 << 10
    static let readChunk = 128 << 10
    /// POLLRDHUP (Linux): the peer shut down its sending side.
    static let pollPeerShutdown: Int16 = 0x2000
    /// Frames handled per connection per pass (SessionReceivePath.swift).
    static let framesPerPass = 64

    init(loop: IOLoop, role: Role, sessionID: SessionID, options: MultiSocketOptions, server: IPv4Endpoint?,
         idleTimeoutSeconds: Double = 120) {
        self.loop = loop
        self.role = role
        self.sessionID = sessionID
        self.options = options
        self.server = server
        self.sender = IROBSender(limits: options.sendLimits)
        self.receiver = IROBReceiver(limits: options.receiveLimits)
        self.idleTimeoutNs = UInt64(idleTimeoutSeconds * 1e9)
        self.mailbox = AppMailbox(resumeLater: { [loop] action in loop.deferAfterUnlock(action) })
        var log = options.logger
        log[metadataKey: "session"] = "\(sessionID)"
        log[metadataKey: "role"] = "\(role == .client ? "client" : "server")"
        self.log = log
        self.background = BackgroundScheduler(options: options, role: role, log: log)
    }

    // MARK: - Network view (for the public API)

    var allStatuses: [NetworkStatus] { conns.allStatuses }

    func hasSuitableNetwork(_ r: NetworkRestriction) -> Bool { conns.hasSuitableNetwork(r) }

    func setOracle(_ estimate: NetworkEstimate?, networkID: UInt32?, kind: NetworkKind?) {
        for n in conns.nets.values where (networkID == nil || n.networkID == networkID) && (kind == nil || n.kind == kind) {
            n.estimator.oracle = estimate.map {
                var e = $0
                e.source = .oracle
                return e
            }
        }
        loop.markDirty(self)
    }

    // MARK: - IOHandler

    func pollEvents(fd: Int32) -> Int16 {
        guard let c = conns.connection(fd: fd) else { return 0 }
        if c.state == .connecting { return Int16(POLLOUT) }
        var e: Int16 = 0
        if receiver.shouldRead && c.decoder.failed == nil && !c.backlogged && !c.framesPending {
            // Left unread at the receive-memory cap, a connection still reports its peer's
            // shutdown, so one that leaves is closed and its memory given back (readAvailable).
            e |= memoryAllowsReading(c) ? Int16(POLLIN) : Session.pollPeerShutdown
        }
        if c.out.pending > 0 || !c.control.isEmpty { e |= Int16(POLLOUT) }
        return e
    }

    func handle(fd: Int32, revents: Int16, nowNs: UInt64) {
        guard let c = conns.connection(fd: fd) else { return }
        if c.state == .connecting {
            connectCompleted(c, nowNs: nowNs)
            return
        }
        if revents & Int16(POLLIN) != 0 || revents & (Int16(POLLHUP | POLLERR) | Session.pollPeerShutdown) != 0 {
            readAvailable(c, hangup: revents & (Int16(POLLHUP | POLLERR) | Session.pollPeerShutdown) != 0, nowNs: nowNs)
        }
        if c.state != .closed, revents & Int16(POLLOUT) != 0 {
            flush(c, nowNs: nowNs)
        }
        loop.markDirty(self)
    }

    // MARK: - Maintenance: TCP_INFO sampling, stale IROBs, idle sessions

    func scheduleMaintenance(nowNs: UInt64) {
        guard !maintenanceScheduled, phase != .closed else { return }
        maintenanceScheduled = true
        loop.schedule(atNs: nowNs + UInt64(options.maintenanceIntervalMilliseconds) * 1_000_000) { [weak self] in
            guard let self else { return }
            self.maintenanceScheduled = false
            self.maintain(nowNs: cshims_monotonic_ns())
        }
    }

    private func maintain(nowNs: UInt64) {
        guard phase != .closed else { return }
        for c in Array(conns.byNetwork.values) where c.state == .established {
            var info = cshims_tcp_info()
            var len: UInt32 = 0
            guard cshims_get_tcp_info(c.fd, &info, &len) == 0, let net = conns.nets[c.network.networkID] else { continue }
            net.estimator.addTCPInfo(info, connection: c.fd, nowNs: nowNs)
        }
        // Trouble checks run on their own timer (Trouble/SessionTrouble.swift), at the earliest
        // moment a timeout could expire rather than on this period.
        checkStaleIROBs(nowNs: nowNs)
        checkConnectionIdle(nowNs: nowNs)
        if role == .server, let idle = idleSinceNs, conns.isEmpty, nowNs - idle > idleTimeoutNs {
            log.info("session idle too long, closing")
            fail(.closed, nowNs: nowNs)
            return
        }
        if !conns.isEmpty || idleSinceNs != nil { scheduleMaintenance(nowNs: nowNs) }
    }

    /// Server: closes attached connections silent for longer than the idle timeout (a peer that
    /// attached and went quiet, or a path that died without a reset). Client: a PING on every
    /// connection it has sent nothing on for `keepaliveIntervalSeconds`, so a live but idle
    /// session never looks dead to the server.
    private func checkConnectionIdle(nowNs: UInt64) {
        if role == .server {
            guard connectionIdleTimeoutNs > 0 else { return }
            for c in conns.all where c.state == .established && nowNs &- c.lastReceivedNs > connectionIdleTimeoutNs {
                connectionFailed(c, reason: "nothing received for \((connectionIdleTimeoutNs) / 1_000_000_000) s (idle timeout)", nowNs: nowNs)
            }
        } else if options.keepaliveIntervalSeconds > 0 {
            let interval = UInt64(options.keepaliveIntervalSeconds * 1e9)
            for c in conns.all where c.state == .established && nowNs &- c.lastSentNs > interval && c.out.pending == 0 {
                c.control.append(.ping(nonce: nowNs))
                c.lastSentNs = nowNs
                loop.markDirty(self)
            }
        }
    }

    /// IROBs fully sent long ago and still not ACKed (an ACK lost with a connection, or a
    /// connection that silently stopped): ask the receiver with DATA_CHECK on the best network;
    /// it answers ACK for what it has and RESEND_REQUEST for what it misses.
    private func checkStaleIROBs(nowNs: UInt64) {
        guard sender.unackedCount > 0, nowNs >= nextDataCheckNs else { return }
        let staleNs = UInt64(Session.dataCheckAfterSeconds * 1e9)
        var ids: [IROBID] = []
        for (key, irob) in sender.unacked where irob.unsent.isEmpty && !irob.queued && irob.lastSentNs != 0
            && nowNs &- irob.lastSentNs > staleNs {
            ids.append(IROBID(key))
        }
        guard !ids.isEmpty else { return }
        let usable = conns.usableStatuses()
        guard let nid = options.chooser.choose(for: .foreground | .small, among: usable), let c = conns.byNetwork[nid] else { return }
        ids.sort()
        c.control.append(.dataCheck(ids: Array(ids.prefix(Wire.maxListEntries))))
        nextDataCheckNs = nowNs + staleNs
        log.debug("DATA_CHECK", metadata: ["count": "\(min(ids.count, Wire.maxListEntries))", "interface": "\(c.network.interfaceName)"])
        loop.markDirty(self)
    }

    // MARK: - Closing

    /// Starts an orderly close: wait until everything sent is ACKed (or the deadline), then GOODBYE.
    func beginClose(timeoutSeconds: Double, waiter: CheckedContinuation<CloseReport, Never>, nowNs: UInt64) {
        if let r = closeReport {
            loop.deferAfterUnlock { waiter.resume(returning: r) }
            return
        }
        mailbox.addCloseWaiter(waiter)
        guard phase == .open else { return }
        phase = .closing
        if sender.unackedCount == 0 || peerGoodbye || conns.byNetwork.isEmpty && role == .server {
            finishClose(flushed: sender.unackedCount == 0, nowNs: nowNs)
            return
        }
        loop.schedule(atNs: nowNs + UInt64(max(0, timeoutSeconds) * 1e9)) { [weak self] in
            guard let self, self.phase == .closing else { return }
            self.finishClose(flushed: self.sender.unackedCount == 0, nowNs: cshims_monotonic_ns())
        }
        loop.markDirty(self)
    }

    func finishClose(flushed: Bool, nowNs: UInt64) {
        guard phase != .closed else { return }
        phase = .closed
        let undelivered = sender.unacked.keys.sorted().map { IROBID($0) }
        let report = CloseReport(undelivered: undelivered, flushed: flushed && undelivered.isEmpty)
        closeReport = report
        let goodbye = Frame.goodbye(Goodbye(reason: undelivered.isEmpty ? .closed : .abandoned, lastID: sender.lastAssignedID))
        for c in conns.all {
            if c.state == .established && !peerGoodbye {
                encodeAcks(c, nowNs: nowNs)
                c.control.append(goodbye)
                c.drainControl()
                // Best effort: the socket is nonblocking; what does not fit the kernel buffer is lost.
                _ = c.out.write(to: c.fd)
                shutdown(c.fd, Int32(SHUT_WR))
            }
            loop.unregister(fd: c.fd)
            c.closeSocket()
        }
        conns.removeAll()
        syncReceiveMemory()
        log.info("closed", metadata: ["undelivered": "\(undelivered.count)"])
        teardown(error: .closed)
        mailbox.closeFinished(report)
    }

    /// A fatal condition: everything waiting fails with `e`.
    func fail(_ e: IntNWError, nowNs: UInt64) {
        guard phase != .closed else { return }
        failure = e
        phase = .closing
        finishClose(flushed: false, nowNs: nowNs)
    }

    private func teardown(error: IntNWError) {
        background.close()
        monitor?.stop()
        monitor = nil
        mailbox.establishFailed(failure ?? error)
        mailbox.wakeSenders()
        deliverToReceivers()
        mailbox.failReceivers(failure ?? error)
        mailbox.dropThunks()
        listener?.sessionClosed(self)
        if role == .client { loop.requestStop() }
    }
}
