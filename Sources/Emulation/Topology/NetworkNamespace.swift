#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LinuxSupport
import SystemPackage

/// Errors from entering a network namespace.
public struct NamespaceError: Error, CustomStringConvertible {
    public var namespace: String
    public var call: String
    public var errno: Errno
    public var description: String {
        "\(call) for network namespace '\(namespace)': \(errno)"
    }
}

/// Runs work inside a named network namespace (`ip netns` name, bound at /run/netns/NAME).
///
/// `setns` moves only the calling thread, so the work runs on a fresh thread that enters the namespace
/// and exits afterwards (LinuxSupport's `NetworkNamespaceEntry.run`); never call setns from a Swift
/// concurrency task. File descriptors created there (sockets, TUN devices) stay bound to the
/// namespace and can be used from any thread.
public enum NetworkNamespace {
    public static func run<T>(in name: String, _ body: () throws -> T) throws -> T {
        do {
            return try NetworkNamespaceEntry.run(in: .named(name), body)
        } catch let e as SystemCallError {
            throw NamespaceError(namespace: name, call: e.call, errno: e.errno)
        }
    }
}
