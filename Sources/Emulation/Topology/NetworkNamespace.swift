#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation

/// Errors from entering a network namespace.
public struct NamespaceError: Error, CustomStringConvertible {
    public var namespace: String
    public var call: String
    public var errno: Int32
    public var description: String {
        "\(call) for network namespace '\(namespace)': \(String(cString: strerror(errno)))"
    }
}

/// Runs work inside a named network namespace (`ip netns` name, bound at /run/netns/NAME).
///
/// `setns` moves only the calling thread, so the work runs on a fresh thread that enters the namespace
/// and exits afterwards; never call setns from a Swift concurrency task. File descriptors created there
/// (sockets, TUN devices) stay bound to the namespace and can be used from any thread.
public enum NetworkNamespace {
    public static func run<T>(in name: String, _ body: @escaping () throws -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            let fd = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                box.result = .failure(NamespaceError(namespace: name, call: "open /run/netns/\(name)", errno: errno))
                return
            }
            defer { close(fd) }
            guard cshims_setns_net(fd) == 0 else {
                box.result = .failure(NamespaceError(namespace: name, call: "setns", errno: errno))
                return
            }
            box.result = Result { try body() }
        }
        thread.start()
        done.wait()
        return try box.result!.get()
    }

    private final class ResultBox<T>: @unchecked Sendable {
        var result: Result<T, Error>?
    }
}
