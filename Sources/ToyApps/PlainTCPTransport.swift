#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import LinuxSupport
import SystemPackage
import ToyProtocol

/// The plain-TCP variant: one TCP connection per app, toy messages written back to back.
///
/// The connection is not bound to an interface, so it follows the client's main routing table
/// (WiFi while it is up, cellular otherwise), as an app unaware of IntNW would.
public struct PlainTCPTransport: ToyTransport {
    public init() {}

    public var variant: ToyVariant { .plain }

    /// Errors worth retrying while the server may still be starting or a link may come back.
    static let retryableConnectErrors: Set<Errno> = [.connectionRefused, .networkUnreachable, .noRouteToHost, .timedOut]

    /// Longest single connect attempt, seconds: then the socket is dropped and a new one tries again.
    /// A socket keeps the route (and source address) it got at `connect`, so an attempt that started on
    /// a link which then vanished (WiFi out of range: its SYNs go nowhere) would otherwise retransmit
    /// into it until the kernel gives up; a new socket follows the routes as they are now (cellular).
    /// 4 s lets the kernel send the SYN three times (at 0, 1 and 3 s).
    public static let attemptTimeoutSeconds = 4.0

    public func connect(host: String, port: UInt16, timeoutSeconds: Double, stop: StopToken) throws(ToyAppError) -> ToyConnection {
        let remote = try IPv4Endpoint.resolve(host, port: port)
        let deadline = AppClock.monotonicNs() + AppClock.nanoseconds(seconds: timeoutSeconds)
        // The most telling error so far: a last attempt cut short by our own deadline times out,
        // but the user needs to hear that the server refused.
        var reported: Errno?
        while true {
            let now = AppClock.monotonicNs()
            do throws(ToyAppError) {
                let left = deadline > now ? deadline - now : 1
                let s = try TCPSocket.connect(to: remote, timeoutNs: min(left, AppClock.nanoseconds(seconds: Self.attemptTimeoutSeconds)))
                return PlainConnection(socket: s, peer: remote.description)
            } catch {
                guard case .system(_, let e) = error, Self.retryableConnectErrors.contains(e) else {
                    throw .connectFailed(endpoint: remote.description, reason: "\(error)")
                }
                if e != .timedOut || reported == nil { reported = e }
                let now = AppClock.monotonicNs()
                if now >= deadline || !stop.sleep(untilMonotonicNs: min(now + 100_000_000, deadline)) {
                    throw .connectFailed(endpoint: remote.description,
                                         reason: "\(reported ?? e) (gave up after \(JSONLine.fixed(timeoutSeconds, decimals: 1)) s)")
                }
            }
        }
    }

    public func listen(address: String, port: UInt16) throws(ToyAppError) -> ToyListener {
        try listen(address: address, port: port, readTimeoutSeconds: 0)
    }

    /// `readTimeoutSeconds` > 0 sets a receive timeout (SO_RCVTIMEO) on every accepted connection.
    public func listen(address: String, port: UInt16, readTimeoutSeconds: Double) throws(ToyAppError) -> ToyListener {
        guard let local = IPv4Endpoint(address, port: port) else {
            throw .invalidArgument("listen address '\(address)' is not an IPv4 address")
        }
        do throws(ToyAppError) {
            let s = try TCPSocket.listen(on: local)
            return PlainListener(socket: s, port: s.localAddress?.port ?? port, readTimeoutSeconds: readTimeoutSeconds)
        } catch {
            if case .system(_, let e) = error {
                let hint = e == .addressInUse ? " (another server is using the port?)" : ""
                throw .listenFailed(endpoint: local.description, reason: "\(e)" + hint)
            }
            throw .listenFailed(endpoint: local.description, reason: "\(error)")
        }
    }
}

/// A listening plain-TCP server socket.
// @unchecked: immutable (lets); the socket synchronizes itself.
final class PlainListener: ToyListener, @unchecked Sendable {
    private let socket: TCPSocket
    let port: UInt16
    let readTimeoutSeconds: Double

    init(socket: TCPSocket, port: UInt16, readTimeoutSeconds: Double = 0) {
        self.socket = socket
        self.port = port
        self.readTimeoutSeconds = readTimeoutSeconds
    }

    func accept() throws(ToyAppError) -> ToyConnection? {
        guard let (s, peer) = try socket.accept() else { return nil }
        if readTimeoutSeconds > 0 { s.setReceiveTimeout(seconds: readTimeoutSeconds) }
        return PlainConnection(socket: s, peer: peer.description, readTimeoutSeconds: readTimeoutSeconds)
    }

    func close() { socket.shutdown() }
}

