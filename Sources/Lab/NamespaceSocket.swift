#if canImport(Glibc)
import Glibc
#endif
import CShims
import Emulation
import Foundation
import LinuxSupport
import SystemPackage

/// Blocking IPv4 socket helpers for tests and benchmarks: each socket is created inside a named
/// network namespace (on a short-lived thread, see `NetworkNamespace`) and used from anywhere.
public enum NamespaceSocket {
    public struct Failure: Error, CustomStringConvertible {
        public var what: String
        public var description: String { what }
        public init(what: String) { self.what = what }
    }

    /// `ip` (an IPv4 literal) and `port`; a clear error if `ip` is not one.
    public static func endpoint(_ ip: String, _ port: UInt16) throws -> IPv4Endpoint {
        guard let e = IPv4Endpoint(ip, port: port) else { throw Failure(what: "'\(ip)' is not an IPv4 address") }
        return e
    }

    public static func check(_ rc: Int32, _ what: String) throws {
        if rc < 0 { throw Failure(what: "\(what): \(Errno.last)") }
    }

    public static func bind(_ fd: Int32, _ ip: String, _ port: UInt16) throws {
        let a = try endpoint(ip, port)
        var one: Int32 = 1
        try check(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)), "SO_REUSEADDR")
        try check(a.withSockaddr { Glibc.bind(fd, $0, $1) }, "bind \(a)")
    }

    /// A socket of `type` created in namespace `ns` and bound to `ip`:`port`.
    static func bound(ns: String, type: __socket_type, ip: String, port: UInt16) throws -> Int32 {
        try NetworkNamespace.run(in: ns) {
            let fd = socket(AF_INET, Int32(type.rawValue), 0)
            try check(fd, "socket")
            try bind(fd, ip, port)
            return fd
        }
    }

    /// A TCP listener in namespace `ns`.
    public static func listen(ns: String, ip: String, port: UInt16) throws -> Int32 {
        let fd = try bound(ns: ns, type: SOCK_STREAM, ip: ip, port: port)
        try check(Glibc.listen(fd, 64), "listen")
        return fd
    }

    /// A TCP socket in namespace `ns`, bound to `source` (so policy routing picks its link), unconnected.
    public static func tcp(ns: String, source: String) throws -> Int32 {
        try bound(ns: ns, type: SOCK_STREAM, ip: source, port: 0)
    }

    public static func connect(_ fd: Int32, _ ip: String, _ port: UInt16) throws {
        let a = try endpoint(ip, port)
        try check(a.withSockaddr { Glibc.connect(fd, $0, $1) }, "connect \(a)")
    }

    public static func udp(ns: String, bindIP: String, port: UInt16) throws -> Int32 {
        try bound(ns: ns, type: SOCK_DGRAM, ip: bindIP, port: port)
    }

    public static func setReceiveTimeout(_ fd: Int32, seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public static func nowSeconds() -> Double { Double(cshims_monotonic_ns()) / 1e9 }

    /// Sends `count` bytes on `fd` (blocking).
    public static func sendAll(_ fd: Int32, count: Int) throws {
        let chunk = [UInt8](repeating: 0x5A, count: 64 * 1024)
        var left = count
        while left > 0 {
            switch Syscall.retrying({ chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, min(left, $0.count), Int32(MSG_NOSIGNAL)) } }) {
            case .success(let n): left -= n
            case .failure(let e): throw Failure(what: "send: \(e)")
            }
        }
    }

    /// Receives until EOF; returns (bytes, time of first byte, time of last byte) in monotonic seconds.
    public static func receiveAll(_ fd: Int32) throws -> (bytes: Int, first: Double, last: Double) {
        var buf = [UInt8](repeating: 0, count: 256 * 1024)
        var total = 0
        var first = 0.0, last = 0.0
        while true {
            let n: Int
            switch Syscall.retrying({ buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }) {
            case .success(let got): n = got
            case .failure(let e): throw Failure(what: "recv: \(e)")
            }
            if n == 0 { break }
            let t = nowSeconds()
            if total == 0 { first = t }
            last = t
            total += n
        }
        return (total, first, last)
    }
}

/// Runs a blocking closure on its own thread and returns its result asynchronously.
public func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
        Thread { cont.resume(with: Result { try body() }) }.start()
    }
}
