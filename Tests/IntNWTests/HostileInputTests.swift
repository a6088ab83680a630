import Testing
import Foundation
@testable import IntNW
#if canImport(Glibc)
import Glibc
#endif

/// A plain blocking TCP socket for feeding a listener whatever bytes we like.
private func rawConnect(port: UInt16) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = port.bigEndian
    sa.sin_addr.s_addr = IPv4Endpoint.parse("127.0.0.1")!.bigEndian
    let r = withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
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
