/// The one IPv4 endpoint type (address + port) and its `sockaddr_in` conversions.
#if canImport(Glibc)
import Glibc
#endif

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
    /// A dotted-quad literal as a host-order address; nil if `text` is not one.
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

    /// A literal, or the first IPv4 address `host` resolves to (host order); nil with the reason.
    public static func resolveAddress(_ host: String) -> Result<UInt32, ResolveError> {
        if let a = parse(host) { return .success(a) }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &res)
        guard rc == 0, let first = res else {
            return .failure(ResolveError(host: host, detail: String(cString: gai_strerror(rc))))
        }
        defer { freeaddrinfo(res) }
        guard let sa = first.pointee.ai_addr, first.pointee.ai_family == AF_INET else {
            return .failure(ResolveError(host: host, detail: "no IPv4 address"))
        }
        return .success(sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) })
    }

    public struct ResolveError: Error, Equatable, Sendable, CustomStringConvertible {
        public var host: String
        public var detail: String
        public var description: String { "cannot resolve host \(host): \(detail)" }
    }

    /// The endpoint as a `sockaddr_in` (network byte order inside).
    public var sockaddr: sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = address.bigEndian
        return sa
    }

    public init(_ sa: sockaddr_in) {
        self.init(address: UInt32(bigEndian: sa.sin_addr.s_addr), port: UInt16(bigEndian: sa.sin_port))
    }

    /// Calls `body` with the endpoint as a generic `sockaddr` pointer and its length (bind, connect, sendto).
    public func withSockaddr<R>(_ body: (UnsafePointer<Glibc.sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var sa = sockaddr
        return try withUnsafePointer(to: &sa) {
            try $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// Fills a `sockaddr_in` through `body` (accept, getsockname, recvfrom); nil if `body` fails (< 0).
    public static func receiving<R: SignedInteger>(_ body: (UnsafeMutablePointer<Glibc.sockaddr>, UnsafeMutablePointer<socklen_t>) -> R)
        -> (result: R, endpoint: IPv4Endpoint?) {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let r = withUnsafeMutablePointer(to: &sa) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { body($0, &len) }
        }
        return (r, r >= 0 ? IPv4Endpoint(sa) : nil)
    }
}
