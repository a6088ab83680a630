/// The set-up the hostile-client suites share (IntNWTests: HostileSessionTests,
/// BoundedResourcesTests, SessionLossTests, SessionFuzzTests, MemoryProbeTests): a server on
/// loopback whose application echoes, and a raw peer that speaks frames over a blocking socket.
/// Public IntNW API only (this target is built without testing enabled).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import IntNW

/// A listener on 127.0.0.1 (a free port) and, unless told otherwise, an application that echoes
/// every message of every session it accepts. `close()` stops both.
public final class LoopbackServer: @unchecked Sendable {
    public let listener: MultiSocketListener
    public let port: UInt16
    private let echo: Task<Void, Never>?

    public init(options: ListenerOptions = ListenerOptions(), echo: Bool = true) throws {
        listener = try MultiSocketListener(port: 0, address: "127.0.0.1", options: options)
        port = listener.localEndpoint.port
        self.echo = echo ? Self.echo(listener) : nil
    }

    public func close() {
        echo?.cancel()
        listener.close()
    }

    /// Echoes every message of every session `listener` accepts.
    public static func echo(_ listener: MultiSocketListener) -> Task<Void, Never> {
        Task {
            while let s = try? await listener.accept() {
                Task { while let m = try? await s.receive() { try? await s.send(m.bytes) } }
            }
        }
    }
}

/// A hostile (or just raw) client: blocking socket calls, so run it off Swift's cooperative pool.
public enum RawPeer {
    /// A blocking TCP connection to the listener from `source` (any 127/8 address works on
    /// loopback: each is another peer address for the server's per-address bound).
    public static func connect(_ port: UInt16, from source: String = "127.0.0.1") -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = IPv4Endpoint.parse(source)!.bigEndian
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = IPv4Endpoint.parse("127.0.0.1")!.bigEndian
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound != 0 || r != 0 {
            close(fd)
            return nil
        }
        return fd
    }

    public static func send(_ fd: Int32, _ frames: [Frame]) {
        let bytes = frames.flatMap { $0.encoded() }
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Frames the server sends on `fd` until it closes it, `stopAfter` frames arrived, or the
    /// timeout passes; `closed` says whether the server closed (or reset) the connection. Bytes of
    /// a frame that is still incomplete at the end are dropped: read a connection in several steps
    /// with one `RawStream`.
    public static func read(_ fd: Int32, stopAfter: Int = .max, timeoutSeconds: Double = 3) -> (frames: [Frame], closed: Bool) {
        RawStream(fd: fd).read(timeoutSeconds: timeoutSeconds) { $0.count >= stopAfter }
    }

    public static func hello(_ id: SessionID, network: UInt32, version: UInt16 = Wire.version) -> Frame {
        .hello(Hello(version: version, role: .client, session: id, networkID: network, networkKind: .wifi, interfaceName: "evil"))
    }
}

/// The raw peer's side of one connection's stream, read in as many steps as needed: one decoder
/// for the whole connection, so a frame split across two reads is decoded whole.
public final class RawStream: @unchecked Sendable {
    public let fd: Int32
    private var decoder = FrameDecoder()

    public init(fd: Int32) {
        self.fd = fd
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Frames until `done` says so (asked with every frame of this call so far), the server
    /// closes (or resets) the connection, or `timeoutSeconds` pass.
    public func read(timeoutSeconds: Double = 5, until done: ([Frame]) -> Bool) -> (frames: [Frame], closed: Bool) {
        var frames: [Frame] = []
        var buf = [UInt8](repeating: 0, count: 16 << 10)
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while !done(frames) && Date() < deadline {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (frames, true) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                return (frames, true)
            }
            decoder.feed(Array(buf[0..<n]))
            while let f = try? decoder.next() { frames.append(f) }
        }
        return (frames, false)
    }

    /// The PONGs of `nonces` that arrive within `timeoutSeconds`.
    public func pongs(_ nonces: Set<UInt64>, timeoutSeconds: Double = 5) -> Set<UInt64> {
        var got: Set<UInt64> = []
        _ = read(timeoutSeconds: timeoutSeconds) { frames in
            for f in frames { if case .pong(let n, _) = f, nonces.contains(n) { got.insert(n) } }
            return got.count == nonces.count
        }
        return got
    }
}
