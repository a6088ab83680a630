import Foundation
import Testing
import ToyProtocol
@testable import ToyApps
import LinuxSupport

/// The apps' IntNW calls do not depend on Swift's cooperative thread pool: they complete while
/// every thread of it is blocked. The premise (all blocking tasks started, so the pool really is
/// full) needs the pool to itself: under phase 1's parallel suites other tests' tasks hold its
/// threads and the blocking tasks may not all start, so the suite runs in the quiet phase
/// (scripts/run-tests.sh, QUIET_OTHER).
@Suite("IntNW apps with the cooperative pool blocked", .serialized)
struct CooperativePoolTests {
    @Test("the apps' IntNW calls complete while every thread of Swift's cooperative pool is blocked")
    func independentOfTheCooperativePool() async throws {
        let width = ProcessInfo.processInfo.activeProcessorCount
        let started = WaitableMutex(0)
        let gate = WaitableMutex(false)
        // Held only until the exchange below is done (or 5 s): other suites share the pool.
        for _ in 0..<width {
            Task.detached {
                started.update { $0 += 1 }
                gate.wait(until: { $0 }) { _, _ in }
            }
        }
        let outcome = try await onThread { () -> (blocked: Bool, done: Bool, seconds: Double) in
            defer { gate.update { $0 = true } }
            let blocked = started.wait(until: { $0 >= width }, deadlineMonotonicNs: IntNWLoopbackTests.monotonicNs() + 5_000_000_000) { _, ok in ok }
            let t0 = Date()
            let finished = WaitableMutex<Bool?>(nil)
            Thread {
                let ok: Bool
                do {
                    let server = ToyServer(settings: ServerSettings(address: "127.0.0.1", port: 0, replyBytes: 64),
                                           transport: IntNWLoopbackTests.transport, sink: MemoryLineSink(), warn: { _ in })
                    let port = try server.start()
                    defer { _ = server.stop() }
                    let c = try IntNWLoopbackTests.transport.connect(host: "127.0.0.1", port: port, timeoutSeconds: 5, stop: StopToken())
                    defer { c.close() }
                    _ = try c.send(ToyHeader(kind: .fgRequest, appID: 1, sequence: 0, payloadLength: 100), inReplyTo: nil)
                    ok = try c.receive()?.header.kind == .fgReply
                } catch {
                    ok = false
                }
                finished.update { $0 = ok }
            }.start()
            let done = finished.wait(until: { $0 != nil }, deadlineMonotonicNs: IntNWLoopbackTests.monotonicNs() + 5_000_000_000) { v, _ in v == true }
            return (blocked, done, Date().timeIntervalSince(t0))
        }
        #expect(outcome.blocked, "the blocking tasks did not all start")
        #expect(outcome.done, "the exchange did not complete within 5 s with the pool blocked")
        print("toy apps with the cooperative pool blocked (\(width) threads): exchange done \(outcome.done) in \(String(format: "%.3f", outcome.seconds)) s")
    }
}
