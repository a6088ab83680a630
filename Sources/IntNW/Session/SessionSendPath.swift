/// A session's send path: the service pass the loop runs for a dirty session, the pump (the
/// scheduler's core: which queued IROB goes on which connection, foreground first), background
/// admission (the BG allowance from the background policy), ACK encoding and flushing the
/// connection's send buffer to its socket. Runs under the loop lock.
#if canImport(Glibc)
import Glibc
#endif
import CShims

extension Session {
    func service(nowNs: UInt64) {
        if phase == .closed { return }
        resumeReadsIfRoom(nowNs: nowNs)
        var usable: [NetworkStatus]?
        var choices: [UInt32: UInt32?] = [:]
        for c in conns.all where c.state == .established || c.state == .awaitingHello {
            if c.state == .established {
                if usable == nil { usable = conns.usableStatuses() }
                // Keep the socket fed while it takes everything; when it stops (EAGAIN), POLLOUT
                // brings us back. Bounded so reads on other connections are not starved.
                var rounds = 0
                while true {
                    let produced = pump(c, usable: usable!, choices: &choices, nowNs: nowNs)
                    flush(c, nowNs: nowNs)
                    rounds += 1
                    if produced == 0 || c.state == .closed || c.out.pending > 0 { break }
                    if rounds >= 16 {
                        loop.markDirty(self)
                        break
                    }
                }
                // Frames left unprocessed while the connection's replies were backlogged, or
                // beyond the per-pass frame budget (processFrames).
                if c.state == .established && c.decoder.bufferedByteCount > 0 && !c.backlogged && receiver.shouldRead {
                    processFrames(c, nowNs: nowNs)
                }
            } else {
                c.drainControl()
                flush(c, nowNs: nowNs)
            }
        }
        checkForegroundOnWire(nowNs: nowNs)
    }

    /// Tells the background scheduler which foreground data has left this session's socket send
    /// queues (`delay-target:barrier=wire` in other multisockets and processes waits for it); while
    /// some still waits in a kernel queue, looks again after a barrier re-check period (nothing
    /// else wakes the session when a kernel queue drains).
    private func checkForegroundOnWire(nowNs: UInt64) {
        let again = background.checkForegroundOnWire { fd in
            guard let c = conns.connection(fd: fd), c.state == .established else { return nil }
            let kernel = cshims_siocoutqnsd(fd)
            return kernel < 0 ? nil : c.out.pending + Int(kernel)
        }
        guard again, wireCheckWakeNs == nil else { return }
        let at = nowNs + UInt64(BackgroundScheduler.barrierRecheckMilliseconds * 1_000_000)
        wireCheckWakeNs = at
        loop.schedule(atNs: at) { [weak self] in
            guard let self else { return }
            self.wireCheckWakeNs = nil
            self.loop.markDirty(self)
        }
    }

    /// Writes what `c` has queued (control frames first) as far as the socket takes it.
    func flush(_ c: Connection, nowNs: UInt64) {
        guard c.state != .closed && c.state != .connecting else { return }
        c.drainControl()
        let before = c.out.pending
        if let err = c.out.write(to: c.fd) {
            connectionFailed(c, reason: "send: \(err)", nowNs: nowNs)
        } else if c.out.pending < before {
            c.lastSentNs = nowNs
        }
    }

    /// Encodes `c`'s pending ACKs (as many ACK frames as the list limit needs) into its send buffer.
    func encodeAcks(_ c: Connection, nowNs: UInt64) {
        while !c.pendingAcks.isEmpty {
            let n = min(c.pendingAcks.count, Wire.maxListEntries)
            guard c.out.reserve(FrameEncoder.ackBaseLength + n * FrameEncoder.ackEntryLength) else { return }
            let entries = c.pendingAcks[0..<n].map { p in
                AckEntry(id: p.id, holdMicroseconds: UInt32(clamping: (nowNs &- p.completedAtNs) / 1000))
            }
            _ = c.out.append(.ack(Ack(cumulative: receiver.releaseFloor, entries: entries)))
            c.pendingAcks.removeFirst(n)
        }
    }

