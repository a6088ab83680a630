import Foundation
import Synchronization
import ToyProtocol

/// One client app to run: FG or BG, with its settings.
public enum ClientApp: Sendable, Equatable {
    case fg(FGClientSettings)
    case bg(BGClientSettings)

    public var appID: UInt32 {
        switch self {
        case .fg(let s): return s.appID
        case .bg(let s): return s.appID
        }
    }

    /// Seconds after the session starts before this app starts.
    public var startDelaySeconds: Double {
        switch self {
        case .fg(let s): return s.startDelaySeconds
        case .bg(let s): return s.startDelaySeconds
        }
    }

    public func validate() throws(ToyAppError) {
        switch self {
        case .fg(let s): try s.validate()
        case .bg(let s): try s.validate()
        }
        guard startDelaySeconds.isFinite, startDelaySeconds >= 0 else {
            throw .invalidArgument("an app's start delay must be zero or a positive number of seconds")
        }
    }
}

/// What a client process runs: groups of apps, each group sharing one connection (multisocket).
public struct ClientSessionConfiguration: Sendable, Equatable {
    /// Server address (IPv4 literal or name).
    public var host: String
    public var port: UInt16
    /// Each inner array is one connection; its apps share it. `[[fg], [bg]]` is two multisockets,
    /// `[[fg, bg]]` one shared multisocket.
    public var connections: [[ClientApp]]
    /// How long to keep trying to connect, in seconds.
    public var connectTimeoutSeconds: Double
    /// After a stop, how long to wait for answers to requests and chunks in flight, in seconds.
    public var drainSeconds: Double

    public init(host: String, port: UInt16, connections: [[ClientApp]], connectTimeoutSeconds: Double = 10,
                drainSeconds: Double = 1) {
        self.host = host
        self.port = port
        self.connections = connections
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.drainSeconds = drainSeconds
    }

    public func validate() throws(ToyAppError) {
        guard !connections.isEmpty, connections.allSatisfy({ !$0.isEmpty }) else {
            throw .invalidArgument("nothing to run: no client apps configured")
        }
        guard port > 0 else { throw .invalidArgument("--port must be between 1 and 65535") }
        var seen = Set<UInt32>()
        for app in connections.joined() {
            try app.validate()
            guard seen.insert(app.appID).inserted else {
                throw .invalidArgument("app id \(app.appID) is used twice in one process; each app needs its own id")
            }
        }
        guard connectTimeoutSeconds.isFinite, connectTimeoutSeconds > 0 else {
            throw .invalidArgument("--connect-timeout must be a positive number of seconds")
        }
        guard drainSeconds.isFinite, drainSeconds >= 0 else {
            throw .invalidArgument("--drain must be zero or a positive number of seconds")
        }
    }
}

/// A finished app's numbers.
public enum AppSummary: Sendable, Equatable {
    case fg(FGSummary)
    case bg(BGSummary)
    case server(ServerSummary)

    public var jsonLine: String {
        switch self {
        case .fg(let s): return s.jsonLine
        case .bg(let s): return s.jsonLine
        case .server(let s): return s.jsonLine
        }
    }

    public var text: String {
        switch self {
        case .fg(let s): return s.text
        case .bg(let s): return s.text
        case .server(let s): return s.text
        }
    }
}

/// Runs a client process's apps: connects, starts one thread per app plus one reader per
/// connection, reports BG progress on request, and shuts down in an orderly way.
///
/// Life cycle: `start` (returns at once; connecting happens on a thread), any number of
/// `reportProgress`, then `stop`. `onFinished` runs (on some thread) when every app ended by
/// itself, e.g. because the server went away; `failure` then says why.
// @unchecked: mutable state is touched only under `lock` (a Mutex guarding no value of its own).
public final class ClientSession: @unchecked Sendable {
    public let configuration: ClientSessionConfiguration
    private let transport: ToyTransport
    private let sink: LineSink
    private let warn: @Sendable (String) -> Void
    private let stopToken = StopToken()

    private let lock = Mutex(())
    private var channels: [ClientChannel] = []
    private var fgClients: [FGClient] = []
    private var bgClients: [BGClient] = []
    private var firstFailure: ToyAppError?
    private var closing = false
    private var finished = false
    private var started = 0

    private let setupThreads = ThreadGroup()
    private let appThreads = ThreadGroup()
    private let readerThreads = ThreadGroup()

    public init(configuration: ClientSessionConfiguration, transport: ToyTransport, sink: LineSink,
                warn: @escaping @Sendable (String) -> Void) {
        self.configuration = configuration
        self.transport = transport
        self.sink = sink
        self.warn = warn
    }

    /// The first error that ended an app (or the connect attempt) before a stop was requested.
    public var failure: ToyAppError? {
        lock.withLock { _ in
            return firstFailure
        }
    }

