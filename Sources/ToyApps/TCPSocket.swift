#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import LinuxSupport
import SystemPackage

extension IPv4Endpoint {
    /// A literal, or the first IPv4 address `host` resolves to.
    static func resolve(_ host: String, port: UInt16) throws(ToyAppError) -> IPv4Endpoint {
        guard case .success(let a) = resolveAddress(host) else { throw .unresolvable(host: host) }
        return IPv4Endpoint(address: a, port: port)
    }
}

/// Owns one blocking TCP socket descriptor.
///
/// `shutdown()` wakes threads blocked in `accept`/`recv`/`send` on it without closing the
/// descriptor; the descriptor is closed only when the last reference goes away, so a thread still
/// inside a call can never hit a reused descriptor number.
// @unchecked: `isShutDown` is touched only under `lock`; the descriptor is immutable.
final class TCPSocket: @unchecked Sendable {
    let fd: Int32
    private let lock = Mutex(())
    private var isShutDown = false

    private init(fd: Int32) { self.fd = fd }

    deinit { Glibc.close(fd) }

    /// IPPROTO_MPTCP (Linux 5.6+).
    static let ipprotoMPTCP: Int32 = 262

    /// Whether plain sockets are Multipath TCP sockets: `INTNW_PLAIN_MPTCP=1` in the environment (the
    /// harness sets it for its Linux-MPTCP strategies, in the client and the server).
    static let useMPTCP: Bool = ProcessInfo.processInfo.environment["INTNW_PLAIN_MPTCP"] == "1"

    private static func newSocket() throws(ToyAppError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), useMPTCP ? ipprotoMPTCP : 0)
        guard fd >= 0 else { throw .system(call: useMPTCP ? "socket(IPPROTO_MPTCP)" : "socket", errno: .last) }
        return fd
    }

    /// Connects with a timeout (non-blocking connect plus poll), then switches to blocking mode.
    /// Throws `ToyAppError.system(call: "connect", ...)` with the connect errno on failure.
    static func connect(to remote: IPv4Endpoint, timeoutNs: UInt64) throws(ToyAppError) -> TCPSocket {
        let fd = try newSocket()
        let s = TCPSocket(fd: fd)
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if remote.withSockaddr({ Glibc.connect(fd, $0, $1) }) != 0 {
            // Interrupted, the connect goes on in the background like one in progress.
            let e = Errno.last
            guard e.isConnectInProgress else { throw .system(call: "connect", errno: e) }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let deadline = AppClock.monotonicNs() + timeoutNs
            while true {
                let now = AppClock.monotonicNs()
                guard now < deadline else { throw .system(call: "connect", errno: .timedOut) }
                let ms = Int32(min((deadline - now + 999_999) / 1_000_000, 1000))
                let ready: Int32
                switch Syscall.retrying({ poll(&p, 1, ms) }) {
                case .success(let n): ready = n
                case .failure(let e): throw .system(call: "poll", errno: e)
                }
                if ready > 0 { break }
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 else { throw .system(call: "getsockopt(SO_ERROR)", errno: .last) }
            if err != 0 { throw .system(call: "connect", errno: Errno(rawValue: err)) }
        }
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        s.setNoDelay()
        return s
    }

    /// A listening socket on `local` with SO_REUSEADDR.
    static func listen(on local: IPv4Endpoint, backlog: Int32 = 128) throws(ToyAppError) -> TCPSocket {
        let fd = try newSocket()
        let s = TCPSocket(fd: fd)
        var one: Int32 = 1
        guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw .system(call: "setsockopt(SO_REUSEADDR)", errno: .last)
        }
        guard local.withSockaddr({ bind(fd, $0, $1) }) == 0 else { throw .system(call: "bind", errno: .last) }
        guard Glibc.listen(fd, backlog) == 0 else { throw .system(call: "listen", errno: .last) }
        return s
    }

    /// Blocks for the next connection; nil after `shutdown()`.
    func accept() throws(ToyAppError) -> (TCPSocket, IPv4Endpoint)? {
        while true {
            var peer: IPv4Endpoint?
            let r = Syscall.retrying {
                let (c, ep) = IPv4Endpoint.receiving { Glibc.accept(fd, $0, $1) }
                peer = ep
                return c
            }
            if case .success(let c) = r {
                let s = TCPSocket(fd: c)
                s.setNoDelay()
                return (s, peer!)
            }
            guard case .failure(let e) = r else { continue }
            if wasShutDown { return nil }
            switch e {
            // Transient: the connection died before accept.
            case .connectionAbort, .protocolError, .resourceTemporarilyUnavailable: continue
            // Out of descriptors/memory: back off instead of spinning.
            case .tooManyOpenFiles, .tooManyOpenFilesInSystem, .noBufferSpace, .noMemory:
                usleep(50_000)
                continue
            default: throw .system(call: "accept", errno: e)
            }
        }
    }

    /// The locally bound address.
    var localAddress: IPv4Endpoint? {
        IPv4Endpoint.receiving { getsockname(fd, $0, $1) }.endpoint
    }

    /// Small requests must not wait for Nagle's algorithm.
    private func setNoDelay() {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Writes all of `first` then all of `second` (gather write, MSG_NOSIGNAL: a closed peer gives
    /// EPIPE, not a signal). Throws on error, including after `shutdown()`.
    func sendAll(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) throws(ToyAppError) {
        var off = 0
        let total = first.count + second.count
        while off < total {
            var iov = (iovec(), iovec())
            var count: Int
            if off < first.count {
                iov.0 = iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress! + off), iov_len: first.count - off)
                iov.1 = iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)
                count = second.count > 0 ? 2 : 1
            } else {
                let o = off - first.count
                iov.0 = iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress! + o), iov_len: second.count - o)
                count = 1
            }
            let r = Syscall.retrying {
                withUnsafeMutablePointer(to: &iov) { p -> Int in
                    p.withMemoryRebound(to: iovec.self, capacity: 2) { v in
                        var msg = msghdr()
                        msg.msg_iov = v
                        msg.msg_iovlen = count
                        return sendmsg(fd, &msg, Int32(MSG_NOSIGNAL))
                    }
                }
            }
            switch r {
            case .success(let n): off += n
            case .failure(let e): throw .system(call: "send", errno: e)
            }
        }
    }

    /// Reads what is available into `buffer` (blocking for at least one byte). 0 = end of stream.
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws(ToyAppError) -> Int {
        switch Syscall.retrying({ recv(fd, buffer.baseAddress, buffer.count, 0) }) {
        case .success(let n): return n
        case .failure(let e): throw .system(call: "recv", errno: e)
        }
    }

    /// A blocking `recv` on this socket fails with EAGAIN after `seconds` without data.
    func setReceiveTimeout(seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1e6))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Wakes every thread blocked on this socket; later calls fail. Idempotent.
    func shutdown() {
        lock.withLock { _ in
            guard !isShutDown else { return }
            isShutDown = true
            _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        }
    }

    var wasShutDown: Bool {
        lock.withLock { _ in
            return isShutDown
        }
    }
}
