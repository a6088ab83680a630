/// A server's global receive-memory cap (`ListenerOptions.receiveMemoryLimitBytes`): every session
/// of one listener charges what it holds for its peer -- begun and not yet consumed IROBs with their
/// bookkeeping, and its connections' read buffers -- to one shared budget. At the cap no connection
/// of any of them is read (a read that could grow a read buffer past the cap waits), and a BEGIN_IROB that would take the total past it closes the connection
/// that sent it (what the sender put on it comes again later). Before either, sessions whose
/// clients have left (no connection) and that still hold memory are closed to make room
/// (`ListenerCore.reclaimDetachedMemory`). Confined to the listener's loop.

final class ReceiveMemoryBudget {
    let limitBytes: Int
    private(set) var usedBytes = 0
    /// Highest `usedBytes` seen (tests and the hostile probes report it).
    private(set) var peakBytes = 0

    init(limitBytes: Int) { self.limitBytes = limitBytes }

    var exhausted: Bool { usedBytes >= limitBytes }
    /// A connection was left unread for lack of room: wake the loop when room comes back.
    var readersWaiting = false

    func adjust(by delta: Int) {
        usedBytes += delta
        peakBytes = max(peakBytes, usedBytes)
    }

    /// Whether `bytes` more fit under the cap.
    func admits(_ bytes: Int) -> Bool { usedBytes + bytes <= limitBytes }
}

extension Session {
    /// Read buffers above this are given back once empty (a large frame does not pin its memory).
    static let idleReadBufferBytes = 2 * Session.readChunk + 4096

    /// What this session holds for its peer right now, in bytes.
    var receiveMemoryBytes: Int {
        guard phase != .closed else { return 0 }
        var n = receiver.bufferedBytes
        for c in conns.all { n += c.decoder.capacityBytes }
        return n
    }

    /// Brings the listener's budget up to date with what this session holds.
    func syncReceiveMemory() {
        guard let budget = memoryBudget else { return }
        let now = receiveMemoryBytes
        let delta = now - memoryCharged
        budget.adjust(by: delta)
        memoryCharged = now
        // Room again: connections left unread may be read (the loop rebuilds its poll set).
        if delta < 0 && budget.readersWaiting {
            budget.readersWaiting = false
            loop.wakeLocked()
        }
    }

    /// Whether the global cap has room for what one more read on `c` can add to its read buffer.
    func memoryAllowsReading(_ c: Connection) -> Bool {
        guard let budget = memoryBudget else { return true }
        let growth = c.decoder.capacityAfterReserving(Session.readChunk) - c.decoder.capacityBytes
        if growth == 0 || budget.admits(growth) { return true }
        if listener?.reclaimDetachedMemory(toAdmit: growth, for: self) == true { return true }
        budget.readersWaiting = true
        return false
    }

    /// Before a BEGIN_IROB: refuses one that would take the listener past its cap.
    func checkReceiveMemory(for b: BeginIROB) throws {
        guard let budget = memoryBudget else { return }
        let more = receiver.charge(for: b)
        if more > 0 && !budget.admits(more) && listener?.reclaimDetachedMemory(toAdmit: more, for: self) != true {
            throw ProtocolError(.receiveBufferExceeded(limitBytes: budget.limitBytes))
        }
    }
}
