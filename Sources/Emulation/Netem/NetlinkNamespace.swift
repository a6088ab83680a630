import CShims
import LinuxSupport
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Which network namespace a socket is opened in.
///
/// `setns`/`unshare` move only the calling thread, so entering a namespace happens on a fresh
/// pthread that ends right after (never on a Swift concurrency thread, never on the caller's thread).
/// Sockets created there stay bound to that namespace and can be used from any thread.
public enum NetlinkNamespace: Sendable, Equatable, CustomStringConvertible {
    /// The namespace of the calling process.
    case current
    /// A namespace created by `ip netns add NAME` (bind-mounted at /run/netns/NAME).
    case named(String)
    /// A new anonymous namespace (unshare CLONE_NEWNET). It has only `lo` and vanishes when the last
    /// socket in it is closed, so nothing is left behind even after a crash.
    case scratch

    public var description: String {
        switch self {
        case .current: return "current namespace"
        case .named(let name): return name
        case .scratch: return "scratch namespace"
        }
    }

    /// Path of a named namespace's handle.
    public var path: String? {
        if case .named(let name) = self { return "/run/netns/\(name)" }
        return nil
    }

    /// Opens the namespace handle (O_RDONLY|O_CLOEXEC), for setns or IFLA_NET_NS_FD. Caller closes it.
    func openHandle() throws -> Int32 {
        guard let path else {
            throw NetlinkError.system(call: "open namespace handle", namespace: description, errno: .invalidArgument)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NetlinkError.system(call: "open \(path)", namespace: description, errno: .last) }
        return fd
    }

    /// Runs `body` on a new thread that has entered this namespace, waits for it, and returns its result.
    public func run<T>(_ body: () throws -> T) throws -> T {
        let target: NetworkNamespaceEntry.Target
        switch self {
        case .current: target = .current
        case .named(let name): target = .named(name)
        case .scratch: target = .new
        }
        do {
            return try NetworkNamespaceEntry.run(in: target, body)
        } catch let e as SystemCallError {
            throw NetlinkError.system(call: e.call, namespace: description, errno: e.errno)
        }
    }
}
