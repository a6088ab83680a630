import Foundation
@testable import IntNW
import Testing

/// The session's application side without sockets: inbox order, waiters, cancellation, thunks.
@Suite("AppMailbox")
struct AppMailboxTests {
    /// Runs mailbox calls under a lock and resumes continuations after it, as the IO loop does.
    final class Harness: @unchecked Sendable {  // every access to `pending` / `mailbox` holds `lock`
        private let lock = NSLock()
        private var pending: [() -> Void] = []
        private var box: AppMailbox?

        func with<R>(_ body: (AppMailbox) -> R) -> R {
            lock.lock()
            if box == nil { box = AppMailbox(resumeLater: { [unowned self] in self.pending.append($0) }) }
            let r = body(box!)
            let p = pending
            pending = []
            lock.unlock()
            for f in p { f() }
            return r
        }

        /// Waits (bounded) until `count` says the expected waiters are registered.
        func waitFor(_ count: @escaping (AppMailbox) -> Bool) async throws {
            let deadline = Date().addingTimeInterval(5)
            while !with(count) {
                try #require(Date() < deadline, "waiter never registered")
                try await Task.sleep(for: .milliseconds(2))
            }
        }
    }

    static func irob(_ id: UInt64, _ bytes: [UInt8]) -> ReceivedIROB {
        ReceivedIROB(id: IROBID(id), labels: .foreground, bytes: bytes)
    }

    static func message(_ m: AppMailbox) -> Message? {
        m.takeReceived().map { Message(id: $0.id, labels: $0.labels, bytes: $0.bytes) }
    }

    @Test func inboxKeepsReleaseOrder() {
        let h = Harness()
        h.with { m in
            #expect(!m.hasMessage)
            m.deposit([Self.irob(1, [1]), Self.irob(2, [2])])
            m.deposit([Self.irob(3, [3])])
            #expect(m.hasMessage)
            #expect(m.takeReceived()?.id == IROBID(1))
            #expect(m.takeReceived()?.bytes == [2])
            #expect(m.takeReceived()?.id == IROBID(3))
            #expect(m.takeReceived() == nil)
            #expect(!m.hasMessage)
        }
    }

    @Test func waitingReceiversGetMessagesInOrderThenTheEnd() async throws {
        let h = Harness()
        let tokens = h.with { m in (m.makeToken(), m.makeToken(), m.makeToken()) }
        #expect(Set([tokens.0, tokens.1, tokens.2]).count == 3)
        let first = Task { try await withCheckedThrowingContinuation { c in h.with { $0.addReceiveWaiter(c, token: tokens.0) } } }
        try await h.waitFor { $0.receiveWaiterCount == 1 }
        let second = Task { try await withCheckedThrowingContinuation { c in h.with { $0.addReceiveWaiter(c, token: tokens.1) } } }
        try await h.waitFor { $0.receiveWaiterCount == 2 }
        let third = Task { try await withCheckedThrowingContinuation { c in h.with { $0.addReceiveWaiter(c, token: tokens.2) } } }
        try await h.waitFor { $0.receiveWaiterCount == 3 }

        h.with { m in
            m.deposit([Self.irob(7, [7]), Self.irob(8, [8])])
            m.deliver(next: { Self.message(m) }, end: { m.hasMessage ? nil : .endOfStream })
        }
        #expect(try await first.value.id == IROBID(7))
        #expect(try await second.value.bytes == [8])
        await #expect(throws: IntNWError.endOfStream) { try await third.value }
        #expect(h.with { $0.receiveWaiterCount } == 0)
    }

    @Test func aCancelledReceiverGetsCancellationErrorAndLosesNothing() async throws {
        let h = Harness()
        let (a, b) = h.with { m in (m.makeToken(), m.makeToken()) }
        let cancelled = Task { try await withCheckedThrowingContinuation { c in h.with { $0.addReceiveWaiter(c, token: a) } } }
        try await h.waitFor { $0.receiveWaiterCount == 1 }
        let other = Task { try await withCheckedThrowingContinuation { c in h.with { $0.addReceiveWaiter(c, token: b) } } }
        try await h.waitFor { $0.receiveWaiterCount == 2 }

        h.with { m in
            m.cancelReceiveWaiter(a)
            m.cancelReceiveWaiter(9999)  // unknown token: nothing happens
        }
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(h.with { $0.receiveWaiterCount } == 1)
        h.with { m in
            m.deposit([Self.irob(5, [5])])
            m.deliver(next: { Self.message(m) }, end: { nil })
        }
        #expect(try await other.value.id == IROBID(5))
    }

    @Test func sendWaitersWakeTogetherOrAloneWhenCancelled() async throws {
        let h = Harness()
        let (a, b, c) = h.with { m in (m.makeToken(), m.makeToken(), m.makeToken()) }
        let waiters = [a, b, c].map { t in
            Task { await withCheckedContinuation { (k: CheckedContinuation<Void, Never>) in h.with { $0.addSendWaiter(k, token: t) } } }
        }
        try await h.waitFor { $0.sendWaiterCount == 3 }
        h.with { $0.cancelSendWaiter(b) }
        await waiters[1].value
        #expect(h.with { $0.sendWaiterCount } == 2)
        h.with { $0.wakeSenders() }
        await waiters[0].value
        await waiters[2].value
        #expect(h.with { $0.sendWaiterCount } == 0)
    }

    @Test func establishAndCloseWaiters() async throws {
        let h = Harness()
        let ok = Task { try await withCheckedThrowingContinuation { c in h.with { $0.addEstablishWaiter(c) } } }
        try await h.waitFor { $0.hasEstablishWaiters }
        h.with { $0.establishSucceeded() }
        try await ok.value
        let failed = Task { try await withCheckedThrowingContinuation { c in h.with { $0.addEstablishWaiter(c) } } }
        try await h.waitFor { $0.hasEstablishWaiters }
        h.with { $0.establishFailed(.connectFailed("x")) }
        await #expect(throws: IntNWError.connectFailed("x")) { try await failed.value }

        let report = CloseReport(undelivered: [IROBID(4)], flushed: false)
        let closing = Task { await withCheckedContinuation { c in h.with { $0.addCloseWaiter(c) } } }
        try await Task.sleep(for: .milliseconds(50))
        h.with { $0.closeFinished(report) }
        #expect(await closing.value == report)
    }

    @Test func thunksRunOnlyWhenTheirRestrictionIsSuitable() {
        let h = Harness()
        let ran = h.with { m -> [Int] in
            let order = Mutexed()
            m.addThunk(.wifiOnly, { order.add(1) })
            m.addThunk(.cellularOnly, { order.add(2) })
            m.addThunk(.wifiOnly, { order.add(3) })
            for f in m.takeRunnableThunks(suitable: { $0 == .wifiOnly }) { f() }
            #expect(m.takeRunnableThunks(suitable: { $0 == .wifiOnly }).isEmpty)
            for f in m.takeRunnableThunks(suitable: { _ in true }) { f() }
            m.addThunk(.wifiOnly, { order.add(4) })
            m.dropThunks()
            #expect(m.takeRunnableThunks(suitable: { _ in true }).isEmpty)
            return order.values
        }
        #expect(ran == [1, 3, 2])
    }

    final class Mutexed: @unchecked Sendable {  // `values` only touched under `lock`
        private let lock = NSLock()
        private var v: [Int] = []
        func add(_ x: Int) { lock.lock(); v.append(x); lock.unlock() }
        var values: [Int] { lock.lock(); defer { lock.unlock() }; return v }
    }
}
