/// Entering a network namespace: the only `setns` / `unshare` in the project.
///
/// Both act on the calling thread only, so callers run them on a thread they own (never from a
/// Swift concurrency task); sockets created on that thread afterwards belong to the namespace.
#if canImport(Glibc)
import Glibc
#endif
import CShims
import SystemPackage

public enum NetworkNamespaceEntry {
    /// The file that names `namespace`: an absolute path as is, else `ip netns`'s /run/netns/NAME.
    public static func path(of namespace: String) -> String {
        namespace.hasPrefix("/") ? namespace : "/run/netns/\(namespace)"
    }

    /// Moves the calling thread into the network namespace at `path(of: namespace)`.
    /// Throws with call "open PATH" (errno ENOENT: no such namespace) or "setns PATH".
    public static func enter(_ namespace: String) throws(SystemCallError) {
        let path = path(of: namespace)
        let fd = try Syscall.check("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        guard cshims_setns_net(fd) == 0 else { throw SystemCallError("setns \(path)", Errno.last) }
    }

    /// Moves the calling thread into a new, empty network namespace.
    public static func enterNew() throws(SystemCallError) {
        guard cshims_unshare_net() == 0 else { throw SystemCallError("unshare(CLONE_NEWNET)", Errno.last) }
    }
}

extension NetworkNamespaceEntry {
    /// Where `run` puts its thread.
    public enum Target: Sendable, Equatable {
        /// Stay in the caller's namespace.
        case current
        /// A namespace by `ip netns` name or absolute path (see `path(of:)`).
        case named(String)
        /// A new, empty namespace that ends with the thread (and the sockets made there).
        case new
    }

    /// Runs `body` on a new thread that first enters `target`, waits for it and returns its
    /// result. The thread ends with `body`, taking its namespace with it; descriptors created
    /// there (sockets, TUN devices) stay bound to that namespace and work from any thread.
    /// Throws `SystemCallError` if the thread cannot be started or cannot enter `target`.
    public static func run<T>(in target: Target, _ body: () throws -> T) throws -> T {
        var result: Result<T, Error>!
        try withoutActuallyEscaping(body) { escapable in
            try runOnNewThread {
                result = Result {
                    switch target {
                    case .current: break
                    case .named(let ns): try enter(ns)
                    case .new: try enterNew()
                    }
                    return try escapable()
                }
            }
        }
        return try result.get()
    }

    private final class ThreadBody {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Runs `body` on a new pthread and joins it.
    private static func runOnNewThread(_ body: @escaping () -> Void) throws(SystemCallError) {
        let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue().run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<ThreadBody>.fromOpaque(context).release()
            throw SystemCallError("pthread_create", Errno(rawValue: rc))
        }
        pthread_join(thread, nil)
    }
}
