import Testing
import Foundation
@testable import IntNW
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The session's receive path against a raw peer on loopback: reading resumes after every pause.
@Suite("Receive path: reading never stops for good", .serialized)
struct ReceivePathTests {
    /// A pass decodes at most `Session.framesPerPass` frames. When a read held exactly that many,
    /// the pass used to leave the connection marked "frames pending" with nothing buffered: no
    /// later pass ran for it and it was never polled for reading again (a client stalled in
    /// `make test` with 2.2 MB unread on its WiFi connection this way).
    @Test("after a read of exactly one pass's worth of frames (and multiples), the next frame is still read")
    func readResumesAfterAFullPass() async throws {
        // Other suites may hold every thread of Swift's pool for seconds (one does on purpose), and
        // this test hops through the pool between its steps: the server waits for the attach.
        var opts = ListenerOptions()
        opts.helloTimeoutSeconds = 60
        let server = try LoopbackServer(options: opts)
        defer { server.close() }
        let fd = try #require(try await offPool { () -> Int32? in
            guard let fd = RawPeer.connect(server.port) else { return nil }
            RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), HostileSessionTests.throwawayKeyShare()])
            return fd
        })
        defer { close(fd) }
        // The attach is answered (its frames are decoded in passes of their own).
        let reader = RawStream(fd: fd)
        let attach = try await offPool { reader.read { !$0.isEmpty } }
        #expect(!attach.frames.isEmpty && !attach.closed, "the server did not answer the attach")
        var nonce: UInt64 = 0
        for passes in [1, 2, 3] {
            // One write of exactly `passes` passes' worth of PINGs: one loopback segment, one read.
            let batch = (0..<(passes * Session.framesPerPass)).map { _ -> UInt64 in nonce += 1; return nonce }
            RawPeer.send(fd, batch.map { .ping(nonce: $0) })
            let answered = try await offPool { reader.pongs(Set(batch)) }
            #expect(answered.count == batch.count, "\(answered.count) of \(batch.count) PINGs answered")
            // Then one more frame, on its own.
            nonce += 1
            let last = nonce
            RawPeer.send(fd, [.ping(nonce: last)])
            let after = try await offPool { reader.pongs([last]) }
            #expect(after == [last], "the PING after \(batch.count) frames was never answered")
        }
    }

    /// Backpressure: a receive buffer of 8 KB fills on every burst and the application makes room
    /// one message at a time. Whichever message makes room must wake the loop (it polls only the
    /// connections it may read): a wake-up lost there waited for the next unrelated event (the
    /// maintenance timer, here an hour away). Server to client, 3,000 messages of 100 bytes, so a
    /// read holds more frames than one pass decodes and the buffer fills in a later pass.
    @Test("a client whose receive buffer fills over and over gets every message, with no timer to rescue it")
    func backpressureResumes() async throws {
        let server = try LoopbackServer(echo: false)
        defer { server.close() }
        var options = HostileSessionTests.clientOptions()
        options.receiveLimits = ReceiveLimits(bufferBytes: 8 << 10, hardLimitBytes: 8 << 20)
        options.maintenanceIntervalMilliseconds = 3_600_000
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: server.port, options: options)
        let session = try await server.listener.accept()
        let count = 3_000
        let sender = Task {
            for i in 0..<count { try await session.send([UInt8](repeating: UInt8(i & 255), count: 100)) }
        }
        let received = try await withThrowingTaskGroup(of: Int?.self) { group in
            group.addTask {
                var n = 0
                while n < count {
                    let m = try await client.receive()
                    #expect(m.bytes.count == 100 && m.bytes.first == UInt8(n & 255))
                    n += 1
                    if n % 64 == 0 { try await Task.sleep(for: .milliseconds(1)) }
                }
                return n
            }
            group.addTask {
                try await Task.sleep(for: .seconds(20))
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        #expect(received == count, "the client stalled: not every message arrived within 20 s")
        try await sender.value
        await client.close(timeoutSeconds: 2)
        await session.close(timeoutSeconds: 1)
    }
}
