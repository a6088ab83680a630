import IntNW
import ToyProtocol

/// A toy message that arrived, with the time it was complete.
public struct ReceivedMessage: Sendable, Equatable {
    public var header: ToyHeader
    /// CLOCK_REALTIME ns when the last byte of the message had been received.
    public var receivedNs: UInt64
    /// The IntNW labels of the IROB that carried it (nil for plain TCP).
    public var labels: Labels?

    public init(header: ToyHeader, receivedNs: UInt64, labels: Labels? = nil) {
        self.header = header
        self.receivedNs = receivedNs
        self.labels = labels
    }
}

/// One client-server channel carrying toy messages: a plain TCP connection or an IntNW multisocket.
///
/// Calls block the calling thread (apps run each role on its own thread). `send` may be called
/// from several threads at once (whole messages never interleave); `receive` from one thread only.
public protocol ToyConnection: AnyObject, Sendable {
    var variant: ToyVariant { get }
    /// The peer, for log and error lines.
    var peerDescription: String { get }

    /// Sends one message: `header` followed by `header.payloadLength` filler bytes. An answer
    /// names the `request` it answers, so it can be labelled like it.
    /// - Returns: CLOCK_REALTIME ns read just before the first byte was handed to the socket
    ///   (plain) or the multisocket (IntNW).
    func send(_ header: ToyHeader, inReplyTo request: ReceivedMessage?) throws(ToyAppError) -> UInt64

    /// Blocks until the next whole message arrived. Returns nil at an orderly end of stream.
    /// Payload bytes are discarded: the toy protocol gives them no meaning.
    func receive() throws(ToyAppError) -> ReceivedMessage?

    /// Ends the connection: blocked `send`/`receive` calls in other threads return (with an error
    /// or nil). Idempotent; safe from any thread.
    func close()
}

/// Accepts `ToyConnection`s on a server.
public protocol ToyListener: AnyObject, Sendable {
    /// The port actually bound (useful with port 0).
    var port: UInt16 { get }
    /// Blocks until a client connects. Returns nil once the listener was closed.
    func accept() throws(ToyAppError) -> ToyConnection?
    /// Stops accepting; a blocked `accept` returns nil. Idempotent.
    func close()
}

/// How to reach a server and how to be one, for one variant.
public protocol ToyTransport: Sendable {
    var variant: ToyVariant { get }
    /// Connects to `host:port`, retrying refused or unreachable attempts until `timeoutSeconds`
    /// have passed or `stop` fires.
    func connect(host: String, port: UInt16, timeoutSeconds: Double, stop: StopToken) throws(ToyAppError) -> ToyConnection
    /// Listens on `address:port` (port 0: any free port).
    func listen(address: String, port: UInt16) throws(ToyAppError) -> ToyListener
    /// Like `listen(address:port:)`; accepted connections from which nothing arrives for
    /// `readTimeoutSeconds` fail their `receive` (transports with their own idle timeout ignore it).
    func listen(address: String, port: UInt16, readTimeoutSeconds: Double) throws(ToyAppError) -> ToyListener
}

extension ToyTransport {
    public func listen(address: String, port: UInt16, readTimeoutSeconds: Double) throws(ToyAppError) -> ToyListener {
        try listen(address: address, port: port)
    }
}

extension ToyConnection {
    /// Sends a message that answers nothing (a request or a chunk).
    public func send(_ header: ToyHeader) throws(ToyAppError) -> UInt64 {
        try send(header, inReplyTo: nil)
    }
}

extension ToyMessageKind {
    /// The message a server sends back for this one (nil for replies and acks themselves).
    public var response: ToyMessageKind? {
        switch self {
        case .fgRequest: return .fgReply
        case .bgChunk: return .bgAck
        case .fgReply, .bgAck: return nil
        }
    }
}
