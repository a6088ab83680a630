/// The engine of one multisocket: IROB sender and receiver cores, the connections (one per
/// network), scheduling onto them, failover, passive estimation, and the state the async API
/// waits on. Runs on an `IOLoop`; every member is touched only under the loop lock.
#if canImport(Glibc)
import Glibc
#endif
import CShims
import Logging

/// Per-network bookkeeping (estimates, counters) that outlives individual connections.
final class NetState {
    let networkID: UInt32
    var kind: NetworkKind
    var name: String
    var estimator: NetworkEstimator
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var lastForegroundNs: UInt64 = 0
    init(networkID: UInt32, kind: NetworkKind, name: String) {
        self.networkID = networkID
        self.kind = kind
        self.name = name
        self.estimator = NetworkEstimator(kind: kind)
    }
}

/// What `close` reports.
public struct CloseReport: Sendable, Equatable {
    /// IROBs this side sent that the peer never acknowledged.
    public var undelivered: [IROBID]
    /// Whether the close was orderly (everything acknowledged before the timeout).
    public var flushed: Bool
}

/// A message as the application receives it.
public struct Message: Sendable, Equatable {
    public var id: IROBID
    public var labels: Labels
    public var bytes: [UInt8]
}

final class Session: IOHandler, IOService {
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
    private(set) var connsByFD: [Int32: Connection] = [:]
    private var connsByID: [ConnectionID: Connection] = [:]
    /// The current connection of each network.
    private(set) var connByNetwork: [UInt32: Connection] = [:]
    private(set) var nets: [UInt32: NetState] = [:]
    private var nextConnID: UInt32 = 1

    // Application-facing state.
    private var inbox: [ReceivedIROB] = []
    private var inboxHead = 0
    /// Suspended `receive` / `send` calls, each with a token so a cancelled task can take its own back out.
    private var receiveWaiters: [(token: UInt64, c: CheckedContinuation<Message, Error>)] = []
    private var sendWaiters: [(token: UInt64, c: CheckedContinuation<Void, Never>)] = []
    private var nextWaiterToken: UInt64 = 1
    private var closeWaiters: [CheckedContinuation<CloseReport, Never>] = []
    private var establishWaiters: [CheckedContinuation<Void, Error>] = []
    private var thunks: [(restriction: NetworkRestriction, thunk: @Sendable () -> Void)] = []
    private(set) var phase: Phase = .open
    private var closeReport: CloseReport?
    private var fatalError: IntNWError?
    private(set) var peerGoodbye = false
    private var readPaused = false
    private var maintenanceScheduled = false
    /// Deadline of the earliest armed trouble-check timer (0: none); see Trouble/SessionTrouble.swift.
    var troubleTimerNs: UInt64 = 0
    private var nextDataCheckNs: UInt64 = 0
    /// When a background policy asked to be consulted again (monotonic ns), if it did.
    private var backgroundWakeNs: UInt64?
    /// An IROB fully sent this long ago without an ACK triggers a DATA_CHECK, in seconds.
    static let dataCheckAfterSeconds = 2.0

    // Client side.
    let server: IPv4Endpoint?
    private(set) var localNetworks: [UInt32: LocalNetwork] = [:]
    private var reconnectAttempts: [UInt32: Int] = [:]
    private var reconnectPending: Set<UInt32> = []
    private var lastConnectError: String = "no usable network"
    var monitor: NetworkMonitor?

    // Server side.
    weak var listener: ListenerCore?
    private var idleSinceNs: UInt64?
    let idleTimeoutNs: UInt64

