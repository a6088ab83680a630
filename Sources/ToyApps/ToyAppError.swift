import SystemPackage

/// Errors of the toy apps. Each prints as one line that says what happened.
public enum ToyAppError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A command-line or configuration value is out of range or malformed.
    case invalidArgument(String)
    /// `host` is neither an IPv4 literal nor a name that resolves to an IPv4 address.
    case unresolvable(host: String)
    /// A system call failed; `call` names it and what it was for.
    case system(call: String, errno: Errno)
    /// Connecting to the server did not succeed within the connect timeout.
    case connectFailed(endpoint: String, reason: String)
    /// Listening failed (port in use, address not local, no permission).
    case listenFailed(endpoint: String, reason: String)
    /// The peer closed the connection while the app still expected traffic.
    case peerClosed(String)
    /// This side closed the connection (at shutdown) while a call was blocked on it.
    case closed
    /// The peer sent something that is not a valid toy message (or an IROB holding other than one).
    case protocolViolation(String)
    /// The IntNW library reported an error.
    case intnw(String)
    /// The log file cannot be opened or written.
    case log(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidArgument(let s): return s
        case .unresolvable(let h): return "cannot resolve '\(h)' to an IPv4 address"
        case .system(let call, let e): return "\(call) failed: \(e)"
        case .connectFailed(let ep, let why): return "cannot connect to \(ep): \(why)"
        case .listenFailed(let ep, let why): return "cannot listen on \(ep): \(why)"
        case .peerClosed(let s): return "connection lost: \(s)"
        case .closed: return "connection closed by this side"
        case .protocolViolation(let s): return "protocol violation: \(s)"
        case .intnw(let s): return "IntNW: \(s)"
        case .log(let p, let why): return "cannot write log \(p): \(why)"
        }
    }
}
