import Foundation
import Synchronization
import LinuxSupport
import SystemPackage
import ToyProtocol

/// Settings of a server.
public struct ServerSettings: Sendable, Equatable {
    /// IPv4 address to listen on ("0.0.0.0": all).
    public var address: String
    /// TCP port (0: any free one).
    public var port: UInt16
    /// Whole size of each fgReply in bytes, 24-byte header included. The server decides it (the toy
    /// protocol's request carries no reply size), so one server answers all FG clients alike.
    public var replyBytes: Int
    /// Whole size of each bgAck in bytes, header included: 24 (a bare header) for BG uploads; a
    /// BG client that sends header-only chunks and gets large acks downloads BG instead.
    public var ackBytes: Int
    /// At most this many connections (multisockets) served at once, one thread each; a connection
    /// beyond it is closed at once, logged and counted (`connections_refused`).
    public var maxConnections: Int
    /// Plain TCP: a connection from which nothing arrives for this many seconds is closed (a read
    /// timeout). IntNW connections have the library's own idle timeout
    /// (`ListenerOptions.connectionIdleTimeoutSeconds`).
    public var idleTimeoutSeconds: Double

    public static let defaultMaxConnections = 256
    public static let defaultIdleTimeoutSeconds = 300.0

    public init(address: String = "0.0.0.0", port: UInt16, replyBytes: Int = 64, ackBytes: Int = ToyWire.headerLength,
                maxConnections: Int = ServerSettings.defaultMaxConnections,
                idleTimeoutSeconds: Double = ServerSettings.defaultIdleTimeoutSeconds) {
        self.address = address
        self.port = port
        self.replyBytes = replyBytes
        self.ackBytes = ackBytes
        self.maxConnections = maxConnections
        self.idleTimeoutSeconds = idleTimeoutSeconds
    }

    public func validate() throws(ToyAppError) {
        try validateMessageBytes(replyBytes, option: "--reply-bytes")
        try validateMessageBytes(ackBytes, option: "--ack-bytes")
        guard maxConnections >= 1 && maxConnections <= 65_536 else {
            throw .invalidArgument("--max-connections must be 1 ... 65536 (got \(maxConnections))")
        }
        guard idleTimeoutSeconds.isFinite && idleTimeoutSeconds > 0 else {
            throw .invalidArgument("--idle-timeout must be a positive number of seconds (got \(idleTimeoutSeconds))")
        }
        guard IPv4Endpoint(address, port: port) != nil else {
            throw .invalidArgument("--address must be an IPv4 address such as 0.0.0.0 (got '\(address)')")
        }
    }
}

/// The server side of both apps: answers each fgRequest with an fgReply and acknowledges each
/// bgChunk with a bgAck (a bare header unless `ackBytes` says otherwise), both carrying the request's app id and sequence number (and,
/// over IntNW, its labels).
/// One thread per connection (multisocket), at most `maxConnections` of them; a bad client only
/// loses its own connection, and a silent plain-TCP one is closed after `idleTimeoutSeconds`.
// @unchecked: mutable state is touched only under `lock` (a Mutex guarding no value of its own).
public final class ToyServer: @unchecked Sendable {
    public let settings: ServerSettings
    private let transport: ToyTransport
    private let sink: LineSink
    private let warn: @Sendable (String) -> Void

    private let lock = Mutex(())
    private var listener: ToyListener?
    private var open: [ObjectIdentifier: ToyConnection] = [:]
    private var stats: ServerSummary
    private var stopping = false
    private let threads = ThreadGroup()

    public init(settings: ServerSettings, transport: ToyTransport, sink: LineSink, warn: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.transport = transport
        self.sink = sink
        self.warn = warn
        self.stats = ServerSummary(variant: transport.variant)
    }

    /// Listens and starts accepting. Returns the bound port.
    public func start() throws(ToyAppError) -> UInt16 {
        let l = try transport.listen(address: settings.address, port: settings.port, readTimeoutSeconds: settings.idleTimeoutSeconds)
        lock.withLock { _ in listener = l }
        threads.spawn("toy-accept") { [self] in acceptLoop(l) }
        return l.port
    }