    static let outCapacity = 192 << 10
    /// Data is appended while less than this is queued in user space (keeps FG close to the socket).
    static let outHighWater = 64 << 10
    static let readChunk = 128 << 10

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
        var log = options.logger
        log[metadataKey: "session"] = "\(sessionID)"
        log[metadataKey: "role"] = "\(role == .client ? "client" : "server")"
        self.log = log
        self.background = BackgroundScheduler(options: options, role: role, log: log)
    }

    // MARK: - Network view

    private func netState(_ n: LocalNetwork) -> NetState {
        if let s = nets[n.networkID] {
            s.kind = n.kind
            s.name = n.interfaceName
            return s
        }
        let s = NetState(networkID: n.networkID, kind: n.kind, name: n.interfaceName)
        nets[n.networkID] = s
        return s
    }

    func status(of net: NetState) -> NetworkStatus {
        let c = connByNetwork[net.networkID]
        return NetworkStatus(networkID: net.networkID, kind: net.kind, interfaceName: net.name,
                             usable: c?.state == .established, troubled: c?.troubled ?? false,
                             estimate: net.estimator.current, bytesSent: net.bytesSent,
                             bytesReceived: net.bytesReceived, lastForegroundActivityNs: net.lastForegroundNs)
    }

    var allStatuses: [NetworkStatus] { nets.values.map { status(of: $0) }.sorted { $0.networkID < $1.networkID } }

    /// Usable, untroubled networks: what the chooser may pick from.
    private func usableStatuses() -> [NetworkStatus] {
        var out: [NetworkStatus] = []
        for (nid, c) in connByNetwork where c.state == .established && !c.troubled {
            if let n = nets[nid] { out.append(status(of: n)) }
        }
        return out
    }

    func hasSuitableNetwork(_ r: NetworkRestriction) -> Bool {
        connByNetwork.values.contains { $0.state == .established && !$0.troubled && r.allows($0.network.kind) }
    }

    func setOracle(_ estimate: NetworkEstimate?, networkID: UInt32?, kind: NetworkKind?) {
        for n in nets.values where (networkID == nil || n.networkID == networkID) && (kind == nil || n.kind == kind) {
            n.estimator.oracle = estimate.map {
                var e = $0
                e.source = .oracle
                return e
            }
        }
        loop.markDirty(self)
    }

    // MARK: - Client: networks and connections

    /// The monitor (or static configuration) reports the current set of usable local networks.
    func networksChanged(_ current: [LocalNetwork], nowNs: UInt64) {
        guard role == .client, phase != .closed else { return }
        let byID = Dictionary(current.map { ($0.networkID, $0) }, uniquingKeysWith: { a, _ in a })
        for (nid, old) in localNetworks where byID[nid] != old {
            localNetworks[nid] = nil
            retireNetwork(nid, reason: byID[nid] == nil ? "network gone" : "address changed", nowNs: nowNs)
        }
        for (nid, n) in byID where localNetworks[nid] == nil {
            localNetworks[nid] = n
            reconnectAttempts[nid] = 0
            log.info("network up", metadata: ["interface": "\(n.interfaceName)", "kind": "\(n.kind)",
                                              "address": "\(IPv4Endpoint.format(n.address))"])
            openConnection(n, nowNs: nowNs)
        }
        if localNetworks.isEmpty { failEstablishWaitersIfHopeless() }
    }

    private func retireNetwork(_ nid: UInt32, reason: String, nowNs: UInt64) {
        reconnectPending.remove(nid)
        // Every connection on it, also those still connecting or waiting for the server's HELLO.
        for c in Array(connsByFD.values) where c.network.networkID == nid {
            log.info("network retired", metadata: ["interface": "\(c.network.interfaceName)", "reason": "\(reason)"])
            connectionFailed(c, reason: reason, nowNs: nowNs)
        }
        // Tell the server at once, over whatever is left, so it resends what that network carried.
        for c in connByNetwork.values where c.state == .established {
            c.control.append(.downInterface(networkID: nid))
        }
        loop.markDirty(self)
    }

    private func openConnection(_ n: LocalNetwork, nowNs: UInt64) {
        guard let server, phase != .closed else { return }
        let fd: Int32
        do {
            fd = try Sockets.tcpSocket()
        } catch {
            lastConnectError = "\(n.interfaceName): \(error)"
            scheduleReconnect(n.networkID, nowNs: nowNs)
            return
        }
        Sockets.configureConnection(fd, notSentLowWatermarkBytes: options.notSentLowWatermarkBytes)
        do {
            // Bind first so source-based policy routing sends it over this interface; and to the
            // device itself where allowed, for hosts without policy routing.
            if options.bindToDevice && !Sockets.bindToDevice(fd, n.interfaceName) {
                log.debug("SO_BINDTODEVICE refused; relying on source-address routing", metadata: ["interface": "\(n.interfaceName)"])
            }
            try Sockets.bind(fd, IPv4Endpoint(address: n.address, port: 0))
            let done = try Sockets.startConnect(fd, to: server)
            let c = Connection(id: ConnectionID(nextConnID), fd: fd, state: .connecting, network: n,
                               outCapacity: Session.outCapacity, nowNs: nowNs)
            nextConnID += 1
            _ = netState(n)
            connsByFD[fd] = c
            connsByID[c.id] = c
            loop.register(fd: fd, self)
            if done { connectCompleted(c, nowNs: nowNs) }
        } catch {
            Glibc.close(fd)
            lastConnectError = "\(n.interfaceName): \(error)"
            log.debug("connect failed", metadata: ["interface": "\(n.interfaceName)", "error": "\(error)"])
            scheduleReconnect(n.networkID, nowNs: nowNs)
        }
    }

    private func scheduleReconnect(_ nid: UInt32, nowNs: UInt64) {
        guard role == .client, phase == .open, !peerGoodbye, localNetworks[nid] != nil,
              !reconnectPending.contains(nid) else { return }
        let attempt = reconnectAttempts[nid, default: 0]
        reconnectAttempts[nid] = attempt + 1
        let delay = min(5.0, options.reconnectDelaySeconds * Double(1 << min(attempt, 5)))
        reconnectPending.insert(nid)
        loop.schedule(atNs: nowNs + UInt64(delay * 1e9)) { [weak self] in
            guard let self else { return }
            self.reconnectPending.remove(nid)
            guard self.phase == .open, let n = self.localNetworks[nid], self.connByNetwork[nid] == nil,
                  !self.connsByFD.values.contains(where: { $0.network.networkID == nid && $0.state != .closed }) else { return }
            self.openConnection(n, nowNs: cshims_monotonic_ns())
        }
        failEstablishWaitersIfHopeless()
    }

    private func connectCompleted(_ c: Connection, nowNs: UInt64) {
        let err = Sockets.pendingError(c.fd)
        if err != 0 {
            lastConnectError = "\(c.network.interfaceName): connect: \(String(cString: strerror(err)))"
            connectionFailed(c, reason: "connect: \(String(cString: strerror(err)))", nowNs: nowNs)
            return
        }
        c.state = .awaitingHello
        c.control.append(.hello(Hello(role: .client, session: sessionID, networkID: c.network.networkID,
                                      networkKind: c.network.kind, interfaceName: c.network.interfaceName)))
        loop.markDirty(self)
    }

    /// A connection is usable: make it the network's connection and let waiting work proceed.
    private func establish(_ c: Connection, nowNs: UInt64) {
        c.state = .established
        let nid = c.network.networkID
        if let old = connByNetwork[nid], old !== c {
            connectionFailed(old, reason: "replaced by a new connection on the same network", nowNs: nowNs)
        }
        connByNetwork[nid] = c
        reconnectAttempts[nid] = 0
        idleSinceNs = nil
        c.lastAckReceivedNs = nowNs
        var info = cshims_tcp_info()
        var len: UInt32 = 0
        if cshims_get_tcp_info(c.fd, &info, &len) == 0 { nets[nid]?.estimator.addTCPInfo(info) }
        log.info("connection established", metadata: ["interface": "\(c.network.interfaceName)", "kind": "\(c.network.kind)"])
        if role == .client {
            // Informational for the server (and for anyone reading a capture).
            let info = InterfaceInfo(networkID: nid, kind: c.network.kind, ipv4Address: c.network.address, name: c.network.interfaceName)
            for other in connByNetwork.values where other !== c && other.state == .established {
                other.control.append(.newInterface(info))
            }
        }
        let waiters = establishWaiters
        establishWaiters.removeAll()
        for w in waiters { loop.deferAfterUnlock { w.resume() } }
        runThunks()
        scheduleMaintenance(nowNs: nowNs)
        loop.markDirty(self)
    }

    /// A connection died (or was retired): close it and put what it carried back in the queues.
    func connectionFailed(_ c: Connection, reason: String, nowNs: UInt64) {
        guard c.state != .closed else { return }
        let wasEstablished = c.state == .established
        if !wasEstablished { lastConnectError = "\(c.network.interfaceName): \(reason)" }
        loop.unregister(fd: c.fd)
        c.abortSocket()
        connsByFD[c.fd] = nil
        connsByID[c.id] = nil
        let nid = c.network.networkID
        if connByNetwork[nid] === c { connByNetwork[nid] = nil }
        // ACKs that were waiting for this connection go out on another one.
        if !c.pendingAcks.isEmpty, let other = connByNetwork.values.first(where: { $0.state == .established }) {
            other.pendingAcks.append(contentsOf: c.pendingAcks)
        }
        c.pendingAcks.removeAll()
        let requeued = sender.connectionFailed(c.id)
        if wasEstablished || !requeued.isEmpty {
            log.info("connection closed", metadata: ["interface": "\(c.network.interfaceName)", "reason": "\(reason)",
                                                     "requeued": "\(requeued.count)"])
        }
        if role == .client {
            if localNetworks[nid] != nil && phase == .open && !peerGoodbye { scheduleReconnect(nid, nowNs: nowNs) }
        } else if connsByFD.isEmpty {
            idleSinceNs = nowNs
            scheduleMaintenance(nowNs: nowNs)
        }
        loop.markDirty(self)
    }

    private func failEstablishWaitersIfHopeless() {
        // Keep waiting while any network might still connect; `connect` has its own timeout.
        if role == .client && localNetworks.isEmpty && !establishWaiters.isEmpty && options.staticNetworks != nil {
            failEstablishWaiters(.connectFailed("no usable network"))
        }
    }

    func failEstablishWaiters(_ e: IntNWError) {
        let w = establishWaiters
        establishWaiters.removeAll()
        for c in w { loop.deferAfterUnlock { c.resume(throwing: e) } }
    }

    // MARK: - Server: attaching connections

    /// The listener hands over a connection whose HELLO named this session.
    func attach(fd: Int32, hello: Hello, leftover: [UInt8], nowNs: UInt64) {
        let net = LocalNetwork(networkID: hello.networkID, kind: hello.networkKind, interfaceName: hello.interfaceName, address: 0)
        _ = netState(net)
        let c = Connection(id: ConnectionID(nextConnID), fd: fd, state: .awaitingHello, network: net,
                           outCapacity: Session.outCapacity, nowNs: nowNs)
        nextConnID += 1
        connsByFD[fd] = c
        connsByID[c.id] = c
        loop.register(fd: fd, self)
        c.control.append(.hello(Hello(role: .server, session: sessionID, networkID: hello.networkID,
                                      networkKind: hello.networkKind, interfaceName: hello.interfaceName)))
        establish(c, nowNs: nowNs)
        if !leftover.isEmpty {
            c.decoder.feed(leftover)
            processFrames(c, nowNs: nowNs)
        }
    }

    // MARK: - IOHandler

    func pollEvents(fd: Int32) -> Int16 {
        guard let c = connsByFD[fd] else { return 0 }
        if c.state == .connecting { return Int16(POLLOUT) }
        var e: Int16 = 0
        if receiver.shouldRead && c.decoder.failed == nil { e |= Int16(POLLIN) }
        if c.out.pending > 0 || !c.control.isEmpty { e |= Int16(POLLOUT) }
        return e
    }

    func handle(fd: Int32, revents: Int16, nowNs: UInt64) {
        guard let c = connsByFD[fd] else { return }
        if c.state == .connecting {
            connectCompleted(c, nowNs: nowNs)
            return
        }
        if revents & Int16(POLLIN) != 0 || revents & Int16(POLLHUP | POLLERR) != 0 {
            readAvailable(c, nowNs: nowNs)
        }
        if c.state != .closed, revents & Int16(POLLOUT) != 0 {
            flush(c, nowNs: nowNs)
        }
        loop.markDirty(self)
    }

    private func readAvailable(_ c: Connection, nowNs: UInt64) {
        var reads = 0
        while c.state != .closed && receiver.shouldRead && reads < 8 {
            reads += 1
            let n = c.decoder.fill(atLeast: Session.readChunk) { buf in
                Glibc.recv(c.fd, buf.baseAddress, buf.count, 0)
            }
            if n == 0 {
                connectionFailed(c, reason: peerGoodbye ? "closed after GOODBYE" : "closed by peer", nowNs: nowNs)
                return
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                connectionFailed(c, reason: "recv: \(String(cString: strerror(errno)))", nowNs: nowNs)
                return
            }
            processFrames(c, nowNs: nowNs)
            if n < Session.readChunk { return }
        }
    }

    // MARK: - Incoming frames

    /// Decodes and handles buffered frames while the receive buffer allows.
    private func processFrames(_ c: Connection, nowNs: UInt64) {
        do {
            while c.state != .closed && receiver.shouldRead {
                let d = try c.decoder.decodeNextRaw { id, offset, bytes in
                    if c.state != .established {
                        throw ProtocolError(.unexpected("DATA before HELLO"))
                    }
                    let reaction = try receiver.data(id: id, offset: offset, bytes: bytes, nowNs: nowNs)
                    if case .reAck(let rid) = reaction { c.pendingAcks.append((rid, nowNs)) }
                    nets[c.network.networkID]?.bytesReceived += UInt64(bytes.count)
                }
                switch d {
                case .needMore: return
                case .dataHandled: break
                case .frame(let f): try handleFrame(f, on: c, nowNs: nowNs)
                }
                collectReceived(c, nowNs: nowNs)
            }
        } catch let e as ProtocolError {
            // Only this connection goes: what it carried is resent on the others.
            log.warning("protocol error, closing connection", metadata: ["interface": "\(c.network.interfaceName)", "error": "\(e)"])
            connectionFailed(c, reason: "\(e)", nowNs: nowNs)
        } catch {
            connectionFailed(c, reason: "\(error)", nowNs: nowNs)
        }
    }

    private func collectReceived(_ c: Connection, nowNs: UInt64) {
        let acks = receiver.takePendingAcks()
        if !acks.isEmpty { c.pendingAcks.append(contentsOf: acks) }
        let released = receiver.takeReleased()
        if !released.isEmpty {
            for r in released where r.labels.isForeground {
                nets[c.network.networkID]?.lastForegroundNs = nowNs
                background.observe(.received(id: r.id, networkID: c.network.networkID, nowNs: nowNs), interface: c.network.interfaceName)
            }
            inbox.append(contentsOf: released)
            deliverToReceivers()
        }
        if peerGoodbye && receiver.allReleased { deliverToReceivers() }
    }

    private func handleFrame(_ f: Frame, on c: Connection, nowNs: UInt64) throws {
        if c.state == .awaitingHello {
            guard case .hello(let h) = f, role == .client, h.role == .server, h.session == sessionID else {
                throw ProtocolError(.unexpected("expected the server's HELLO, got frame type 0x\(String(f.typeCode, radix: 16))"))
            }
            establish(c, nowNs: nowNs)
            return
        }
        switch f {
        case .hello:
            throw ProtocolError(.unexpected("second HELLO on a connection"))
        case .beginIROB(let b):
            if case .reAck(let id) = try receiver.begin(b, nowNs: nowNs) { c.pendingAcks.append((id, nowNs)) }
        case .data:
            break  // handled in place by processFrames
        case .endIROB(let id, let length):
            _ = try receiver.end(id: id, length: length)
        case .ack(let a):
            handleAck(a, on: c, nowNs: nowNs)
        case .resendRequest(let r):
            sender.resend(r)
        case .dataCheck(let ids):
            let (ack, resend) = receiver.check(ids)
            for id in ack { c.pendingAcks.append((id, nowNs)) }
            c.control.append(contentsOf: resend.map { .resendRequest($0) })
        case .newInterface(let info):
            log.debug("peer announced network", metadata: ["interface": "\(info.name)", "kind": "\(info.kind)"])
        case .downInterface(let nid):
            if let other = connByNetwork[nid], other !== c {
                connectionFailed(other, reason: "peer reported its network down", nowNs: nowNs)
            }
        case .goodbye(let g):
            peerGoodbye = true
            receiver.peerLastID = g.lastID
            log.info("peer said goodbye", metadata: ["reason": "\(g.reason)", "lastID": "\(g.lastID)"])
            deliverToReceivers()
            wakeSenders()
        case .ping(let nonce):
            c.control.append(.pong(nonce: nonce, holdMicroseconds: 0))
        case .pong:
            break
        case .extension(let type, let body):
            handleExtensionFrame(type: type, body: body, on: c, nowNs: nowNs)
        }
    }

    private func handleAck(_ a: Ack, on c: Connection, nowNs: UInt64) {
        c.lastAckReceivedNs = nowNs
        var samples = sender.acknowledge(below: a.cumulative)
        var holds: [IROBID: UInt32] = [:]
        for e in a.entries {
            if let s = sender.acknowledge(e.id) {
                samples.append(s)
                holds[e.id] = e.holdMicroseconds
            }
        }
        for s in samples where s.labels.isForeground {
            background.observe(.acknowledged(id: s.id, nowNs: nowNs), interface: nil)
            troubleForegroundAcknowledged(s.id)
        }
        for s in samples where !s.resent && s.singleConnection {
            guard let conn = s.connection.flatMap({ connsByID[$0] }), conn === c,
                  let net = nets[c.network.networkID] else { continue }
            let hold = UInt64(holds[s.id] ?? 0) * 1000
            let elapsed = nowNs &- s.firstSentNs
            if elapsed > hold {
                net.estimator.addIROBSample(bytes: s.lengthBytes, queuedAheadBytes: s.queuedAheadBytes, elapsedNs: elapsed - hold,
                                            sendSpanNs: s.lastSentNs &- s.firstSentNs)
            }
        }
        if !samples.isEmpty {
            wakeSenders()
            if phase == .closing && sender.unackedCount == 0 { finishClose(flushed: true, nowNs: nowNs) }
        }
    }

    // MARK: - Service: scheduling and writing

    func service(nowNs: UInt64) {
        if phase == .closed { return }
        if readPaused && receiver.shouldRead {
            readPaused = false
            for c in Array(connsByFD.values) where c.state != .closed && c.decoder.bufferedByteCount > 0 {
                processFrames(c, nowNs: nowNs)
            }
        }
        if !receiver.shouldRead { readPaused = true }
        var usable: [NetworkStatus]?
        var choices: [UInt32: UInt32?] = [:]
        for c in Array(connsByFD.values) where c.state == .established || c.state == .awaitingHello {
            if c.state == .established {
                if usable == nil { usable = usableStatuses() }
                // Keep the socket fed while it takes everything; when it stops (EAGAIN), POLLOUT
                // brings us back. Bounded so reads on other connections are not starved.
                var rounds = 0
                while true {
                    let produced = pump(c, usable: usable!, choices: &choices, nowNs: nowNs)
                    flush(c, nowNs: nowNs)
                    rounds += 1
                    if produced == 0 || c.state == .closed || c.out.pending > 0 { break }
                    if rounds >= 16 {
                        loop.markDirty(self)
                        break
                    }
                }
            } else {
                c.drainControl()
                flush(c, nowNs: nowNs)
            }
        }
    }

    private func flush(_ c: Connection, nowNs: UInt64) {
        guard c.state != .closed && c.state != .connecting else { return }
        c.drainControl()
        if let err = c.out.write(to: c.fd) {
            connectionFailed(c, reason: "send: \(String(cString: strerror(err)))", nowNs: nowNs)
        }
    }

    private func encodeAcks(_ c: Connection, nowNs: UInt64) {
        while !c.pendingAcks.isEmpty {
            let n = min(c.pendingAcks.count, Wire.maxListEntries)
            guard c.out.reserve(FrameEncoder.ackBaseLength + n * FrameEncoder.ackEntryLength) else { return }
            let entries = c.pendingAcks[0..<n].map { p in
                AckEntry(id: p.id, holdMicroseconds: UInt32(clamping: (nowNs &- p.completedAtNs) / 1000))
            }
            _ = c.out.append(.ack(Ack(cumulative: receiver.releaseFloor, entries: entries)))
            c.pendingAcks.removeFirst(n)
        }
    }

    /// Fills `c`'s send buffer: control frames, ACKs, then IROB chunks the chooser assigns to its
    /// network. Returns how much IROB data (bytes, +1 per chunk) it queued.
    private func pump(_ c: Connection, usable: [NetworkStatus], choices: inout [UInt32: UInt32?], nowNs: UInt64) -> Int {
        c.drainControl()
        encodeAcks(c, nowNs: nowNs)
        guard !c.troubled else { return 0 }
        var produced = 0
        let nid = c.network.networkID
        var bgAllowance: Int?
        while c.out.pending < Session.outHighWater {
            // Foreground before background; within a class, lowest id first.
            var best: (labels: Labels, id: IROBID)?
            for h in sender.queueHeads {
                let choice: UInt32?
                if let cached = choices[h.labels.rawValue] {
                    choice = cached
                } else {
                    choice = options.chooser.choose(for: h.labels, among: usable)
                    choices[h.labels.rawValue] = .some(choice)
                }
                guard choice == nid else { continue }
                if let b = best {
                    let better = (h.labels.isForeground && !b.labels.isForeground)
                        || (h.labels.isForeground == b.labels.isForeground && h.id < b.id)
                    if better { best = h }
                } else {
                    best = h
                }
            }
            guard let pick = best else { return produced }
            var maxBytes = options.sendLimits.maxChunkBytes
            if pick.labels.isBackground {
                // No foreground is waiting for this interface (it would have been picked first).
                if bgAllowance == nil {
                    bgAllowance = backgroundAllowance(c, usable: usable, nowNs: nowNs)
                }
                if bgAllowance! <= 0 { return produced }
                maxBytes = min(maxBytes, bgAllowance!)
            }
            let room = Session.outCapacity - c.out.pending - FrameEncoder.dataHeaderLength - 64
                - BeginIROB.maxEncodedLength - 32
            maxBytes = min(maxBytes, room)
            if maxBytes <= 0 { return produced }
            guard c.out.reserve(maxBytes + FrameEncoder.dataHeaderLength + BeginIROB.maxEncodedLength + 64) else { return produced }
            // For passive estimation: what is already queued on this connection ahead of a new IROB.
            var aheadBytes: Int?
            if let irob = sender.unacked[pick.id.rawValue], irob.firstSentNs == 0 {
                aheadBytes = max(0, Int(cshims_siocoutq(c.fd))) + c.out.pending
            }
            guard let chunk = sender.nextChunk(labels: pick.labels, maxBytes: maxBytes, on: c.id, nowNs: nowNs) else { continue }
            if let aheadBytes { sender.unacked[chunk.id.rawValue]?.queuedAheadBytes = aheadBytes }
            produced += chunk.range.count + 1
            if let b = chunk.begin { _ = c.out.append(.beginIROB(b)) }
            if !chunk.range.isEmpty {
                sender.withBytes(of: chunk.id) { all in
                    let slice = UnsafeRawBufferPointer(rebasing: all[Int(chunk.range.lowerBound)..<Int(chunk.range.upperBound)])
                    c.out.appendData(id: chunk.id, offset: chunk.range.lowerBound, payload: slice)
                }
            }
            if chunk.isLast {
                _ = c.out.append(.endIROB(id: chunk.id, length: UInt32(sender.unacked[chunk.id.rawValue]?.bytes.count ?? 0)))
            }
            if let net = nets[nid] {
                net.bytesSent += UInt64(chunk.range.count)
                if pick.labels.isForeground {
                    troubleForegroundSent(c, id: chunk.id, nowNs: nowNs)
                    net.lastForegroundNs = nowNs
                    background.observe(.sent(id: chunk.id, networkID: nid, bytes: chunk.range.count, nowNs: nowNs), interface: net.name)
                }
            }
            if pick.labels.isBackground { bgAllowance! -= chunk.range.count }
        }
        return produced
    }

    private func backgroundAllowance(_ c: Connection, usable: [NetworkStatus], nowNs: UInt64) -> Int {
        guard let net = nets[c.network.networkID] else { return 0 }
        let decision = background.decide(network: status(of: net), otherUsableNetworks: usable.count - 1, fd: c.fd,
                                         userQueuedBytes: c.out.pending, nowNs: nowNs)
        switch decision {
        case .send(let maxBytes): return maxBytes
        case .wait(let until):
            // One pending wake-up per session is enough: keep the earliest.
            if let until, backgroundWakeNs == nil || until < backgroundWakeNs! {
                backgroundWakeNs = until
                loop.schedule(atNs: until) { [weak self] in
                    guard let self, self.backgroundWakeNs == until else { return }
                    self.backgroundWakeNs = nil
                    self.loop.markDirty(self)
                }
            }
            return 0
        }
    }

    // MARK: - Maintenance: TCP_INFO sampling, trouble detection, idle sessions

    private func scheduleMaintenance(nowNs: UInt64) {
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
        for c in Array(connByNetwork.values) where c.state == .established {
            var info = cshims_tcp_info()
            var len: UInt32 = 0
            guard cshims_get_tcp_info(c.fd, &info, &len) == 0, let net = nets[c.network.networkID] else { continue }
            net.estimator.addTCPInfo(info)
        }
        // Trouble checks run on their own timer (Trouble/SessionTrouble.swift), at the earliest
        // moment a timeout could expire rather than on this period.
        checkStaleIROBs(nowNs: nowNs)
        if role == .server, let idle = idleSinceNs, connsByFD.isEmpty, nowNs - idle > idleTimeoutNs {
            log.info("session idle too long, closing")
            fail(.closed, nowNs: nowNs)
            return
        }
        if !connsByFD.isEmpty || idleSinceNs != nil { scheduleMaintenance(nowNs: nowNs) }
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
        let usable = usableStatuses()
        guard let nid = options.chooser.choose(for: .foreground | .small, among: usable), let c = connByNetwork[nid] else { return }
        ids.sort()
        c.control.append(.dataCheck(ids: Array(ids.prefix(Wire.maxListEntries))))
        nextDataCheckNs = nowNs + staleNs
        log.debug("DATA_CHECK", metadata: ["count": "\(min(ids.count, Wire.maxListEntries))", "interface": "\(c.network.interfaceName)"])
        loop.markDirty(self)
    }

    // MARK: - Application side (called under the lock)

    func runThunks() {
        guard !thunks.isEmpty else { return }
        var keep: [(restriction: NetworkRestriction, thunk: @Sendable () -> Void)] = []
        for t in thunks {
            if hasSuitableNetwork(t.restriction) {
                let f = t.thunk
                loop.deferAfterUnlock { Task.detached { f() } }
            } else {
                keep.append(t)
            }
        }
        thunks = keep
    }

    func addThunk(_ r: NetworkRestriction, _ t: @escaping @Sendable () -> Void) { thunks.append((r, t)) }

    /// The application enqueued IROB `id`: foreground data counts as waiting for the network the
    /// chooser would give it now (the multi-app barrier starts here, not when it is sent).
    func enqueued(_ id: IROBID, labels: Labels) {
        guard labels.isForeground else { return }
        let nid = options.chooser.choose(for: labels, among: usableStatuses())
        background.foregroundEnqueued(id, interface: nid.flatMap { nets[$0]?.name })
    }

    func addEstablishWaiter(_ c: CheckedContinuation<Void, Error>) {
        if connByNetwork.values.contains(where: { $0.state == .established }) {
            loop.deferAfterUnlock { c.resume() }
        } else if let e = fatalError ?? (phase != .open ? IntNWError.closed : nil) {
            loop.deferAfterUnlock { c.resume(throwing: e) }
        } else {
            establishWaiters.append(c)
        }
    }

    var lastConnectErrorText: String { lastConnectError }

    /// The error a send gets now, if any.
    var sendBlockedError: IntNWError? {
        if let e = fatalError { return e }
        if phase != .open || peerGoodbye { return .closed }
        return nil
    }

    /// A token for `addSendWaiter` / `addReceiveWaiter` and the matching `cancel...Waiter`.
    func makeWaiterToken() -> UInt64 {
        nextWaiterToken += 1
        return nextWaiterToken
    }

    func addSendWaiter(_ c: CheckedContinuation<Void, Never>, token: UInt64) { sendWaiters.append((token, c)) }

    /// The task waiting for send-window space was cancelled: let it go (it enqueued nothing).
    func cancelSendWaiter(_ token: UInt64) {
        guard let i = sendWaiters.firstIndex(where: { $0.token == token }) else { return }
        let w = sendWaiters.remove(at: i).c
        loop.deferAfterUnlock { w.resume() }
    }

    private func wakeSenders() {
        guard !sendWaiters.isEmpty else { return }
        let w = sendWaiters
        sendWaiters.removeAll()
        for c in w { loop.deferAfterUnlock { c.c.resume() } }
    }

    /// Takes one received message if there is one (and frees its buffer space).
    func takeMessage() -> Message? {
        guard inboxHead < inbox.count else { return nil }
        let r = inbox[inboxHead]
        inbox[inboxHead] = ReceivedIROB(id: r.id, labels: r.labels, bytes: [])
        inboxHead += 1
        if inboxHead == inbox.count {
            inbox.removeAll(keepingCapacity: true)
            inboxHead = 0
        } else if inboxHead > 4096 {
            inbox.removeFirst(inboxHead)
            inboxHead = 0
        }
        receiver.consumed(length: r.bytes.count)
        if readPaused && receiver.shouldRead {
            loop.markDirty(self)
            loop.wakeLocked()
        }
        return Message(id: r.id, labels: r.labels, bytes: r.bytes)
    }

    /// Why `receive` cannot return anything more, if that is the case.
    var receiveEndError: IntNWError? {
        if inboxHead < inbox.count { return nil }
        if let e = fatalError { return e }
        if peerGoodbye && (receiver.allReleased || connsByFD.isEmpty) { return .endOfStream }
        if phase == .closed { return .closed }
        return nil
    }

    func addReceiveWaiter(_ c: CheckedContinuation<Message, Error>, token: UInt64) { receiveWaiters.append((token, c)) }

    /// The task waiting in `receive` was cancelled: it gets `CancellationError`. Only waiters not
    /// yet handed a message are here, so no message is lost.
    func cancelReceiveWaiter(_ token: UInt64) {
        guard let i = receiveWaiters.firstIndex(where: { $0.token == token }) else { return }
        let w = receiveWaiters.remove(at: i).c
        loop.deferAfterUnlock { w.resume(throwing: CancellationError()) }
    }

    private func deliverToReceivers() {
        while !receiveWaiters.isEmpty {
            if let m = takeMessage() {
                let w = receiveWaiters.removeFirst().c
                loop.deferAfterUnlock { w.resume(returning: m) }
            } else if let e = receiveEndError {
                let w = receiveWaiters
                receiveWaiters.removeAll()
                for c in w { loop.deferAfterUnlock { c.c.resume(throwing: e) } }
            } else {
                return
            }
        }
    }

    // MARK: - Closing

    /// Starts an orderly close: wait until everything sent is ACKed (or the deadline), then GOODBYE.
    func beginClose(timeoutSeconds: Double, waiter: CheckedContinuation<CloseReport, Never>, nowNs: UInt64) {
        if let r = closeReport {
            loop.deferAfterUnlock { waiter.resume(returning: r) }
            return
        }
        closeWaiters.append(waiter)
        guard phase == .open else { return }
        phase = .closing
        if sender.unackedCount == 0 || peerGoodbye || connByNetwork.isEmpty && role == .server {
            finishClose(flushed: sender.unackedCount == 0, nowNs: nowNs)
            return
        }
        loop.schedule(atNs: nowNs + UInt64(max(0, timeoutSeconds) * 1e9)) { [weak self] in
            guard let self, self.phase == .closing else { return }
            self.finishClose(flushed: self.sender.unackedCount == 0, nowNs: cshims_monotonic_ns())
        }
        loop.markDirty(self)
    }

    private func finishClose(flushed: Bool, nowNs: UInt64) {
        guard phase != .closed else { return }
        phase = .closed
        let undelivered = sender.unacked.keys.sorted().map { IROBID($0) }
        let report = CloseReport(undelivered: undelivered, flushed: flushed && undelivered.isEmpty)
        closeReport = report
        let goodbye = Frame.goodbye(Goodbye(reason: undelivered.isEmpty ? .closed : .abandoned, lastID: sender.lastAssignedID))
        for c in Array(connsByFD.values) {
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
        connsByFD.removeAll()
        connsByID.removeAll()
        connByNetwork.removeAll()
        log.info("closed", metadata: ["undelivered": "\(undelivered.count)"])
        teardown(error: .closed)
        let w = closeWaiters
        closeWaiters.removeAll()
        for c in w { loop.deferAfterUnlock { c.resume(returning: report) } }
    }

    /// A fatal condition: everything waiting fails with `e`.
    func fail(_ e: IntNWError, nowNs: UInt64) {
        guard phase != .closed else { return }
        fatalError = e
        phase = .closing
        finishClose(flushed: false, nowNs: nowNs)
    }

    private func teardown(error: IntNWError) {
        background.close()
        monitor?.stop()
        monitor = nil
        failEstablishWaiters(fatalError ?? error)
        wakeSenders()
        deliverToReceivers()
        let w = receiveWaiters
        receiveWaiters.removeAll()
        for c in w { loop.deferAfterUnlock { c.c.resume(throwing: self.fatalError ?? error) } }
        thunks.removeAll()
        listener?.sessionClosed(self)
        if role == .client { loop.requestStop() }
    }
}

extension BeginIROB {
    /// Upper bound of an encoded BEGIN_IROB, in bytes.
    static let maxEncodedLength = Wire.headerLength + 19 + 8 * Wire.maxDependencies
}
