#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LinuxSupport
import SystemPackage
import Testing
import ToyProtocol
@testable import ToyApps

/// The whole app stack over loopback (no namespaces needed): server, FG and BG clients, plain TCP.
@Suite("Plain-TCP apps over loopback", .serialized)
struct PlainLoopbackTests {
    /// Checks what every variant must satisfy; shared with the IntNW loopback tests.
    static func checkRun(_ r: LoopbackRun,
                         fgApp: Int, bgApp: Int, minRequests: Int, variant: ToyVariant, chunkBytes: Int = 65_536) throws {
        #expect(r.failure == nil)
        #expect(r.warnings.isEmpty, "\(r.warnings)")
        let fg = r.clientLog.ofType("fg", app: fgApp)
        #expect(fg.count >= minRequests)
        // Sequence numbers 0, 1, 2, ... each answered once, and times are consistent.
        #expect(fg.compactMap { $0.int("seq") } == Array(0 ..< fg.count))
        for line in fg {
            let send = try #require(line.u64("send_ns")), recv = try #require(line.u64("recv_ns"))
            #expect(recv > send)
            let lat = try #require(line.double("latency_ms"))
            #expect(abs(lat - Double(recv - send) / 1e6) < 0.001)
            #expect(lat < 1000, "loopback latency \(lat) ms")
            #expect(line["variant"] as? String == variant.rawValue)
            #expect(line.int("request_bytes") == 128 && line.int("reply_bytes") == 64)
        }
        #expect(r.clientLog.ofType("fg_unanswered").isEmpty)
        let chunks = r.clientLog.ofType("bg_chunk", app: bgApp)
        #expect(!chunks.isEmpty)
        #expect(Set(chunks.compactMap { $0.int("seq") }).count == chunks.count, "each chunk acked once")
        for c in chunks { #expect(try #require(c.u64("ack_ns")) > (try #require(c.u64("send_ns")))) }
        #expect(!r.clientLog.ofType("bg_progress", app: bgApp).isEmpty)

        guard case .fg(let fgSum) = try #require(r.client.first(where: { if case .fg = $0 { true } else { false } })),
              case .bg(let bgSum) = try #require(r.client.first(where: { if case .bg = $0 { true } else { false } })) else {
            Issue.record("missing summaries")
            return
        }
        // After a drained stop every request was answered and every chunk acked.
        #expect(fgSum.requestsSent == fgSum.requestsAnswered)
        #expect(Int(fgSum.requestsAnswered) == fg.count)
        #expect(bgSum.chunksAcked == bgSum.chunksSent)
        #expect(Int(bgSum.chunksAcked) == chunks.count)
        #expect(bgSum.bytesAcked == UInt64(chunks.count * chunkBytes))
        // The server saw exactly what the clients sent.
        #expect(r.server.fgRequestsAnswered == fgSum.requestsAnswered)
        #expect(r.server.bgChunksAcked == bgSum.chunksAcked)
        #expect(r.server.bytesReceived == fgSum.requestsSent * 128 + bgSum.bytesSent)
        #expect(r.server.connectionErrors == 0)
    }

    @Test("FG and BG on separate connections: every request answered, every chunk acked, counts agree")
    func separate() async throws {
        let r = try await runLoopback(transport: PlainTCPTransport(),
                                connections: [[.fg(FGClientSettings(appID: 1, intervalSeconds: 0.05))],
                                              [.bg(BGClientSettings(appID: 2, chunkBytes: 65_536, depth: 4))]],
                                seconds: 1.0)
        try Self.checkRun(r, fgApp: 1, bgApp: 2, minRequests: 10, variant: .plain)
        #expect(r.server.connections == 2)
        #expect(r.serverLog.ofType("server_connection").count == 4)
    }

    @Test("FG and BG sharing one connection: answers are routed by app id")
    func shared() async throws {
        let r = try await runLoopback(transport: PlainTCPTransport(),
                                connections: [[.fg(FGClientSettings(appID: 10, intervalSeconds: 0.05)),
                                               .bg(BGClientSettings(appID: 11, chunkBytes: 65_536, depth: 2))]],
                                seconds: 1.0)
        try Self.checkRun(r, fgApp: 10, bgApp: 11, minRequests: 10, variant: .plain)
        #expect(r.server.connections == 1)
    }

