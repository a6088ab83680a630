import CShims
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
            throw NetlinkError.system(call: "open namespace handle", namespace: description, errno: EINVAL)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NetlinkError.system(call: "open \(path)", namespace: description, errno: errno) }
        return fd
    }

    /// Runs `body` on a new thread that has entered this namespace, waits for it, and returns its result.
    public func run<T>(_ body: () throws -> T) throws -> T {
        var result: Result<T, Error>!
        try withoutActuallyEscaping(body) { escapableBody in
            try runOnNewThread {
                result = Result {
                    try self.enterOnThisThread()
                    return try escapableBody()
                }
            }
        }
        return try result.get()
    }

    private func enterOnThisThread() throws {
        switch self {
        case .current:
            return
        case .scratch:
            guard cshims_unshare_net() == 0 else {
                throw NetlinkError.system(call: "unshare(CLONE_NEWNET)", namespace: description, errno: errno)
            }
        case .named:
            let fd = try openHandle()
            defer { close(fd) }
            guard cshims_setns_net(fd) == 0 else {
                throw NetlinkError.system(call: "setns", namespace: description, errno: errno)
            }
        }
    }
}

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs `body` on a new pthread and joins it. The thread ends with `body`, taking its namespace with it.
private func runOnNewThread(_ body: @escaping () -> Void) throws {
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().run()
        return nil
    }, context)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(context).release()
        throw NetlinkError.system(call: "pthread_create", namespace: "current namespace", errno: rc)
    }
    pthread_join(thread, nil)
}
