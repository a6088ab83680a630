/// The application-facing side of a session: messages released by the receiver and not yet taken,
/// and every suspended application call (`receive`, `send` waiting for window space, `connect`,
/// `close`, and thunks waiting for a suitable network).
///
/// It knows nothing about sockets or the loop: continuations are resumed through `resumeLater`,
/// which the session points at its loop's after-unlock queue (a test can run them inline). Like
/// the rest of a session it is confined to the loop lock; it does no locking of its own.
final class AppMailbox {
    /// Runs an action once the caller's lock is released (continuations must not resume under it).
    typealias Deferral = (@escaping () -> Void) -> Void
    typealias Thunk = @Sendable () -> Void

    private let resumeLater: Deferral
    private var inbox: [ReceivedIROB] = []
    private var inboxHead = 0
    /// Suspended `receive` / `send` calls, each with a token so a cancelled task can take its own back out.
    private var receiveWaiters: [(token: UInt64, c: CheckedContinuation<Message, Error>)] = []
    private var sendWaiters: [(token: UInt64, c: CheckedContinuation<Void, Never>)] = []
    private var nextToken: UInt64 = 1
    private var establishWaiters: [CheckedContinuation<Void, Error>] = []
    private var closeWaiters: [CheckedContinuation<CloseReport, Never>] = []
    private var thunks: [(restriction: NetworkRestriction, thunk: Thunk)] = []

    init(resumeLater: @escaping Deferral) {
        self.resumeLater = resumeLater
    }

    // MARK: - Inbox

    /// Whether a received message is waiting to be taken.
    var hasMessage: Bool { inboxHead < inbox.count }

    /// Messages the receiver released, in release order.
    func deposit(_ released: [ReceivedIROB]) { inbox.append(contentsOf: released) }

    /// Takes the oldest received message, if any (its bytes leave the inbox).
    func takeReceived() -> ReceivedIROB? {
        guard inboxHead < inbox.count else { return nil }
        let r = inbox[inboxHead]
        inbox[inboxHead] = ReceivedIROB(id: r.id, labels: r.labels, bytes: [])
        inboxHead += 1
        if inboxHead == inbox.count {
            inbox.removeAll(keepingCapacity: true)
            inboxHead = 0
        } else if inboxHead > 4096 {
            inbox.removeFirst(inboxHead)
            inboxHead = 0
        }
        return r
    }

    // MARK: - Receive and send waiters

    /// A token for `addSendWaiter` / `addReceiveWaiter` and the matching `cancel...Waiter`.
    func makeToken() -> UInt64 {
        nextToken += 1
        return nextToken
    }

    var receiveWaiterCount: Int { receiveWaiters.count }
    var sendWaiterCount: Int { sendWaiters.count }

    func addReceiveWaiter(_ c: CheckedContinuation<Message, Error>, token: UInt64) { receiveWaiters.append((token, c)) }

    /// The task waiting in `receive` was cancelled: it gets `CancellationError`. Only waiters not
    /// yet handed a message are here, so no message is lost.
    func cancelReceiveWaiter(_ token: UInt64) {
        guard let i = receiveWaiters.firstIndex(where: { $0.token == token }) else { return }
        let w = receiveWaiters.remove(at: i).c
        resumeLater { w.resume(throwing: CancellationError()) }
    }

    /// Hands messages to waiting receivers, oldest waiter first, while `next` yields one; once
    /// `end` names why nothing more will come, every remaining waiter fails with it.
    func deliver(next: () -> Message?, end: () -> IntNWError?) {
        while !receiveWaiters.isEmpty {
            if let m = next() {
                let w = receiveWaiters.removeFirst().c
                resumeLater { w.resume(returning: m) }
            } else if let e = end() {
                failReceivers(e)
            } else {
                return
            }
        }
    }

    /// Every waiting receiver fails with `e`.
    func failReceivers(_ e: IntNWError) {
        let w = receiveWaiters
        receiveWaiters.removeAll()
        for c in w { resumeLater { c.c.resume(throwing: e) } }
    }

    func addSendWaiter(_ c: CheckedContinuation<Void, Never>, token: UInt64) { sendWaiters.append((token, c)) }

    /// The task waiting for send-window space was cancelled: let it go (it enqueued nothing).
    func cancelSendWaiter(_ token: UInt64) {
        guard let i = sendWaiters.firstIndex(where: { $0.token == token }) else { return }
        let w = sendWaiters.remove(at: i).c
        resumeLater { w.resume() }
    }

    /// Every task waiting to send looks again (window space freed, or the session ended).
    func wakeSenders() {
        guard !sendWaiters.isEmpty else { return }
        let w = sendWaiters
        sendWaiters.removeAll()
        for c in w { resumeLater { c.c.resume() } }
    }

    // MARK: - Connect and close

    var hasEstablishWaiters: Bool { !establishWaiters.isEmpty }

    func addEstablishWaiter(_ c: CheckedContinuation<Void, Error>) { establishWaiters.append(c) }

    /// A connection is up: every `connect` waiting for one returns.
    func establishSucceeded() {
        let w = establishWaiters
        establishWaiters.removeAll()
        for c in w { resumeLater { c.resume() } }
    }

    /// Every `connect` waiting for a connection fails with `e`.
    func establishFailed(_ e: IntNWError) {
        let w = establishWaiters
        establishWaiters.removeAll()
        for c in w { resumeLater { c.resume(throwing: e) } }
    }

    func addCloseWaiter(_ c: CheckedContinuation<CloseReport, Never>) { closeWaiters.append(c) }

    /// The close finished: every `close` waiting returns `report`.
    func closeFinished(_ report: CloseReport) {
        let w = closeWaiters
        closeWaiters.removeAll()
        for c in w { resumeLater { c.resume(returning: report) } }
    }

    /// Resumes one continuation after the lock (for calls answered at once).
    func resumeNow(_ action: @escaping () -> Void) { resumeLater(action) }

    // MARK: - Thunks waiting for a network

    func addThunk(_ r: NetworkRestriction, _ t: @escaping Thunk) { thunks.append((r, t)) }

    /// Removes and returns the thunks whose restriction `suitable` now allows, in the order added.
    func takeRunnableThunks(suitable: (NetworkRestriction) -> Bool) -> [Thunk] {
        guard !thunks.isEmpty else { return [] }
        var run: [Thunk] = []
        var keep: [(restriction: NetworkRestriction, thunk: Thunk)] = []
        for t in thunks {
            if suitable(t.restriction) { run.append(t.thunk) } else { keep.append(t) }
        }
        thunks = keep
        return run
    }

    func dropThunks() { thunks.removeAll() }
}
