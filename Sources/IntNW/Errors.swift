import LinuxSupport
import SystemPackage

/// Errors the IntNW API throws. Each prints one line saying what happened.
public enum IntNWError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed.
    case system(call: String, errno: Errno)
    /// No current network allows this message (e.g. `.wifiOnly` while WiFi is gone) and the caller
    /// asked to fail rather than wait.
    case noSuitableNetwork(NetworkRestriction)
    /// No connection to the server could be established on any network within the timeout.
    case connectFailed(String)
    /// The multisocket is closed (by this side, the peer, or a fatal error).
    case closed
    /// The peer said GOODBYE and every message it sent has been received.
    case endOfStream
    /// The message is larger than `SendLimits.maxIROBBytes`.
    case messageTooLarge(bytes: Int, limit: Int)
    /// A dependency names an IROB this multisocket has not sent.
    case invalidDependency(IROBID)
    case tooManyDependencies(Int)
    /// The peer violated the wire protocol; the session was closed.
    case protocolViolation(String)
    /// Bad argument (address, port, configuration string).
    case invalidArgument(String)
    /// The listener stopped.
    case listenerClosed
    /// The server no longer knows this session (it restarted, or expired it after an outage
    /// longer than its idle timeout): unacknowledged messages were not delivered.
    case sessionLost(String)

    public var description: String {
        switch self {
        case .system(let call, let e): "\(call) failed: \(e) (errno \(e.rawValue))"
        case .noSuitableNetwork(let r): "no current network allows this message (restriction \(r))"
        case .connectFailed(let why): "could not connect: \(why)"
        case .closed: "the multisocket is closed"
        case .endOfStream: "the peer closed the multisocket and everything it sent was received"
        case .messageTooLarge(let b, let l): "message of \(b) bytes exceeds the limit of \(l) bytes"
        case .invalidDependency(let id): "dependency \(id) is not an IROB sent earlier on this multisocket"
        case .tooManyDependencies(let n): "\(n) dependencies exceed the limit of \(Wire.maxDependencies)"
        case .protocolViolation(let s): "peer violated the IntNW protocol: \(s)"
        case .invalidArgument(let s): "invalid argument: \(s)"
        case .listenerClosed: "the listener is closed"
        case .sessionLost(let s): "session lost: \(s)"
        }
    }

    /// The last failed libc call, named `call`.
    static func errno(_ call: String) -> IntNWError { .system(call: call, errno: .last) }

    init(_ e: SystemCallError) { self = .system(call: e.call, errno: e.errno) }
}