    @Test("per-app start delays: the FG app on a shared connection starts after its delay")
    func startDelays() async throws {
        let before = AppClock.realtimeNs()
        let r = try await runLoopback(transport: PlainTCPTransport(),
                                      connections: [[.fg(FGClientSettings(appID: 1, intervalSeconds: 0.05, startDelaySeconds: 0.5)),
                                                     .bg(BGClientSettings(appID: 2, chunkBytes: 65_536, depth: 2))]],
                                      seconds: 1.0)
        try Self.checkRun(r, fgApp: 1, bgApp: 2, minRequests: 5, variant: .plain)
        let firstFG = try #require(r.clientLog.ofType("fg", app: 1).first?.u64("send_ns"))
        let firstBG = try #require(r.clientLog.ofType("bg_chunk", app: 2).first?.u64("send_ns"))
        #expect(firstFG >= before + 500_000_000)
        #expect(firstBG < before + 400_000_000)
    }

    @Test("connection refused gives one clear error within the connect timeout")
    func refused() async throws {
        // A port nobody listens on: bind one, close it.
        let l = try PlainTCPTransport().listen(address: "127.0.0.1", port: 0)
        let port = l.port
        l.close()
        let (failure, elapsedNs, summaries, ended) = try await onThread { () -> (ToyAppError?, UInt64, [AppSummary], Bool) in
            let start = AppClock.monotonicNs()
            let session = ClientSession(
                configuration: ClientSessionConfiguration(host: "127.0.0.1", port: port,
                                                          connections: [[.fg(FGClientSettings(appID: 1))]],
                                                          connectTimeoutSeconds: 0.5),
                transport: PlainTCPTransport(), sink: MemoryLineSink(), warn: { _ in })
            let done = StopToken()
            session.start(onFinished: { done.stop() })
            let ended = !done.sleep(untilMonotonicNs: start + 5_000_000_000)
            let elapsed = AppClock.monotonicNs() - start
            return (session.failure, elapsed, session.stop(), ended)
        }
        #expect(ended, "the session should end by itself")
        let f = try #require(failure)
        #expect(f.description == "cannot connect to 127.0.0.1:\(port): Connection refused (gave up after 0.5 s)")
        #expect(elapsedNs >= 450_000_000, "refused attempts are retried until the timeout")
        #expect(summaries.isEmpty)
    }

    @Test("a listener on a port in use fails with a one-line error")
    func portInUse() throws {
        let first = try PlainTCPTransport().listen(address: "127.0.0.1", port: 0)
        defer { first.close() }
        #expect(throws: ToyAppError.self) { _ = try PlainTCPTransport().listen(address: "127.0.0.1", port: first.port) }
        do {
            _ = try PlainTCPTransport().listen(address: "127.0.0.1", port: first.port)
        } catch {
            #expect(error.description.contains("Address already in use"))
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("a client sending garbage loses its connection; the server keeps serving others")
    func hostileClient() async throws {
        let warnings = WarningLog()
        let server = ToyServer(settings: ServerSettings(address: "127.0.0.1", port: 0), transport: PlainTCPTransport(),
                               sink: MemoryLineSink(), warn: warnings.warn)
        let port = try server.start()
        let good = try PlainTCPTransport().connect(host: "127.0.0.1", port: port, timeoutSeconds: 2, stop: StopToken())
        let (connected, sent, closedByServer) = try await onThread { () -> (Bool, Int, Bool) in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            let rc = IPv4Endpoint("127.0.0.1", port: port)!.withSockaddr { connect(fd, $0, $1) }
            let garbage = [UInt8](repeating: 0xEE, count: 100)
            let n = send(fd, garbage, garbage.count, 0)
            // The server closes the hostile connection: recv sees end of stream (or a reset).
            var b = [UInt8](repeating: 0, count: 16)
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let r = Syscall.retrying { recv(fd, &b, 16, 0) }
            return (rc == 0, n, r == .success(0) || r == .failure(.connectionReset))
        }
        #expect(connected && sent == 100 && closedByServer)
        // A well-behaved client on the other connection is still answered.
        let (sentAt, reply) = try await onThread { () -> (UInt64, ReceivedMessage?) in
            let t = try good.send(ToyHeader(kind: .fgRequest, appID: 5, sequence: 0, payloadLength: 104))
            return (t, try good.receive())
        }
        let r = try #require(reply)
        #expect(r.header.kind == .fgReply && r.header.appID == 5 && r.header.sequence == 0)
        #expect(r.header.messageLength == 64 && r.receivedNs >= sentAt)
        good.close()
        let summary = try await onThread { server.stop() }
        #expect(summary.connectionErrors == 1)
        #expect(warnings.lines.contains { $0.contains("protocol violation") && $0.contains("magic") })
    }
}
