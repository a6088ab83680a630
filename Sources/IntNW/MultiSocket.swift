/// The public API: client `MultiSocket.connect`, server `MultiSocketListener` + `accept`,
/// labelled `send`, `receive`, and `close`.
#if canImport(Glibc)
import Glibc
#endif
import CShims

/// Which earlier IROBs a message must be released after.
public enum Dependencies: Sendable, Equatable {
    /// After every IROB sent before it on this multisocket (the default: an ordered stream).
    case allEarlier
    /// Independent of everything else.
    case none
    /// After exactly these IROBs (each sent earlier on this multisocket).
    case on([IROBID])

    var spec: DependencySpec {
        switch self {
        case .allEarlier: .allEarlier
        case .none: .explicit([])
        case .on(let ids): .explicit(ids)
        }
    }
}

/// What `send` does when no current network may carry the message.
public enum NoNetworkAction: Sendable, Equatable {
    /// Queue it; it goes out when a suitable network appears.
    case wait
    /// Throw `IntNWError.noSuitableNetwork` at once.
    case fail
}

/// A multisocket: one logical, ordered-message channel spanning every network of the device.
// @unchecked: immutable (lets); the session it wraps is reached only under its loop lock.
public final class MultiSocket: @unchecked Sendable {
    let session: Session
    private let ownsLoop: Bool

    init(session: Session, ownsLoop: Bool) {
        self.session = session
        self.ownsLoop = ownsLoop
    }

    /// Dropping a multisocket without `close` abandons it: connections are closed at once.
    deinit {
        let session = self.session
        session.loop.withLock { session.fail(.closed, nowNs: cshims_monotonic_ns()) }
        if ownsLoop { session.loop.stopAndJoin() }
    }

    /// The session id the client chose; the server groups connections by it.
    public var sessionID: SessionID { session.sessionID }

