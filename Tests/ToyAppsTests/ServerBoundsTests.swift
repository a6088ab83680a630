#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LinuxSupport
import Testing
import ToyProtocol
@testable import ToyApps

/// The toy server's own bounds (issue 14): at most `maxConnections` connections served at once
/// (one thread each), and a read timeout on plain TCP connections.
@Suite("Toy server bounds", .serialized)
struct ServerBoundsTests {
    static func connect(_ port: UInt16) throws -> TCPSocket {
        try TCPSocket.connect(to: IPv4Endpoint(address: IPv4Endpoint.parse("127.0.0.1")!, port: port), timeoutNs: 2_000_000_000)
    }

    /// Seconds until the server closes `s` (recv returns 0 or fails), or nil within `limit` s.
    static func secondsUntilClosed(_ s: TCPSocket, limit: Double) -> Double? {
        s.setReceiveTimeout(seconds: 0.1)
        let t0 = Date()
        var b = [UInt8](repeating: 0, count: 64)
        while Date().timeIntervalSince(t0) < limit {
            let n = b.withUnsafeMutableBytes { recv(s.fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return Date().timeIntervalSince(t0) }
        }
        return nil
    }

    /// Catches: a thread per connection without a cap (1000 slowloris connections, 1002 threads).
    @Test("connections beyond --max-connections are closed at once and counted; a freed slot serves again")
    func connectionCap() async throws {
        let sink = MemoryLineSink()
        let server = ToyServer(settings: ServerSettings(address: "127.0.0.1", port: 0, maxConnections: 3),
                               transport: PlainTCPTransport(), sink: sink, warn: { _ in })
        let port = try server.start()
        defer { server.stop() }
        let r = try await onThread { () -> (held: Int, extraClosed: [Double?], reopened: Double?) in
            var held: [TCPSocket] = []
            for _ in 0..<3 { held.append(try Self.connect(port)) }
            // Let the server take all three before the extra ones arrive.
            let deadline = Date().addingTimeInterval(3)
            while server.summary.connections < 3 && Date() < deadline { usleep(10_000) }
            let extra = try (0..<5).map { _ in try Self.connect(port) }
            let closed = extra.map { Self.secondsUntilClosed($0, limit: 2) }
            // One held connection goes: a new one is served (not closed within a second).
            held[0].shutdown()
            let freed = Date().addingTimeInterval(3)
            // Its serving thread has finished once the server logged the close.
            while !LogLines(sink.lines).objects.contains(where: { $0["event"] as? String == "close" }) && Date() < freed {
                usleep(10_000)
            }
            let again = try Self.connect(port)
            return (held.count, closed, Self.secondsUntilClosed(again, limit: 1))
        }
        #expect(r.held == 3)
        #expect(r.extraClosed.allSatisfy { $0 != nil }, "connections beyond the cap stayed open: \(r.extraClosed)")
        #expect(r.reopened == nil, "a connection after a slot was freed was closed")
        let s = server.summary
        #expect(s.connectionsRefused == 5 && s.connections == 4, "\(s)")
        #expect(LogLines(sink.lines).objects.filter { $0["event"] as? String == "refused" }.count == 5)
    }

    /// Catches: plain connections without a read timeout (a silent client holds a thread forever).
    @Test("a silent plain TCP connection is closed after --idle-timeout, not counted as a server error")
    func readTimeout() async throws {
        let warnings = WarningLog()
        let server = ToyServer(settings: ServerSettings(address: "127.0.0.1", port: 0, idleTimeoutSeconds: 0.5),
                               transport: PlainTCPTransport(), sink: MemoryLineSink(), warn: warnings.warn)
        let port = try server.start()
        defer { server.stop() }
        let closedAfter = try await onThread { Self.secondsUntilClosed(try Self.connect(port), limit: 4) }
        #expect(closedAfter != nil && closedAfter! > 0.3, "closed after \(String(describing: closedAfter)) s")
        #expect(server.summary.connectionErrors == 0)
        #expect(warnings.lines.isEmpty, "\(warnings.lines)")
    }

    @Test("bad bounds are refused with one clear message")
    func validation() {
        #expect(throws: ToyAppError.invalidArgument("--max-connections must be 1 ... 65536 (got 0)")) {
            try ServerSettings(port: 0, maxConnections: 0).validate()
        }
        #expect(throws: ToyAppError.invalidArgument("--idle-timeout must be a positive number of seconds (got -1.0)")) {
            try ServerSettings(port: 0, idleTimeoutSeconds: -1).validate()
        }
    }
}
