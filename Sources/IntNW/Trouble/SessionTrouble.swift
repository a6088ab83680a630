/// Trouble detection inside a session: which connections have foreground data outstanding (and
/// since when), a timer at the earliest moment an ACK timeout could expire, and the response to a
/// verdict: the troubled network stops carrying data, what it carried unACKed is resent elsewhere,
/// the peer is told (NETWORK_TROUBLE), and the network returns to service once ACKs flow again.
/// Everything here runs on the session's loop thread under the loop lock.
import CShims

/// Per-connection trouble state (a field of `Connection`).
struct ConnectionTrouble {
    /// This side declared the connection's network troubled.
    var local = false
    /// The peer declared it troubled (NETWORK_TROUBLE) and has not cleared it.
    var peer = false
    /// Monotonic ns of this side's declaration (0: not troubled here).
    var sinceNs: UInt64 = 0
    /// Foreground IROBs with bytes on this connection that are not yet ACKed.
    var foregroundInFlight: Set<UInt64> = []
    /// Monotonic ns since which `foregroundInFlight` has been non-empty (0: empty).
    var foregroundSinceNs: UInt64 = 0
    /// When the detector wants to look again (monotonic ns; 0 = not scheduled).
    var nextCheckNs: UInt64 = 0
    /// Foreground data went on the connection and the detector has not looked since: it does, even
    /// if the data was ACKed meanwhile (on a fast path the ACK can beat the first check).
    var checkPending = false

    /// Whether the detector has anything to judge on this connection.
    var watched: Bool { local || checkPending || !foregroundInFlight.isEmpty }
}

/// NETWORK_TROUBLE, an optional extension frame (docs/wire-protocol.md): "my side sees no progress on
/// the network with this id" or "it works again". A peer that does not know the type skips it.
enum TroubleNotice {
    static let frameType: UInt8 = Wire.networkTroubleType

    static func frame(networkID: UInt32, troubled: Bool) -> Frame {
        let n = networkID
        return .extension(type: frameType, body: [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF),
                                                  troubled ? 1 : 0])
    }

    /// Decodes a body; nil when it is not a valid NETWORK_TROUBLE body (the frame is then ignored:
    /// extensions are optional, so a malformed one must not cost the connection).
    static func parse(_ body: [UInt8]) -> (networkID: UInt32, troubled: Bool)? {
        guard body.count == 5, body[4] <= 1 else { return nil }
        let id = UInt32(body[0]) << 24 | UInt32(body[1]) << 16 | UInt32(body[2]) << 8 | UInt32(body[3])
        return (id, body[4] == 1)
    }
}

extension Session {
    var troubleDetectionEnabled: Bool { !(options.troubleDetector is NoTroubleDetector) }

    // MARK: - Foreground bookkeeping (hooks from pump and handleAck)

    /// Foreground bytes of `id` were placed on `c`.
    func troubleForegroundSent(_ c: Connection, id: IROBID, nowNs: UInt64) {
        guard troubleDetectionEnabled else { return }
        if c.trouble.foregroundInFlight.isEmpty {
            c.trouble.foregroundSinceNs = nowNs
            // Let the detector look right away (after this write): it knows the timeout and answers
            // with the earliest time it could expire.
            if !c.trouble.local {
                c.trouble.nextCheckNs = nowNs
                c.trouble.checkPending = true
                armTroubleTimer(atNs: nowNs)
            }
        }
        c.trouble.foregroundInFlight.insert(id.rawValue)
    }

    /// Foreground IROB `id` was acknowledged by the peer.
    func troubleForegroundAcknowledged(_ id: IROBID) {
        guard troubleDetectionEnabled else { return }
        for c in conns.byNetwork.values where c.trouble.foregroundInFlight.remove(id.rawValue) != nil {
            if c.trouble.foregroundInFlight.isEmpty { c.trouble.foregroundSinceNs = 0 }
        }
    }

    // MARK: - The timer

    /// Makes sure trouble checks run at `deadlineNs` (or earlier).
    func armTroubleTimer(atNs deadlineNs: UInt64) {
        if troubleTimerNs != 0 && troubleTimerNs <= deadlineNs { return }
        troubleTimerNs = deadlineNs
        loop.schedule(atNs: deadlineNs) { [weak self] in
            guard let self else { return }
            // A superseded timer still runs the checks (cheap: only what is due is evaluated).
            if self.troubleTimerNs == deadlineNs { self.troubleTimerNs = 0 }
            self.runTroubleChecks(nowNs: cshims_monotonic_ns())
        }
    }

