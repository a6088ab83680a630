import SystemPackage

/// Everything that can go wrong talking rtnetlink. Each case prints one line naming the operation,
/// the namespace and the errno, e.g.
/// `RTM_NEWQDISC netem on wifi0 in intnw-client: No such file or directory (kernel has no sch_netem?)`.
public enum NetlinkError: Error, Equatable, CustomStringConvertible {
    /// The kernel rejected a request. `kernelMessage` is the extended-ack text when the kernel sent one.
    case kernel(operation: String, namespace: String, errno: Errno, kernelMessage: String?, hint: String?)
    /// A system call around the request failed (socket, bind, send, receive, setns, open).
    case system(call: String, namespace: String, errno: Errno)
    /// The kernel's reply did not have the expected shape.
    case malformedReply(operation: String, namespace: String, detail: String)

    /// The errno of a `.kernel` or `.system` failure.
    public var errno: Errno? {
        switch self {
        case .kernel(_, _, let e, _, _), .system(_, _, let e): return e
        case .malformedReply: return nil
        }
    }

    public var description: String {
        switch self {
        case let .kernel(operation, namespace, errno, kernelMessage, hint):
            var line = "\(operation) in \(namespace): \(errno)"
            if let hint { line += " (\(hint))" }
            if let kernelMessage, !kernelMessage.isEmpty { line += " [kernel: \(kernelMessage)]" }
            return line
        case let .system(call, namespace, errno):
            return "\(call) in \(namespace): \(errno)"
        case let .malformedReply(operation, namespace, detail):
            return "\(operation) in \(namespace): malformed netlink reply (\(detail))"
        }
    }
}

/// A netlink byte sequence that does not parse (truncated or inconsistent lengths).
public struct NetlinkParseError: Error, Equatable, CustomStringConvertible {
    public var detail: String
    public var description: String { "malformed netlink data: \(detail)" }
}
