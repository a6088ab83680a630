/// The one place that reads `errno` and retries interrupted system calls. Every module calls
/// libc through these helpers, so EINTR and errno are handled one way.
#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// A failed system call: which call (with its argument where that helps) and its errno.
public struct SystemCallError: Error, Equatable, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Errno
    public init(_ call: String, _ errno: Errno) {
        self.call = call
        self.errno = errno
    }
    public var description: String { "\(call): \(errno)" }
}

extension Errno {
    /// The calling thread's errno, as left by the last failed libc call.
    @inlinable public static var last: Errno { Errno(rawValue: Glibc.errno) }

    /// A resource is temporarily unavailable (EAGAIN / EWOULDBLOCK): try again later.
    @inlinable public var isWouldBlock: Bool { self == .resourceTemporarilyUnavailable || self == .wouldBlock }

    /// A nonblocking `connect` that failed this way goes on in the background (EINPROGRESS), and
    /// so does one interrupted by a signal (EINTR: it must not be called again); wait for the
    /// socket to become writable and read `SO_ERROR`.
    @inlinable public var isConnectInProgress: Bool { self == .nowInProgress || self == .interrupted }
}

public enum Syscall {
    /// Calls `body` — a libc call that returns a negative value and sets errno on failure —
    /// again while it fails with EINTR. Returns its result, or the errno of any other failure.
    @inlinable
    public static func retrying<R: SignedInteger>(_ body: () -> R) -> Result<R, Errno> {
        while true {
            let r = body()
            if r >= 0 { return .success(r) }
            let e = Errno.last
            if e == .interrupted { continue }
            return .failure(e)
        }
    }

    /// `retrying`, throwing a `SystemCallError` that names `call` on failure.
    @inlinable
    public static func check<R: SignedInteger>(_ call: @autoclosure () -> String, _ body: () -> R) throws(SystemCallError) -> R {
        switch retrying(body) {
        case .success(let r): return r
        case .failure(let e): throw SystemCallError(call(), e)
        }
    }
}