    /// Connects to an IntNW server, opening one TCP connection per usable local network (each
    /// bound to that interface's address), and returns once the first one is established.
    /// Networks that appear later are joined automatically; networks that vanish are retired.
    ///
    /// - Parameters:
    ///   - host: IPv4 literal or host name of the server.
    ///   - port: server TCP port.
    public static func connect(to host: String, port: UInt16, options: MultiSocketOptions = MultiSocketOptions()) async throws -> MultiSocket {
        let address = try Sockets.resolveIPv4(host)
        let server = IPv4Endpoint(address: address, port: port)
        let loop = try IOLoop(name: "intnw-client", namespacePath: options.networkNamespacePath)
        let session = Session(loop: loop, role: .client, sessionID: .random(), options: options, server: server)
        do {
            loop.withLock {
                if let fixed = options.staticNetworks {
                    // Sockets are created on the loop thread: it is the one in the right namespace.
                    loop.execute { session.networksChanged(fixed, nowNs: cshims_monotonic_ns()) }
                } else {
                    // The monitor's socket must be created on the loop thread (it may be in a namespace).
                    loop.execute {
                        do {
                            let m = try NetworkMonitor(loop: loop, classifier: options.classifier, interfaces: options.interfaces,
                                                       logger: session.log) { nets, now in
                                session.networksChanged(nets, nowNs: now)
                            }
                            session.monitor = m
                        } catch {
                            session.fail(error as? IntNWError ?? .connectFailed("\(error)"), nowNs: cshims_monotonic_ns())
                        }
                    }
                }
            }
            loop.wake()
            let timeoutNs = UInt64(options.connectTimeoutSeconds * 1e9)
            loop.withLock {
                loop.schedule(atNs: cshims_monotonic_ns() + timeoutNs) {
                    session.failEstablishWaiters(.connectFailed("no network reached \(server) within \(options.connectTimeoutSeconds) s (last error: \(session.lastConnectErrorText))"))
                }
            }
            loop.wake()
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                loop.withLock { session.addEstablishWaiter(c) }
            }
        } catch {
            loop.withLock { session.fail(error as? IntNWError ?? .closed, nowNs: cshims_monotonic_ns()) }
            loop.stopAndJoin()
            throw error
        }
        return MultiSocket(session: session, ownsLoop: true)
    }

    /// Sends one message as an IROB and returns its id once it is queued (not yet delivered).
    ///
    /// With the default `.allEarlier`, the receiver gets messages in send order, so a foreground
    /// message still waits at the receiver for a large background one sent before it; pass
    /// `.none` (or explicit ids) to let foreground messages overtake.
    ///
    /// - Parameters:
    ///   - labels: foreground/background, small/large, network restriction.
    ///   - dependsOn: IROBs that must be released to the receiver first (default: all earlier).
    ///   - ifNoNetwork: wait for a suitable network (default) or fail at once.
    /// Suspends while the send window (`SendLimits.windowBytes`) is full; throws `CancellationError`
    /// (sending nothing) if the task is cancelled while suspended.
    @discardableResult
    public func send(_ bytes: [UInt8], labels: Labels = .none, dependsOn: Dependencies = .allEarlier,
                     ifNoNetwork: NoNetworkAction = .wait) async throws -> IROBID {
        try await sendImpl(bytes, labels: labels, dependsOn: dependsOn, ifNoNetwork: ifNoNetwork, thunk: nil)!
    }

    /// Sends now if a network suits `labels`; otherwise sends nothing, returns nil, and runs
    /// `thunk` (on a background task) once a suitable network appears, so the application can
    /// decide then what to send.
    public func sendOrDefer(_ bytes: [UInt8], labels: Labels = .none, dependsOn: Dependencies = .allEarlier,
                            thunk: @escaping @Sendable () -> Void) async throws -> IROBID? {
        try await sendImpl(bytes, labels: labels, dependsOn: dependsOn, ifNoNetwork: .wait, thunk: thunk)
    }

    private func sendImpl(_ bytes: [UInt8], labels: Labels, dependsOn: Dependencies, ifNoNetwork: NoNetworkAction,
                          thunk: (@Sendable () -> Void)?) async throws -> IROBID? {
        let loop = session.loop
        let session = self.session
        let spec = dependsOn.spec
        while true {
            let outcome: IROBID?? = try loop.withLock {
                if let e = session.sendBlockedError { throw e }
                do {
                    try session.sender.validate(length: bytes.count, dependencies: spec)
                } catch let error as IROBSender.EnqueueError {
                    switch error {
                    case .tooLarge(let n): throw IntNWError.messageTooLarge(bytes: n, limit: session.sender.limits.maxIROBBytes)
                    case .badDependency(let id): throw IntNWError.invalidDependency(id)
                    case .tooManyDependencies(let n): throw IntNWError.tooManyDependencies(n)
                    }
                }
                if !session.hasSuitableNetwork(labels.restriction) {
                    if let thunk {
                        session.addThunk(labels.restriction, thunk)
                        return .some(nil)
                    }
                    if ifNoNetwork == .fail { throw IntNWError.noSuitableNetwork(labels.restriction) }
                }
                guard session.sender.canEnqueue(length: bytes.count) else { return nil }
                let id = session.sender.enqueue(bytes, labels: labels, dependencies: spec)
                session.enqueued(id, labels: labels)
                loop.markDirty(session)
                return .some(id)
            }
            if let result = outcome {
                loop.wake()
                return result
            }
            // The window is full: wait for ACKs, or for the task to be cancelled (then nothing was sent).
            let token = loop.withLock { session.makeWaiterToken() }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    loop.withLock {
                        if Task.isCancelled || session.sendBlockedError != nil || session.sender.canEnqueue(length: bytes.count) {
                            loop.deferAfterUnlock { c.resume() }
                        } else {
                            session.addSendWaiter(c, token: token)
                        }
                    }
                }
            } onCancel: {
                loop.withLock { session.cancelSendWaiter(token) }
            }
            try Task.checkCancellation()
        }
    }

    /// The next message released to this side, with the sender's labels. Throws
    /// `IntNWError.endOfStream` after the peer closed and everything it sent was received, and
    /// `CancellationError` if the task is cancelled while waiting (no message is lost: one that
    /// arrives later goes to the next `receive`).
    public func receive() async throws -> Message {
        let loop = session.loop
        let session = self.session
        let ready: Message? = try loop.withLock {
            if let m = session.takeMessage() { return m }
            if let e = session.receiveEndError { throw e }
            return nil
        }
        if let ready { return ready }
        // Without the cancellation handler a receiver whose task is cancelled (e.g. an `async let`
        // left behind when the sending side throws) would wait forever.
        let token = loop.withLock { session.makeWaiterToken() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Message, Error>) in
                loop.withLock {
                    if let m = session.takeMessage() {
                        loop.deferAfterUnlock { c.resume(returning: m) }
                    } else if let e = session.receiveEndError {
                        loop.deferAfterUnlock { c.resume(throwing: e) }
                    } else if Task.isCancelled {
                        loop.deferAfterUnlock { c.resume(throwing: CancellationError()) }
                    } else {
                        session.addReceiveWaiter(c, token: token)
                    }
                }
            }
        } onCancel: {
            loop.withLock { session.cancelReceiveWaiter(token) }
        }
    }

    /// Closes the multisocket: waits up to `timeoutSeconds` for the peer to acknowledge everything
    /// sent, says GOODBYE on every connection and closes them. The report lists what was not delivered.
    @discardableResult
    public func close(timeoutSeconds: Double = 10) async -> CloseReport {
        let loop = session.loop
        let session = self.session
        let report = await withCheckedContinuation { (c: CheckedContinuation<CloseReport, Never>) in
            loop.withLock { session.beginClose(timeoutSeconds: timeoutSeconds, waiter: c, nowNs: cshims_monotonic_ns()) }
            loop.wake()
        }
        if ownsLoop { loop.stopAndJoin() }
        return report
    }

    /// Current per-network state and estimates (for schedulers, experiments and tests).
    public var networks: [NetworkStatus] {
        session.loop.withLock { session.allStatuses }
    }

    /// Whether a network that `restriction` allows is usable now.
    public func hasNetwork(for restriction: NetworkRestriction) -> Bool {
        session.loop.withLock { session.hasSuitableNetwork(restriction) }
    }

    /// "Oracle" mode for comparison experiments: replaces the passive estimates of the networks
    /// of `kind` (or all, if nil) with known values; nil restores the measured ones.
    public func setOracleEstimate(_ estimate: NetworkEstimate?, for kind: NetworkKind? = nil) {
        session.loop.withLock { session.setOracle(estimate, networkID: nil, kind: kind) }
        session.loop.wake()
    }

    /// Counters of the background policy's decisions (how often and why background data was held
    /// back), for experiments and tests.
    public var backgroundStats: BackgroundSchedulingStats { session.loop.withLock { session.background.stats } }

    /// IROBs sent and not yet acknowledged by the peer.
    public var unacknowledgedCount: Int { session.loop.withLock { session.sender.unackedCount } }
}

