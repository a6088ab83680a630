import Testing
import Foundation
@testable import IntNW
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A plain blocking TCP socket for feeding a listener whatever bytes we like.
private func rawConnect(port: UInt16) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    let r = IPv4Endpoint("127.0.0.1", port: port)!.withSockaddr { connect(fd, $0, $1) }
    if r != 0 {
        close(fd)
        return nil
    }
    return fd
}

private func rawSend(_ fd: Int32, _ bytes: [UInt8]) {
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
}

@Suite("Hostile input to the server", .serialized)
struct HostileInputTests {
    @Test("random bytes, truncated frames, absurd lengths and hundreds of half-open connections do not stop service")
    func hostileClients() async throws {
        var opts = ListenerOptions()
        opts.helloTimeoutSeconds = 1
        opts.maxPendingConnections = 256
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1", options: opts)
        defer { listener.close() }
        let port = listener.localEndpoint.port
        var rng = SplitMix64(seed: 5)
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }

        // 300 half-open connections (more than maxPending: the excess is refused, not queued).
        for _ in 0..<300 { if let fd = rawConnect(port: port) { fds.append(fd) } }
        // Garbage of every kind on more connections.
        let hello = Frame.hello(Hello(role: .client, session: SessionID(high: 9, low: 9), networkID: 1,
                                      networkKind: .wifi, interfaceName: "evil")).encoded()
        var evil: [[UInt8]] = [
            [0xFF, 0xFF, 0xFF, 0xFF, 0x03],                  // absurd length
            [0x00, 0x00, 0x00, 0x00],                        // zero length
            Array(hello.prefix(hello.count - 3)),             // truncated HELLO
            hello + [0x7F, 0xFF, 0xFF, 0xFF, 0x03, 1, 2, 3],  // valid HELLO, then an absurd DATA length
            hello + Frame.data(DataChunk(id: IROBID(1), offset: 0, bytes: [1])).encoded(),  // DATA before BEGIN
            hello + Frame.beginIROB(BeginIROB(id: IROBID(1), labels: .none, length: UInt32.max, dependencies: .allEarlier)).encoded(),
        ]
        for _ in 0..<40 { evil.append((0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }) }
        for bytes in evil {
            if let fd = rawConnect(port: port) {
                rawSend(fd, bytes)
                fds.append(fd)
            }
        }

        // A real client is still served, in both directions.
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: port, options: RuntimeLoopbackTests.clientOptions())
        // The listener may have accepted the evil sessions first: find ours.
        var server: MultiSocket?
        while server == nil {
            let s = try await listener.accept()
            if s.sessionID == client.sessionID { server = s }
        }
        let w = Workload(count: 50, maxBytes: 4096, seed: 3)
        for item in w.items { try await client.send(item.bytes, labels: item.labels, dependsOn: item.deps) }
        var got: [Message] = []
        for _ in 0..<w.items.count { got.append(try await server!.receive()) }
        #expect(w.verify(got) == [])
        try await server!.send([42])
        #expect(try await client.receive().bytes == [42])

        // Pre-HELLO connections are bounded and expire.
        #expect(listener.pendingConnectionCount <= opts.maxPendingConnections)
        try await Task.sleep(for: .seconds(1.6))
        #expect(listener.pendingConnectionCount == 0)
        await client.close()
        await server!.close()
    }
}

@Suite("Server protocol handling over a raw socket", .serialized)
struct RawProtocolTests {
    /// Reads frames from a blocking socket until `want` of them arrived (or 5 s passed).
    private func readFrames(_ fd: Int32, want: Int) throws -> [Frame] {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var d = FrameDecoder()
        var out: [Frame] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < want {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            d.feed(Array(buf[0..<n]))
            while let f = try d.next() { out.append(f) }
        }
        return out
    }

    @Test("HELLO is answered, a complete IROB is ACKed, DATA_CHECK gets ACK and RESEND_REQUEST, PING gets PONG")
    func rawSession() async throws {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        guard let fd = rawConnect(port: listener.localEndpoint.port) else {
            Issue.record("cannot connect")
            return
        }
        defer { close(fd) }
        let session = SessionID(high: 1, low: 2)
        var out: [UInt8] = []
        out += Frame.hello(Hello(role: .client, session: session, networkID: 4, networkKind: .cellular, interfaceName: "raw0")).encoded()
        out += AttachAuth.freshKeyShare().encoded()
        out += Frame.beginIROB(BeginIROB(id: IROBID(1), labels: .foreground, length: 3, dependencies: .allEarlier)).encoded()
        out += Frame.data(DataChunk(id: IROBID(1), offset: 0, bytes: [7, 8, 9])).encoded()
        out += Frame.endIROB(id: IROBID(1), length: 3).encoded()
        out += Frame.beginIROB(BeginIROB(id: IROBID(2), labels: .background, length: 10, dependencies: .allEarlier)).encoded()
        out += Frame.data(DataChunk(id: IROBID(2), offset: 0, bytes: [1, 2, 3, 4])).encoded()
        out += Frame.dataCheck(ids: [IROBID(1), IROBID(2), IROBID(3)]).encoded()
        out += Frame.ping(nonce: 77).encoded()
        rawSend(fd, out)
        let server = try await listener.accept()
        #expect(server.sessionID == session)
        let m = try await server.receive()
        #expect(m.bytes == [7, 8, 9] && m.labels == .foreground)
        let frames = try readFrames(fd, want: 6)
        guard case .hello(let h)? = frames.first else {
            Issue.record("no HELLO first: \(frames)")
            return
        }
        if frames.count > 1, case .auth(.keyShare) = frames[1] {} else { Issue.record("no key share after the HELLO: \(frames)") }
        #expect(h.role == .server && h.session == session && h.networkID == 4)
        let acked = frames.compactMap { f -> [IROBID]? in if case .ack(let a) = f { return a.entries.map(\.id) } else { return nil } }.flatMap { $0 }
        #expect(acked.contains(IROBID(1)) && !acked.contains(IROBID(2)))
        let resends = frames.compactMap { f -> ResendRequest? in if case .resendRequest(let r) = f { return r } else { return nil } }
        #expect(resends.contains(ResendRequest(id: IROBID(2), needsBegin: false, offset: 4, length: 6)))
        #expect(resends.contains(ResendRequest(id: IROBID(3), needsBegin: true, offset: 0, length: 0)))
        #expect(frames.contains(.pong(nonce: 77, holdMicroseconds: 0)))
        await server.close(timeoutSeconds: 0)
    }
}
