import Foundation
import IntNW
import Testing

/// `receive` and a `send` waiting for window space give up when their task is cancelled (an
/// `async let` receiver left behind by a failing sender used to wait forever), and lose nothing.
@Suite("Cancellation over loopback", .serialized)
struct CancellationTests {
    /// Waits (bounded) until `task` has finished, without awaiting it.
    func finished<T>(_ task: Task<T, Error>, withinSeconds: Double) async -> Result<T, Error>? {
        let box = ResultBox<T>()
        let watcher = Task { box.set(await task.result) }
        let deadline = Date().addingTimeInterval(withinSeconds)
        while box.get() == nil && Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        watcher.cancel()
        return box.get()
    }

    @Test("a cancelled receive throws CancellationError; the next message goes to the next receive")
    func cancelledReceive() async throws {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port,
                                                   options: RuntimeLoopbackTests.clientOptions())
        let server = try await listener.accept()

        let waiting = Task { try await client.receive() }
        try await Task.sleep(for: .milliseconds(100))  // let it suspend
        waiting.cancel()
        let outcome = try #require(await finished(waiting, withinSeconds: 5), "cancelled receive still waiting")
        #expect(throws: CancellationError.self) { try outcome.get() }

        try await server.send([1, 2, 3])
        let m = try await client.receive()
        #expect(m.bytes == [1, 2, 3])

        // A task cancelled before it calls receive gets the error at once too.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.receive()
        }
        let earlyOutcome = try #require(await finished(early, withinSeconds: 5), "pre-cancelled receive still waiting")
        #expect(throws: CancellationError.self) { try earlyOutcome.get() }

        #expect((await client.close()).flushed)
        await server.close()
    }

    @Test("a send waiting for window space throws CancellationError when cancelled and sends nothing")
    func cancelledSend() async throws {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        defer { listener.close() }
        // Only "cellular", so a WiFi-only message stays queued and keeps the small window full.
        var opts = RuntimeLoopbackTests.clientOptions()
        opts.staticNetworks = [opts.staticNetworks![1]]
        opts.sendLimits = SendLimits(windowBytes: 64 << 10, maxIROBBytes: 64 << 10)
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: opts)
        let server = try await listener.accept()

        try await client.send([UInt8](repeating: 1, count: 60 << 10), labels: .wifiOnly, dependsOn: .none)
        let blocked = Task { try await client.send([UInt8](repeating: 2, count: 60 << 10), dependsOn: .none) }
        try await Task.sleep(for: .milliseconds(100))
        blocked.cancel()
        let outcome = try #require(await finished(blocked, withinSeconds: 5), "cancelled send still waiting")
        #expect(throws: CancellationError.self) { try outcome.get() }
        #expect(client.unacknowledgedCount == 1, "the cancelled message was not enqueued")

        let report = await client.close(timeoutSeconds: 0.2)
        #expect(report.undelivered.count == 1)
        await server.close()
    }
}

/// A result handed from one task to another.
final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<T, Error>?
    func set(_ v: Result<T, Error>) { lock.withLock { value = v } }
    func get() -> Result<T, Error>? { lock.withLock { value } }
}