    /// Fills `c`'s send buffer: control frames, ACKs, then IROB chunks the chooser assigns to its
    /// network. Returns how much IROB data (bytes, +1 per chunk) it queued.
    private func pump(_ c: Connection, usable: [NetworkStatus], choices: inout [UInt32: UInt32?], nowNs: UInt64) -> Int {
        c.drainControl()
        encodeAcks(c, nowNs: nowNs)
        guard !c.troubled else { return 0 }
        var produced = 0
        let nid = c.network.networkID
        var bgAllowance: Int?
        var bgGranted = 0
        defer {
            // The policy learns what the grant carried (its pacing charges bytes sent, not granted).
            if bgGranted > 0, let left = bgAllowance { background.backgroundUsed(bgGranted - max(0, left)) }
        }
        while c.out.pending < Session.outHighWater {
            // Foreground before background; within a class, lowest id first.
            var best: (labels: Labels, id: IROBID)?
            for h in sender.queueHeads {
                let choice: UInt32?
                if let cached = choices[h.labels.rawValue] {
                    choice = cached
                } else {
                    choice = options.chooser.choose(for: h.labels, among: usable)
                    choices[h.labels.rawValue] = .some(choice)
                }
                guard choice == nid else { continue }
                if let b = best {
                    let better = (h.labels.isForeground && !b.labels.isForeground)
                        || (h.labels.isForeground == b.labels.isForeground && h.id < b.id)
                    if better { best = h }
                } else {
                    best = h
                }
            }
            guard let pick = best else { return produced }
            var maxBytes = options.sendLimits.maxChunkBytes
            if pick.labels.isBackground {
                // No foreground is waiting for this interface (it would have been picked first).
                if bgAllowance == nil {
                    bgAllowance = backgroundAllowance(c, usable: usable, nowNs: nowNs)
                    bgGranted = max(0, bgAllowance!)
                }
                if bgAllowance! <= 0 { return produced }
                maxBytes = min(maxBytes, bgAllowance!)
            }
            let room = Session.outCapacity - c.out.pending - FrameEncoder.dataHeaderLength - 64
                - BeginIROB.maxEncodedLength - 32
            maxBytes = min(maxBytes, room)
            if maxBytes <= 0 { return produced }
            guard c.out.reserve(maxBytes + FrameEncoder.dataHeaderLength + BeginIROB.maxEncodedLength + 64) else { return produced }
            // For passive estimation: what has yet to cross the link ahead of a new IROB (user
            // space and the kernel's unsent bytes; bytes in flight may already be past the
            // bottleneck, so counting them would read a rate above the link's).
            var aheadBytes: Int?
            if let irob = sender.unacked[pick.id.rawValue], irob.firstSentNs == 0 {
                aheadBytes = max(0, Int(cshims_siocoutqnsd(c.fd))) + c.out.pending
            }
            guard let chunk = sender.nextChunk(labels: pick.labels, maxBytes: maxBytes, on: c.id, nowNs: nowNs) else { continue }
            if let aheadBytes { sender.unacked[chunk.id.rawValue]?.queuedAheadBytes = aheadBytes }
            produced += chunk.range.count + 1
            if let b = chunk.begin { _ = c.out.append(.beginIROB(b)) }
            if !chunk.range.isEmpty {
                sender.withBytes(of: chunk.id) { all in
                    let slice = UnsafeRawBufferPointer(rebasing: all[Int(chunk.range.lowerBound)..<Int(chunk.range.upperBound)])
                    c.out.appendData(id: chunk.id, offset: chunk.range.lowerBound, payload: slice)
                }
            }
            if chunk.isLast {
                _ = c.out.append(.endIROB(id: chunk.id, length: UInt32(sender.unacked[chunk.id.rawValue]?.bytes.count ?? 0)))
            }
            if let net = conns.nets[nid] {
                net.bytesSent += UInt64(chunk.range.count)
                if pick.labels.isForeground {
                    troubleForegroundSent(c, id: chunk.id, nowNs: nowNs)
                    net.lastForegroundNs = nowNs
                    background.foregroundChunkQueued(chunk.id, interface: net.name, fd: c.fd, isLast: chunk.isLast)
                    background.observe(.sent(id: chunk.id, networkID: nid, bytes: chunk.range.count, nowNs: nowNs), interface: net.name, fd: c.fd)
                }
            }
            if pick.labels.isBackground { bgAllowance! -= chunk.range.count }
        }
        return produced
    }

    /// How many background bytes `c` may take now (0: wait; a wake-up is armed if the policy named one).
    private func backgroundAllowance(_ c: Connection, usable: [NetworkStatus], nowNs: UInt64) -> Int {
        guard let net = conns.nets[c.network.networkID] else { return 0 }
        let decision = background.decide(network: conns.status(of: net), otherUsableNetworks: usable.count - 1, fd: c.fd,
                                         userQueuedBytes: c.out.pending, nowNs: nowNs)
        // The interface has drained for the path probe: a PING, ahead of the background that
        // follows it, measures the path's RTT without background's queue.
        if background.takePathProbe(fd: c.fd), c.out.append(.ping(nonce: nowNs)) {
            c.pathProbeNonce = nowNs
        }
        switch decision {
        case .send(let maxBytes): return maxBytes
        case .wait(let until):
            // One pending wake-up per session is enough: keep the earliest.
            if let until, backgroundWakeNs == nil || until < backgroundWakeNs! {
                backgroundWakeNs = until
                loop.schedule(atNs: until) { [weak self] in
                    guard let self, self.backgroundWakeNs == until else { return }
                    self.backgroundWakeNs = nil
                    self.loop.markDirty(self)
                }
            }
            return 0
        }
    }
}

extension BeginIROB {
    /// Upper bound of an encoded BEGIN_IROB, in bytes.
    static let maxEncodedLength = Wire.headerLength + 19 + 8 * Wire.maxDependencies
}