    private func acceptLoop(_ l: ToyListener) {
        while true {
            let c: ToyConnection?
            do throws(ToyAppError) {
                c = try l.accept()
            } catch {
                if !isStopping { warn("accepting connections failed: \(error); the server stops accepting") }
                return
            }
            guard let c else { return }
            enum Admission { case stopping, refused, accepted }
            let admission = lock.withLock { _ -> Admission in
                if stopping { return .stopping }
                if open.count >= settings.maxConnections {
                    stats.connectionsRefused += 1
                    return .refused
                }
                open[ObjectIdentifier(c)] = c
                stats.connections += 1
                return .accepted
            }
            switch admission {
            case .stopping:
                c.close()
                return
            case .refused:
                c.close()
                logConnection(c, event: "refused", error: nil)
                continue
            case .accepted:
                break
            }
            threads.spawn("toy-serve") { [self] in serve(c) }
        }
    }

    private var isStopping: Bool {
        lock.withLock { _ in
            return stopping
        }
    }

    private func serve(_ c: ToyConnection) {
        logConnection(c, event: "open", error: nil)
        let replyPayload = UInt32(settings.replyBytes - ToyWire.headerLength)
        let ackPayload = UInt32(settings.ackBytes - ToyWire.headerLength)
        var failure: ToyAppError?
        while true {
            let m: ReceivedMessage?
            do throws(ToyAppError) {
                m = try c.receive()
            } catch {
                failure = error
                break
            }
            guard let m else { break }
            guard let kind = m.header.kind.response else {
                failure = .protocolViolation("a client sent \(m.header.kind), which only servers send")
                break
            }
            let response = ToyHeader(kind: kind, appID: m.header.appID, sequence: m.header.sequence,
                                     payloadLength: kind == .fgReply ? replyPayload : ackPayload)
            do throws(ToyAppError) {
                _ = try c.send(response, inReplyTo: m)
            } catch {
                failure = error
                break
            }
            lock.withLock { _ in
                stats.bytesReceived += UInt64(m.header.messageLength)
                if kind == .fgReply { stats.fgRequestsAnswered += 1 } else { stats.bgChunksAcked += 1 }
            }
        }
        // Count the error before closing: once the client sees the close it may stop the server,
        // and an error judged after that would be taken for one our own shutdown caused.
        let (real, serious) = lock.withLock { _ -> (ToyAppError?, Bool) in
            open[ObjectIdentifier(c)] = nil
            // Errors caused by our own shutdown are not the client's fault; a client that vanishes
            // (reset, closed mid-message) is logged but is not an error of the server.
            let real = failure.flatMap { stopping || $0 == .closed ? nil : $0 }
            var serious = false
            if let real, case .peerClosed = real {} else if real != nil { serious = true }
            if serious { stats.connectionErrors += 1 }
            return (real, serious)
        }
        if serious, let real { warn("connection from \(c.peerDescription) closed: \(real)") }
        c.close()
        logConnection(c, event: "close", error: real)
    }

    private func logConnection(_ c: ToyConnection, event: String, error: ToyAppError?) {
        var j = JSONLine()
        j.add("type", "server_connection")
        j.add("time_ns", AppClock.realtimeNs())
        j.add("event", event)
        j.add("peer", c.peerDescription)
        j.add("variant", c.variant.rawValue)
        if let error { j.add("error", error.description) }
        sink.write(line: j.string)
    }

    /// Stops accepting, closes every connection and waits for the server's threads.
    @discardableResult
    public func stop() -> ServerSummary {
        let (l, conns) = lock.withLock { _ in
            stopping = true
            return (listener, Array(open.values))
        }
        l?.close()
        for c in conns { c.close() }
        threads.wait()
        return summary
    }

    public var summary: ServerSummary {
        lock.withLock { _ in
            return stats
        }
    }
}
