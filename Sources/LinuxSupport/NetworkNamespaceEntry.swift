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