    /// Evaluates every watched connection whose check is due, applies the verdicts, and re-arms the
    /// timer for the earliest next check.
    func runTroubleChecks(nowNs: UInt64) {
        guard phase != .closed, troubleDetectionEnabled else { return }
        var next = UInt64.max
        for c in Array(conns.byNetwork.values) where c.state == .established && c.trouble.watched {
            if c.trouble.nextCheckNs > nowNs {
                next = min(next, c.trouble.nextCheckNs)
                continue
            }
            guard let net = conns.nets[c.network.networkID], let info = try? TCPInfoReader.readRaw(fd: c.fd) else { continue }
            var st = conns.status(of: net)
            st.troubled = c.trouble.local
            let sample = TroubleSample(network: st, nowNs: nowNs, tcpInfo: info,
                                       unackedForegroundIROBs: c.trouble.foregroundInFlight.count,
                                       lastAckNs: c.lastAckReceivedNs,
                                       foregroundOutstandingSinceNs: c.trouble.foregroundSinceNs,
                                       troubledSinceNs: c.trouble.sinceNs)
            c.trouble.checkPending = false
            let v = options.troubleDetector.evaluate(sample)
            let fallback = nowNs + UInt64(max(1, options.maintenanceIntervalMilliseconds)) * 1_000_000
            c.trouble.nextCheckNs = max(nowNs + 1, v.nextCheckNs ?? fallback)
            if v.troubled && !c.trouble.local {
                declareTrouble(c, nowNs: nowNs)
            } else if !v.troubled && c.trouble.local {
                clearTrouble(c, nowNs: nowNs)
            }
            if c.state == .established && c.trouble.watched { next = min(next, c.trouble.nextCheckNs) }
        }
        if next != .max { armTroubleTimer(atNs: next) }
    }

    // MARK: - Response

    /// This side declared `c`'s network troubled.
    private func declareTrouble(_ c: Connection, nowNs: UInt64) {
        c.trouble.local = true
        c.trouble.sinceNs = nowNs
        let notice = TroubleNotice.frame(networkID: c.network.networkID, troubled: true)
        for o in conns.byNetwork.values where o !== c && o.state == .established { o.control.append(notice) }
        let requeued = moveWorkOff(c)
        log.info("network troubled: failing over", metadata: [
            "interface": "\(c.network.interfaceName)", "requeued": "\(requeued)",
            "alternatives": "\(conns.byNetwork.values.filter { $0 !== c && $0.state == .established && !$0.troubled }.count)"])
        loop.markDirty(self)
    }

    /// ACKs flow again on `c`: back in service (unless the peer still says otherwise).
    private func clearTrouble(_ c: Connection, nowNs: UInt64) {
        c.trouble.local = false
        c.trouble.sinceNs = 0
        let notice = TroubleNotice.frame(networkID: c.network.networkID, troubled: false)
        for o in conns.byNetwork.values where o.state == .established { o.control.append(notice) }
        log.info("network back in service", metadata: ["interface": "\(c.network.interfaceName)",
                                                       "troubled_by_peer": "\(c.trouble.peer)"])
        if !c.troubled { runThunks() }
        loop.markDirty(self)
    }

    /// Puts what `c` carried unACKed back in the queues (the chooser sends it on another network; the
    /// receiver drops what arrives twice) and moves its pending ACKs to a working connection.
    /// Returns how many IROBs were requeued.
    private func moveWorkOff(_ c: Connection) -> Int {
        c.trouble.foregroundInFlight.removeAll()
        c.trouble.foregroundSinceNs = 0
        let requeued = sender.connectionFailed(c.id)
        if !c.pendingAcks.isEmpty,
           let other = conns.byNetwork.values.first(where: { $0 !== c && $0.state == .established && !$0.troubled }) {
            other.pendingAcks.append(contentsOf: c.pendingAcks)
            c.pendingAcks.removeAll()
        }
        return requeued.count
    }

    // MARK: - The peer's notices

    /// An extension frame arrived on `c`.
    func handleExtensionFrame(type: UInt8, body: [UInt8], on c: Connection, nowNs: UInt64) {
        guard type == TroubleNotice.frameType, let n = TroubleNotice.parse(body),
              let target = conns.byNetwork[n.networkID], target.state == .established,
              target.trouble.peer != n.troubled else { return }
        let wasUsable = !target.troubled
        target.trouble.peer = n.troubled
        log.info(n.troubled ? "peer reports network trouble" : "peer reports network back in service",
                 metadata: ["interface": "\(target.network.interfaceName)", "troubled_here": "\(target.trouble.local)"])
        if n.troubled {
            if wasUsable { _ = moveWorkOff(target) }
        } else if !target.troubled {
            runThunks()
        }
        loop.markDirty(self)
    }
}
