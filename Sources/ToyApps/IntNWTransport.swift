#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import IntNW
import ToyProtocol

/// The IntNW background-policy names the apps accept and pass on.
public enum IntNWBackgroundPolicy {
    /// The four policies of the scheduling note (docs/scheduling.md) and delay-target.
    public static let names = ["exclusive", "permissive", "anticipatory", "trickle", "delay-target"]
    /// The library's policy without configuration.
    public static let defaultName = BackgroundPolicies.fallback.rawValue

    /// Publishes the chosen policy as INTNW_BG_POLICY for the IntNW library (its scheduling layer
    /// reads the variable); nil leaves the environment alone. Call before any multisocket exists.
    public static func export(_ name: String?) {
        guard let name else { return }
        setenv("INTNW_BG_POLICY", name, 1)
    }
}

/// How the IntNW variant labels the IROBs of the messages it originates (answers copy the labels
/// of what they answer).
public struct MessageLabeling: Sendable, Equatable {
    /// False sends IROBs without FG/BG and size labels (IntNW then treats everything alike), as an
    /// application unaware of IntNW's hints would.
    public var labeled: Bool
    /// Network restriction added to every IROB.
    public var restriction: NetworkRestriction

    public init(labeled: Bool = true, restriction: NetworkRestriction = .any) {
        self.labeled = labeled
        self.restriction = restriction
    }

    /// Labels of an IROB carrying a message of `kind`: requests foreground+small, chunks
    /// background+large (answers, when no request is at hand, like their requests).
    public func labels(for kind: ToyMessageKind) -> Labels {
        var l = Labels.none
        if labeled { l = kind.isForeground ? Labels.foreground | Labels.small : Labels.background | Labels.large }
        return restriction == .any ? l : l | Labels.restricted(restriction)
    }

    /// Names accepted by `--restrict`.
    public static let restrictionNames: [String: NetworkRestriction] = [
        "any": .any, "wifi-only": .wifiOnly, "cellular-only": .cellularOnly, "wifi-preferred": .wifiPreferred,
    ]
}

/// The IntNW variant: one multisocket per connection; each toy message is the whole payload of one
/// IROB.
///
/// Labels come from `MessageLabeling` (by default fgRequest foreground+small, bgChunk
/// background+large); the server labels each answer like the IROB it answers. Messages are
/// independent (`dependsOn: .none`): the apps pair answers by sequence number and never need
/// IntNW's ordering, and an FG request must not wait behind BG chunks sent earlier on a shared
/// multisocket.
public struct IntNWTransport: ToyTransport {
    /// Options for client multisockets (the connect timeout is set per call).
    public var options: MultiSocketOptions
    /// Options for the server's listener.
    public var listenerOptions: ListenerOptions
    /// The policy name given on the command line (already exported to the environment).
    public var backgroundPolicy: String?
    /// Seconds `close` waits for the peer to acknowledge what was sent.
    public var closeTimeoutSeconds: Double
    public var labeling: MessageLabeling

    public init(backgroundPolicy: String? = nil, labeling: MessageLabeling = MessageLabeling(),
                options: MultiSocketOptions = MultiSocketOptions(),
                listenerOptions: ListenerOptions = ListenerOptions(), closeTimeoutSeconds: Double = 0.5) {
        self.backgroundPolicy = backgroundPolicy
        self.labeling = labeling
        self.options = options
        self.listenerOptions = listenerOptions
        self.closeTimeoutSeconds = closeTimeoutSeconds
    }

    public var variant: ToyVariant { .intnw }

    /// Default labels of an IROB carrying a message of `kind`.
    public static func labels(for kind: ToyMessageKind) -> Labels { MessageLabeling().labels(for: kind) }

    public func connect(host: String, port: UInt16, timeoutSeconds: Double, stop: StopToken) throws(ToyAppError) -> ToyConnection {
        var o = options
        o.connectTimeoutSeconds = timeoutSeconds
        let opts = o
        do {
            let socket = try blockingAwait { try await MultiSocket.connect(to: host, port: port, options: opts) }
            return IntNWConnection(socket: socket, peer: "\(host):\(port)", labeling: labeling, closeTimeoutSeconds: closeTimeoutSeconds)
        } catch let e as IntNWError {
            throw .connectFailed(endpoint: "\(host):\(port)", reason: e.description)
        } catch {
            throw .connectFailed(endpoint: "\(host):\(port)", reason: "\(error)")
        }
    }

    public func listen(address: String, port: UInt16) throws(ToyAppError) -> ToyListener {
        do {
            let l = try MultiSocketListener(port: port, address: address, options: listenerOptions)
            return IntNWListener(listener: l, labeling: labeling, closeTimeoutSeconds: closeTimeoutSeconds)
        } catch let e as IntNWError {
            var hint = ""
            if case .system(_, let errno) = e, errno == .addressInUse { hint = " (another server is using the port?)" }
            throw .listenFailed(endpoint: "\(address):\(port)", reason: e.description + hint)
        } catch {
            throw .listenFailed(endpoint: "\(address):\(port)", reason: "\(error)")
        }
    }
}