/// One plain TCP connection carrying toy messages back to back.
// @unchecked: senders are serialized by `sendLock`; receive state belongs to the one receiving thread.
final class PlainConnection: ToyConnection, @unchecked Sendable {
    private let socket: TCPSocket
    let peerDescription: String
    var variant: ToyVariant { .plain }

    /// Serializes senders: two threads (FG and BG on one connection) must not interleave bytes.
    private let sendLock = Mutex(())
    private var headerBytes = [UInt8](repeating: 0, count: ToyWire.headerLength)

    // Receive state: touched only by the one receiving thread.
    private var receiveBuffer = [UInt8](repeating: 0, count: 64 << 10)
    private var decoder = ToyStreamDecoder()
    private var ready: [ReceivedMessage] = []
    private var readyIndex = 0
    private var desync: ToyStreamEvent?

    /// Read-only payload filler shared by every connection; longer payloads go out in slices.
    private static let filler = [UInt8](repeating: MessageBufferPool.fill, count: 256 << 10)

    /// The receive timeout set on the socket (0: none), for the error it causes.
    private let readTimeoutSeconds: Double

    init(socket: TCPSocket, peer: String, readTimeoutSeconds: Double = 0) {
        self.socket = socket
        self.peerDescription = peer
        self.readTimeoutSeconds = readTimeoutSeconds
    }

    func send(_ header: ToyHeader, inReplyTo request: ReceivedMessage?) throws(ToyAppError) -> UInt64 {
        try sendLock.withLock { _ throws(ToyAppError) -> UInt64 in
            headerBytes.withUnsafeMutableBytes { header.encode(into: $0) }
            var remaining = Int(header.payloadLength)
            let sentAt = AppClock.realtimeNs()
            // The buffer closures are `rethrows` (untyped), so errors come out as a Result.
            let result: Result<Void, ToyAppError> = headerBytes.withUnsafeBytes { h in
                Self.filler.withUnsafeBytes { f in
                    do throws(ToyAppError) {
                        let first = min(remaining, f.count)
                        try socket.sendAll(h, UnsafeRawBufferPointer(rebasing: f[0 ..< first]))
                        remaining -= first
                        while remaining > 0 {
                            let n = min(remaining, f.count)
                            try socket.sendAll(UnsafeRawBufferPointer(start: nil, count: 0), UnsafeRawBufferPointer(rebasing: f[0 ..< n]))
                            remaining -= n
                        }
                        return .success(())
                    } catch {
                        return .failure(error)
                    }
                }
            }
            if case .failure(let error) = result { throw mapIOError(error) }
            return sentAt
        }
    }

    func receive() throws(ToyAppError) -> ReceivedMessage? {
        while true {
            if readyIndex < ready.count {
                let m = ready[readyIndex]
                readyIndex += 1
                return m
            }
            if let d = desync, case .desync(let offset, let error) = d {
                throw .protocolViolation("stream offset \(offset) from \(peerDescription): \(error)")
            }
            ready.removeAll(keepingCapacity: true)
            readyIndex = 0
            let received: Result<Int, ToyAppError> = receiveBuffer.withUnsafeMutableBytes { b in
                do throws(ToyAppError) { return .success(try socket.receive(into: b)) } catch { return .failure(error) }
            }
            let n: Int
            switch received {
            case .success(let count): n = count
            case .failure(let error): throw mapIOError(error)
            }
            if n == 0 {
                if socket.wasShutDown { throw .closed }
                if decoder.isAtMessageBoundary { return nil }
                throw .peerClosed("\(peerDescription) closed the connection in the middle of a message")
            }
            let at = AppClock.realtimeNs()
            receiveBuffer.withUnsafeBytes { b in
                decoder.consume(UnsafeRawBufferPointer(rebasing: b[0 ..< n])) { event in
                    switch event {
                    case .message(let h, _, _, _): ready.append(ReceivedMessage(header: h, receivedNs: at))
                    case .desync: if desync == nil { desync = event }
                    case .header: break
                    }
                }
            }
        }
    }

    func close() { socket.shutdown() }

    private func mapIOError(_ error: ToyAppError) -> ToyAppError {
        if socket.wasShutDown { return .closed }
        if case .system(_, let e) = error, e == .brokenPipe || e == .connectionReset {
            return .peerClosed("\(peerDescription) reset the connection")
        }
        if case .system(let call, let e) = error, call == "recv", readTimeoutSeconds > 0, e == .resourceTemporarilyUnavailable {
            return .peerClosed("\(peerDescription) sent nothing for \(JSONLine.fixed(readTimeoutSeconds, decimals: 1)) s (read timeout)")
        }
        return error
    }
}
