/// Thin, typed wrappers over the BSD socket calls the runtime needs (IPv4 TCP, nonblocking).
#if canImport(Glibc)
import Glibc
#endif
import CShims

/// An IPv4 address and port. `address` is in host byte order (198.18.1.2 = 0xC6120102).
public struct IPv4Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var address: UInt32
    public var port: UInt16
    public init(address: UInt32, port: UInt16) {
        self.address = address
        self.port = port
    }
    /// Parses a dotted-quad IPv4 literal.
    public init?(_ text: String, port: UInt16) {
        guard let a = IPv4Endpoint.parse(text) else { return nil }
        self.init(address: a, port: port)
    }
    public static func parse(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard p.count <= 3, let n = UInt8(p) else { return nil }
            v = v << 8 | UInt32(n)
        }
        return v
    }
    public static func format(_ a: UInt32) -> String { "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)" }
    public var description: String { "\(IPv4Endpoint.format(address)):\(port)" }

    var sockaddr: sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = address.bigEndian
        return sa
    }
    init(_ sa: sockaddr_in) {
        self.init(address: UInt32(bigEndian: sa.sin_addr.s_addr), port: UInt16(bigEndian: sa.sin_port))
    }
}

enum Sockets {
    /// Retries EINTR; turns -1 into a typed error naming the call.
    @inline(__always)
    static func check(_ call: String, _ body: () -> Int32) throws -> Int32 {
        while true {
            let r = body()
            if r >= 0 { return r }
            if errno == EINTR { continue }
            throw IntNWError.errno(call)
        }
    }

    static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ what: String) throws {
        var v = value
        _ = try check("setsockopt(\(what))") { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) }
    }

    /// A nonblocking, close-on-exec TCP socket.
    static func tcpSocket() throws -> Int32 {
        try check("socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
    }

    /// Options every IntNW TCP connection gets: no Nagle (IROB frames are already batched),
    /// keepalive so a silently dead path is noticed, and a not-sent low-water mark so the kernel
    /// does not queue seconds of background data ahead of later foreground data.
    static func configureConnection(_ fd: Int32, notSentLowWatermarkBytes: Int) {
        _ = try? setInt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1, "TCP_NODELAY")
        _ = try? setInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE")
        _ = try? setInt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, 10, "TCP_KEEPIDLE")
        _ = try? setInt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, 2, "TCP_KEEPINTVL")
        _ = try? setInt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, 5, "TCP_KEEPCNT")
        if notSentLowWatermarkBytes > 0 {
            _ = try? setInt(fd, Int32(IPPROTO_TCP), 25 /* TCP_NOTSENT_LOWAT */, Int32(notSentLowWatermarkBytes), "TCP_NOTSENT_LOWAT")
        }
    }

    /// SO_BINDTODEVICE: restricts the socket's route lookups to `interface`, so a connection
    /// leaves on its link even without source-based policy routing (a laptop's default routes
    /// via each interface suffice). Needs CAP_NET_RAW on older kernels: best effort.
    @discardableResult
    static func bindToDevice(_ fd: Int32, _ interface: String) -> Bool {
        var name = Array(interface.utf8.prefix(15)) + [0]
        return setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, &name, socklen_t(name.count)) == 0
    }

    static func bind(_ fd: Int32, _ ep: IPv4Endpoint) throws {
        var sa = ep.sockaddr
        _ = try check("bind(\(ep))") {
            withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
    }

    /// Starts a nonblocking connect. Returns true if already connected.
    static func startConnect(_ fd: Int32, to ep: IPv4Endpoint) throws -> Bool {
        var sa = ep.sockaddr
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if r == 0 { return true }
        if errno == EINPROGRESS || errno == EINTR { return false }
        throw IntNWError.errno("connect(\(ep))")
    }

    /// The result of a nonblocking connect once the socket is writable (0 = connected).
    static func pendingError(_ fd: Int32) -> Int32 {
        var e: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0 { return errno }
        return e
    }

    static func listen(on ep: IPv4Endpoint, backlog: Int32 = 512) throws -> Int32 {
        let fd = try tcpSocket()
        do {
            try setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
            try bind(fd, ep)
            _ = try check("listen") { Glibc.listen(fd, backlog) }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    static func localEndpoint(_ fd: Int32) -> IPv4Endpoint? {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let r = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return r == 0 ? IPv4Endpoint(sa) : nil
    }

    /// Accepts one pending connection (nonblocking, close-on-exec), nil when none is pending.
    static func accept(_ fd: Int32) throws -> (Int32, IPv4Endpoint)? {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        while true {
            let c = withUnsafeMutablePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.accept(fd, $0, &len)
                }
            }
            if c >= 0 {
                _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                return (c, IPv4Endpoint(sa))
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return nil
            // The peer gave up before we accepted, or we are out of fds: not fatal to the listener.
            case ECONNABORTED, EPROTO, EMFILE, ENFILE, ENOBUFS, ENOMEM, EPERM: return nil
            default: throw IntNWError.errno("accept")
            }
        }
    }

    /// Resolves a host name or IPv4 literal to an IPv4 address (host order).
    static func resolveIPv4(_ host: String) throws -> UInt32 {
        if let a = IPv4Endpoint.parse(host) { return a }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &res)
        guard rc == 0, let first = res else {
            throw IntNWError.invalidArgument("cannot resolve host \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        guard let sa = first.pointee.ai_addr else { throw IntNWError.invalidArgument("no IPv4 address for \(host)") }
        return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
    }
}
