/// Thin, typed wrappers over the BSD socket calls the runtime needs (IPv4 TCP, nonblocking).
#if canImport(Glibc)
import Glibc
#endif
import CShims
import LinuxSupport
import SystemPackage

enum Sockets {
    /// Retries EINTR; turns -1 into a typed error naming the call.
    @inline(__always)
    static func check(_ call: @autoclosure () -> String, _ body: () -> Int32) throws(IntNWError) -> Int32 {
        do throws(SystemCallError) {
            return try Syscall.check(call(), body)
        } catch {
            throw IntNWError(error)
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
        _ = try check("bind(\(ep))") { ep.withSockaddr { Glibc.bind(fd, $0, $1) } }
    }

    /// Starts a nonblocking connect. Returns true if already connected.
    static func startConnect(_ fd: Int32, to ep: IPv4Endpoint) throws -> Bool {
        // An interrupted connect goes on in the background, like one in progress.
        if ep.withSockaddr({ Glibc.connect(fd, $0, $1) }) == 0 { return true }
        let e = Errno.last
        if e.isConnectInProgress { return false }
        throw IntNWError.system(call: "connect(\(ep))", errno: e)
    }

    /// The result of a nonblocking connect once the socket is writable (nil = connected).
    static func pendingError(_ fd: Int32) -> Errno? {
        var e: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0 { return .last }
        return e == 0 ? nil : Errno(rawValue: e)
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
        IPv4Endpoint.receiving { getsockname(fd, $0, $1) }.endpoint
    }

    /// Accepts one pending connection (nonblocking, close-on-exec), nil when none is pending.
    static func accept(_ fd: Int32) throws -> (Int32, IPv4Endpoint)? {
        var peer: IPv4Endpoint?
        let r = Syscall.retrying {
            let (c, ep) = IPv4Endpoint.receiving { Glibc.accept(fd, $0, $1) }
            peer = ep
            return c
        }
        switch r {
        case .success(let c):
            _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            return (c, peer!)
        case .failure(let e) where e.isWouldBlock: return nil
        // The peer gave up before we accepted, or we are out of fds: not fatal to the listener.
        case .failure(.connectionAbort), .failure(.protocolError), .failure(.tooManyOpenFiles), .failure(.tooManyOpenFilesInSystem),
             .failure(.noBufferSpace), .failure(.noMemory), .failure(.notPermitted): return nil
        case .failure(let e): throw IntNWError.system(call: "accept", errno: e)
        }
    }

    /// Resolves a host name or IPv4 literal to an IPv4 address (host order).
    static func resolveIPv4(_ host: String) throws -> UInt32 {
        switch IPv4Endpoint.resolveAddress(host) {
        case .success(let a): return a
        case .failure(let e): throw IntNWError.invalidArgument("\(e)")
        }
    }
}