/// Accepts multisockets: each client session (all its connections) becomes one `MultiSocket`.
// @unchecked: immutable (lets); the listener core is reached only under its loop lock.
public final class MultiSocketListener: @unchecked Sendable {
    let core: ListenerCore
    /// The bound address and port (useful with port 0).
    public let localEndpoint: IPv4Endpoint

    /// Listens on `address:port` (port 0 picks a free one).
    public init(port: UInt16, address: String = "0.0.0.0", options: ListenerOptions = ListenerOptions()) throws {
        guard let a = IPv4Endpoint.parse(address) else { throw IntNWError.invalidArgument("listen address \(address) is not IPv4") }
        let loop = try IOLoop(name: "intnw-listener", namespacePath: options.session.networkNamespacePath)
        var result: Result<ListenerCore, Error>!
        loop.withLock {
            loop.execute {
                result = Result { try ListenerCore(loop: loop, endpoint: IPv4Endpoint(address: a, port: port), options: options) }
            }
        }
        // The socket is created on the loop thread (it may be in another namespace): wait for it.
        loop.wake()
        while loop.withLock({ result == nil }) { usleep(200) }
        switch result! {
        case .success(let c):
            core = c
            localEndpoint = c.endpoint
        case .failure(let e):
            loop.stopAndJoin()
            throw e
        }
    }

    /// The next new client session.
    public func accept() async throws -> MultiSocket {
        let core = self.core
        let s = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Session, Error>) in
            core.loop.withLock { core.addAcceptWaiter(c) }
        }
        return MultiSocket(session: s, ownsLoop: false)
    }

    /// Stops accepting, closes pending connections and every session it accepted, stops its thread.
    public func close() {
        core.loop.withLock { core.shutdown() }
        core.loop.stopAndJoin()
    }

    deinit { close() }

    /// Connections that have not yet sent their HELLO.
    public var pendingConnectionCount: Int { core.loop.withLock { core.pending.count } }
    /// Live sessions.
    public var sessionCount: Int { core.loop.withLock { core.sessions.count } }
    /// Live sessions created from client address `address` (tests of the per-address bound).
    func sessionCount(from address: String) -> Int {
        guard let a = IPv4Endpoint.parse(address) else { return 0 }
        return core.loop.withLock { core.sessions.values.filter { $0.peerAddress == a && $0.phase != .closed }.count }
    }
    /// Bytes charged to the listener's global receive-memory cap now, and the highest ever.
    var receiveMemory: (used: Int, peak: Int, limit: Int) {
        core.loop.withLock { (core.memoryBudget.usedBytes, core.memoryBudget.peakBytes, core.memoryBudget.limitBytes) }
    }
    /// Key agreements (X25519) the listener has done (tests: a refused attach must not cost one).
    var keyAgreements: Int { core.loop.withLock { core.keyAgreements } }
}
