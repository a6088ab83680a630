/// What the public API (MultiSocket.swift) asks of a session, under the loop lock: send
/// admission, taking received messages, the suspended calls (kept in `AppMailbox`), thunks that
/// wait for a suitable network, and connect's wait for a first connection.

extension Session {
    /// Runs (detached, after the lock) every thunk whose restriction a current network now allows.
    func runThunks() {
        for f in mailbox.takeRunnableThunks(suitable: { conns.hasSuitableNetwork($0) }) {
            loop.deferAfterUnlock { Task.detached { f() } }
        }
    }

    func addThunk(_ r: NetworkRestriction, _ t: @escaping @Sendable () -> Void) { mailbox.addThunk(r, t) }

    /// The application enqueued IROB `id`: foreground data counts as waiting for the network the
    /// chooser would give it now (the multi-app barrier starts here, not when it is sent).
    func enqueued(_ id: IROBID, labels: Labels) {
        guard labels.isForeground else { return }
        let nid = options.chooser.choose(for: labels, among: conns.usableStatuses())
        background.foregroundEnqueued(id, interface: nid.flatMap { conns.nets[$0]?.name })
    }

    func addEstablishWaiter(_ c: CheckedContinuation<Void, Error>) {
        if conns.anyEstablished {
            loop.deferAfterUnlock { c.resume() }
        } else if let e = failure ?? (phase != .open ? IntNWError.closed : nil) {
            loop.deferAfterUnlock { c.resume(throwing: e) }
        } else {
            mailbox.addEstablishWaiter(c)
        }
    }

    var lastConnectErrorText: String { lastConnectError }

    /// The error a send gets now, if any.
    var sendBlockedError: IntNWError? {
        if let e = failure { return e }
        if phase != .open || peerGoodbye { return .closed }
        return nil
    }

    /// A token for `addSendWaiter` / `addReceiveWaiter` and the matching `cancel...Waiter`.
    func makeWaiterToken() -> UInt64 { mailbox.makeToken() }

    func addSendWaiter(_ c: CheckedContinuation<Void, Never>, token: UInt64) { mailbox.addSendWaiter(c, token: token) }

    /// The task waiting for send-window space was cancelled: let it go (it enqueued nothing).
    func cancelSendWaiter(_ token: UInt64) { mailbox.cancelSendWaiter(token) }

    /// Takes one received message if there is one (and frees its buffer space).
    func takeMessage() -> Message? {
        guard let r = mailbox.takeReceived() else { return nil }
        // Reading stops wherever the receive buffer fills (a read, a pass of frames), not only
        // where `readPaused` is recorded: whenever this message is what makes room, the loop
        // must look again (its poll set left the connections out; nothing else may wake it).
        let wasFull = !receiver.shouldRead
        receiver.consumed(length: r.bytes.count)
        syncReceiveMemory()
        if (readPaused || wasFull) && receiver.shouldRead {
            loop.markDirty(self)
            loop.wakeLocked()
        }
        return Message(id: r.id, labels: r.labels, bytes: r.bytes)
    }

    /// Why `receive` cannot return anything more, if that is the case.
    var receiveEndError: IntNWError? {
        if mailbox.hasMessage { return nil }
        if let e = failure { return e }
        if peerGoodbye && (receiver.allReleased || conns.isEmpty) { return .endOfStream }
        if phase == .closed { return .closed }
        return nil
    }

    func addReceiveWaiter(_ c: CheckedContinuation<Message, Error>, token: UInt64) { mailbox.addReceiveWaiter(c, token: token) }

    /// The task waiting in `receive` was cancelled: it gets `CancellationError`. Only waiters not
    /// yet handed a message are here, so no message is lost.
    func cancelReceiveWaiter(_ token: UInt64) { mailbox.cancelReceiveWaiter(token) }

    /// Hands received messages (or the end of the stream) to waiting `receive` calls.
    func deliverToReceivers() {
        mailbox.deliver(next: { takeMessage() }, end: { receiveEndError })
    }
}
