#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// An IPv4 address and port.
public struct IPv4SocketAddress: Sendable, Equatable, CustomStringConvertible {
    /// Address in host byte order.
    public var address: UInt32
    public var port: UInt16

    public init(address: UInt32, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses a dotted-quad literal.
    public static func parse(_ text: String, port: UInt16) -> IPv4SocketAddress? {
        var a = in_addr()
        guard inet_pton(AF_INET, text, &a) == 1 else { return nil }
        return IPv4SocketAddress(address: UInt32(bigEndian: a.s_addr), port: port)
    }

    /// A literal, or the first IPv4 address `host` resolves to.
    public static func resolve(_ host: String, port: UInt16) throws(ToyAppError) -> IPv4SocketAddress {
        if let a = parse(host, port: port) { return a }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &res) == 0, let first = res else { throw .unresolvable(host: host) }
        defer { freeaddrinfo(res) }
        guard let sa = first.pointee.ai_addr, first.pointee.ai_family == AF_INET else { throw .unresolvable(host: host) }
        let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
        return IPv4SocketAddress(address: UInt32(bigEndian: a), port: port)
    }

    public var description: String {
        "\(address >> 24).\((address >> 16) & 0xFF).\((address >> 8) & 0xFF).\(address & 0xFF):\(port)"
    }

    var sockaddr: sockaddr_in {
        var s = sockaddr_in()
        s.sin_family = sa_family_t(AF_INET)
        s.sin_port = port.bigEndian
        s.sin_addr.s_addr = address.bigEndian
        return s
    }
}

/// Owns one blocking TCP socket descriptor.
///
/// `shutdown()` wakes threads blocked in `accept`/`recv`/`send` on it without closing the
/// descriptor; the descriptor is closed only when the last reference goes away, so a thread still
/// inside a call can never hit a reused descriptor number.
final class TCPSocket: @unchecked Sendable {
    let fd: Int32
    private let lock = NSLock()
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
        guard fd >= 0 else { throw .system(call: useMPTCP ? "socket(IPPROTO_MPTCP)" : "socket", errno: errno) }
        return fd
    }

    /// Connects with a timeout (non-blocking connect plus poll), then switches to blocking mode.
    /// Throws `ToyAppError.system(call: "connect", ...)` with the connect errno on failure.
    static func connect(to remote: IPv4SocketAddress, timeoutNs: UInt64) throws(ToyAppError) -> TCPSocket {
        let fd = try newSocket()
        let s = TCPSocket(fd: fd)
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var sa = remote.sockaddr
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            guard errno == EINPROGRESS else { throw .system(call: "connect", errno: errno) }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let deadline = AppClock.monotonicNs() + timeoutNs
            while true {
                let now = AppClock.monotonicNs()
                guard now < deadline else { throw .system(call: "connect", errno: ETIMEDOUT) }
                let ms = Int32(min((deadline - now + 999_999) / 1_000_000, 1000))
                let n = poll(&p, 1, ms)
                if n < 0 && errno != EINTR { throw .system(call: "poll", errno: errno) }
                if n > 0 { break }
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 else { throw .system(call: "getsockopt(SO_ERROR)", errno: errno) }
            if err != 0 { throw .system(call: "connect", errno: err) }
        }
        _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
        s.setNoDelay()
        return s
    }

    /// A listening socket on `local` with SO_REUSEADDR.
    static func listen(on local: IPv4SocketAddress, backlog: Int32 = 128) throws(ToyAppError) -> TCPSocket {
        let fd = try newSocket()
        let s = TCPSocket(fd: fd)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = local.sockaddr
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw .system(call: "bind", errno: errno) }
        guard Glibc.listen(fd, backlog) == 0 else { throw .system(call: "listen", errno: errno) }
        return s
    }

    /// Blocks for the next connection; nil after `shutdown()`.
    func accept() throws(ToyAppError) -> (TCPSocket, IPv4SocketAddress)? {
        while true {
            var sa = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let c = withUnsafeMutablePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(fd, $0, &len) }
            }
            if c >= 0 {
                let s = TCPSocket(fd: c)
                s.setNoDelay()
                return (s, IPv4SocketAddress(address: UInt32(bigEndian: sa.sin_addr.s_addr), port: UInt16(bigEndian: sa.sin_port)))
            }
            let e = errno
            if wasShutDown { return nil }
            switch e {
            // Transient: the connection died before accept, or a signal interrupted us.
            case EINTR, ECONNABORTED, EPROTO, EAGAIN: continue
            // Out of descriptors/memory: back off instead of spinning.
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                usleep(50_000)
                continue
            default: throw .system(call: "accept", errno: e)
            }
        }
    }

    /// The locally bound address.
    var localAddress: IPv4SocketAddress? {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        return IPv4SocketAddress(address: UInt32(bigEndian: sa.sin_addr.s_addr), port: UInt16(bigEndian: sa.sin_port))
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
            let n = withUnsafeMutablePointer(to: &iov) { p -> Int in
                p.withMemoryRebound(to: iovec.self, capacity: 2) { v in
                    var msg = msghdr()
                    msg.msg_iov = v
                    msg.msg_iovlen = count
                    return sendmsg(fd, &msg, Int32(MSG_NOSIGNAL))
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw .system(call: "send", errno: errno)
            }
            off += n
        }
    }

    /// Reads what is available into `buffer` (blocking for at least one byte). 0 = end of stream.
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws(ToyAppError) -> Int {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            throw .system(call: "recv", errno: errno)
        }
    }

    /// Wakes every thread blocked on this socket; later calls fail. Idempotent.
    func shutdown() {
        lock.lock()
        defer { lock.unlock() }
        guard !isShutDown else { return }
        isShutDown = true
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    var wasShutDown: Bool {
        lock.lock()
        defer { lock.unlock() }
        return isShutDown
    }
}