/// A listening IntNW server.
// @unchecked: mutable state is touched only under `lock` (a Mutex guarding no value of its own).
final class IntNWListener: ToyListener, @unchecked Sendable {
    private let listener: MultiSocketListener
    private let closeTimeoutSeconds: Double
    private let labeling: MessageLabeling
    private let lock = Mutex(())
    private var closed = false

    init(listener: MultiSocketListener, labeling: MessageLabeling, closeTimeoutSeconds: Double) {
        self.listener = listener
        self.labeling = labeling
        self.closeTimeoutSeconds = closeTimeoutSeconds
    }

    var port: UInt16 { listener.localEndpoint.port }

    func accept() throws(ToyAppError) -> ToyConnection? {
        let l = listener
        do {
            let s = try blockingAwait { try await l.accept() }
            return IntNWConnection(socket: s, peer: "session \(s.sessionID)", labeling: labeling,
                                   closeTimeoutSeconds: closeTimeoutSeconds)
        } catch IntNWError.listenerClosed {
            return nil
        } catch {
            if isClosed { return nil }
            throw .intnw("accept: \(error)")
        }
    }

    private var isClosed: Bool {
        lock.withLock { _ in
            return closed
        }
    }

    func close() {
        let first = lock.withLock { _ in
            defer { closed = true }
            return !closed
        }
        if first { listener.close() }
    }
}

/// One multisocket carrying toy messages, one per IROB.
// @unchecked: mutable state is touched only under `lock` (a Mutex guarding no value of its own).
final class IntNWConnection: ToyConnection, @unchecked Sendable {
    private let socket: MultiSocket
    let peerDescription: String
    private let closeTimeoutSeconds: Double
    private let labeling: MessageLabeling
    private let buffers = MessageBufferPool()
    private let lock = Mutex(())
    private var closed = false
    var variant: ToyVariant { .intnw }

    init(socket: MultiSocket, peer: String, labeling: MessageLabeling = MessageLabeling(), closeTimeoutSeconds: Double) {
        self.socket = socket
        self.peerDescription = peer
        self.labeling = labeling
        self.closeTimeoutSeconds = closeTimeoutSeconds
    }

    private var isClosed: Bool {
        lock.withLock { _ in
            return closed
        }
    }

    func send(_ header: ToyHeader, inReplyTo request: ReceivedMessage?) throws(ToyAppError) -> UInt64 {
        let message = buffers.message(for: header)
        let labels = request?.labels ?? labeling.labels(for: header.kind)
        let s = socket
        do {
            let sentAt = try blockingAwait { () async throws -> UInt64 in
                // Read the clock on the task, right before the library takes the bytes.
                let t = AppClock.realtimeNs()
                try await s.send(message, labels: labels, dependsOn: .none)
                return t
            }
            buffers.recycle(message)
            return sentAt
        } catch {
            throw mapError(error, during: "send")
        }
    }

    func receive() throws(ToyAppError) -> ReceivedMessage? {
        let s = socket
        let got: (Message, UInt64)
        do {
            got = try blockingAwait { () async throws -> (Message, UInt64) in
                let m = try await s.receive()
                return (m, AppClock.realtimeNs())
            }
        } catch IntNWError.endOfStream {
            return nil
        } catch {
            throw mapError(error, during: "receive")
        }
        let bytes = got.0.bytes
        let header: ToyHeader
        do {
            header = try ToyHeader.decode(bytes)
        } catch {
            throw .protocolViolation("IROB \(got.0.id) from \(peerDescription) is not a toy message: \(error)")
        }
        guard header.messageLength == bytes.count else {
            throw .protocolViolation("IROB \(got.0.id) from \(peerDescription) holds \(bytes.count) bytes, "
                                     + "but its toy header says \(header.messageLength): one IROB must carry exactly one message")
        }
        return ReceivedMessage(header: header, receivedNs: got.1, labels: got.0.labels)
    }

    private func mapError(_ error: Error, during op: String) -> ToyAppError {
        if isClosed { return .closed }
        if let e = error as? IntNWError {
            switch e {
            case .closed, .endOfStream: return .peerClosed("\(peerDescription) closed the multisocket")
            default: return .intnw("\(op): \(e)")
            }
        }
        return .intnw("\(op): \(error)")
    }

    func close() {
        let first = lock.withLock { _ in
            defer { closed = true }
            return !closed
        }
        guard first else { return }
        let s = socket
        let timeout = closeTimeoutSeconds
        _ = try? blockingAwait { await s.close(timeoutSeconds: timeout) }
    }
}