    /// True when every app has ended (by itself or after `stop`).
    public var isFinished: Bool {
        lock.withLock { _ in
            return finished
        }
    }

    /// Apps whose thread has started (after their start delay and their connection's connect).
    public var startedApps: Int {
        lock.withLock { _ in
            return started
        }
    }

    /// Connects and starts the apps, each connection on a thread of its own (so several
    /// multisockets connect in parallel). A connection is opened when the first of its apps is due;
    /// each app starts after its own `startDelaySeconds`.
    public func start(onFinished: @escaping @Sendable () -> Void) {
        let origin = AppClock.monotonicNs()
        for group in configuration.connections {
            setupThreads.spawn("toy-connect") { [self] in
                let due = origin + AppClock.nanoseconds(seconds: group.map(\.startDelaySeconds).min() ?? 0)
                guard stopToken.sleep(untilMonotonicNs: due) else { return }
                setUp(group, origin: origin)
            }
        }
        // When every app has ended (or none could start), the process has nothing left to do.
        Thread { [self] in
            setupThreads.wait()
            appThreads.wait()
            lock.withLock { _ in finished = true }
            onFinished()
        }.start()
    }

    /// Connects one group's connection and starts its apps. Runs on a setup thread.
    private func setUp(_ group: [ClientApp], origin: UInt64) {
        let connection: ToyConnection
        do throws(ToyAppError) {
            connection = try transport.connect(host: configuration.host, port: configuration.port,
                                               timeoutSeconds: configuration.connectTimeoutSeconds, stop: stopToken)
        } catch {
            fail(stopToken.isStopped ? nil : error)
            return
        }
        let channel = ClientChannel(connection: connection, warn: warn)
        var apps: [(due: UInt64, run: @Sendable () -> ToyAppError?)] = []
        var fgs: [FGClient] = []
        var bgs: [BGClient] = []
        for app in group {
            let due = origin + AppClock.nanoseconds(seconds: app.startDelaySeconds)
            switch app {
            case .fg(let s):
                let c = FGClient(settings: s, connection: connection, sink: sink, stop: stopToken, warn: warn)
                channel.register(c)
                fgs.append(c)
                apps.append((due, c.run))
            case .bg(let s):
                let c = BGClient(settings: s, connection: connection, sink: sink, stop: stopToken, warn: warn)
                channel.register(c)
                bgs.append(c)
                apps.append((due, c.run))
            }
        }
        let closed = lock.withLock { _ in
            if closing { return true }
            channels.append(channel)
            fgClients += fgs
            bgClients += bgs
            return false
        }
        if closed {
            connection.close()
            return
        }
        channel.startReader(in: readerThreads)
        for app in apps {
            appThreads.spawn("toy-app") { [self] in
                guard stopToken.sleep(untilMonotonicNs: app.due) else { return }
                lock.withLock { _ in started += 1 }
                if let e = app.run() { fail(e) }
            }
        }
    }

    /// Records the first failure and stops the other apps: with the server gone, a half-running
    /// experiment would only produce misleading numbers.
    private func fail(_ e: ToyAppError?) {
        if let e {
            lock.withLock { _ in if firstFailure == nil { firstFailure = e } }
        }
        stopToken.stop()
    }

    /// Writes a progress line for every BG app.
    public func reportProgress() {
        let bgs = lock.withLock { _ in bgClients }
        for c in bgs { c.reportProgress() }
    }

    /// Stops sending, waits up to `drainSeconds` for answers in flight, closes every connection,
    /// and waits for all threads. Returns the apps' summaries (in configuration order).
    @discardableResult
    public func stop() -> [AppSummary] {
        stopToken.stop()
        let drainDeadline = AppClock.monotonicNs() + AppClock.nanoseconds(seconds: configuration.drainSeconds)
        // A connect still in progress is not waited for beyond the drain period (an IntNW connect
        // cannot be interrupted): its thread closes the connection if it ever completes.
        setupThreads.wait(untilMonotonicNs: drainDeadline)
        appThreads.wait(untilMonotonicNs: drainDeadline)
        let open = lock.withLock { _ in
            closing = true
            return channels
        }
        for c in open { c.connection.close() }
        appThreads.wait()
        readerThreads.wait()
        return summaries
    }

    /// The apps' numbers so far, FG and BG in the order they were configured.
    public var summaries: [AppSummary] {
        let (fgs, bgs) = lock.withLock { _ in (fgClients, bgClients) }
        var byID: [UInt32: AppSummary] = [:]
        for c in fgs { byID[c.appID] = .fg(c.summary) }
        for c in bgs { byID[c.appID] = .bg(c.summary) }
        return configuration.connections.joined().compactMap { byID[$0.appID] }
    }
}
