/// A session's receive path: reading a connection's socket into its decoder, dispatching the
/// decoded frames (DATA straight into the receiver core), handing released messages to the
/// application, and ACK handling (the sender's bookkeeping and passive estimation). Runs under
/// the loop lock.
#if canImport(Glibc)
import Glibc
#endif
import LinuxSupport

extension Session {
    /// `hangup`: poll reported an error, the peer gone, or its sending side shut down. At the
    /// receive-memory cap such a connection is closed unread (what it carried and was not
    /// acknowledged is resent elsewhere, or reported undelivered by its sender) rather than left
    /// holding memory until the idle timeout.
    func readAvailable(_ c: Connection, hangup: Bool = false, nowNs: UInt64) {
        defer {
            if c.state != .closed { c.decoder.shrink(ifLargerThan: Session.idleReadBufferBytes) }
            syncReceiveMemory()
        }
        if hangup && !memoryAllowsReading(c) {
            connectionFailed(c, reason: "closed by peer (left unread at the receive-memory cap)", nowNs: nowNs)
            return
        }
        var reads = 0
        while c.state != .closed && receiver.shouldRead && !c.backlogged && !c.framesPending && memoryAllowsReading(c) && reads < 2 {
            reads += 1
            let r = Syscall.retrying {
                c.decoder.fill(atLeast: Session.readChunk) { buf in Glibc.recv(c.fd, buf.baseAddress, buf.count, 0) }
            }
            let n: Int
            switch r {
            case .success(0):
                connectionFailed(c, reason: peerGoodbye ? "closed after GOODBYE" : "closed by peer", nowNs: nowNs)
                return
            case .success(let got):
                n = got
                c.lastReceivedNs = nowNs
                syncReceiveMemory()
            case .failure(let e):
                if !e.isWouldBlock { connectionFailed(c, reason: "recv: \(e)", nowNs: nowNs) }
                return
            }
            processFrames(c, nowNs: nowNs)
            if n < Session.readChunk { return }
        }
    }

    /// Reads paused for a full receive buffer resume once the application made room: frames
    /// already buffered are processed first.
    func resumeReadsIfRoom(nowNs: UInt64) {
        if readPaused && receiver.shouldRead {
            readPaused = false
            for c in conns.all where c.state != .closed && c.decoder.bufferedByteCount > 0 {
                processFrames(c, nowNs: nowNs)
            }
        }
        if !receiver.shouldRead { readPaused = true }
    }

    /// Decodes and handles buffered frames while the receive buffer allows, at most
    /// `Session.framesPerPass` of them: a peer sending many tiny frames must not hold the loop
    /// thread (shared by every session of a listener) for long; the rest waits for the next pass.
    func processFrames(_ c: Connection, nowNs: UInt64) {
        var frames = 0
        c.framesPending = false
        do {
            while c.state != .closed && receiver.shouldRead && !c.backlogged {
                if frames == Session.framesPerPass {
                    // Frames left over are decoded by the next pass (the session's service), and
                    // the connection is not read until then. With nothing left over there is no
                    // next pass to wait for: marked pending then, it would never be read again.
                    if c.decoder.bufferedByteCount > 0 {
                        c.framesPending = true
                        loop.markDirty(self)
                    }
                    return
                }
                frames += 1
                let d = try c.decoder.decodeNextRaw { id, offset, bytes in
                    if c.state != .established {
                        throw ProtocolError(.unexpected("DATA before HELLO"))
                    }
                    let reaction = try receiver.data(id: id, offset: offset, bytes: bytes, nowNs: nowNs)
                    if case .reAck(let rid) = reaction { c.pendingAcks.append((rid, nowNs)) }
                    conns.nets[c.network.networkID]?.bytesReceived += UInt64(bytes.count)
                }
                switch d {
                case .needMore: return
                case .dataHandled: break
                case .frame(let f): try handleFrame(f, on: c, nowNs: nowNs)
                }
                collectReceived(c, nowNs: nowNs)
            }
        } catch let e as ProtocolError {
            // Only this connection goes: what it carried is resent on the others.
            log.warning("protocol error, closing connection", metadata: ["interface": "\(c.network.interfaceName)", "error": "\(e)"])
            connectionFailed(c, reason: "\(e)", nowNs: nowNs)
        } catch {
            connectionFailed(c, reason: "\(error)", nowNs: nowNs)
        }
    }

    private func collectReceived(_ c: Connection, nowNs: UInt64) {
        let acks = receiver.takePendingAcks()
        if !acks.isEmpty { c.pendingAcks.append(contentsOf: acks) }
        let released = receiver.takeReleased()
        if !released.isEmpty {
            for r in released where r.labels.isForeground {
                conns.nets[c.network.networkID]?.lastForegroundNs = nowNs
                background.observe(.received(id: r.id, networkID: c.network.networkID, nowNs: nowNs), interface: c.network.interfaceName, fd: c.fd)
            }
            mailbox.deposit(released)
            deliverToReceivers()
        }
        if peerGoodbye && receiver.allReleased { deliverToReceivers() }
    }

    private func handleFrame(_ f: Frame, on c: Connection, nowNs: UInt64) throws {
        if c.state == .awaitingHello || c.state == .awaitingKey {
            guard role == .client, c.state == .awaitingHello else {
                throw ProtocolError(.unexpected("frame type 0x\(String(f.typeCode, radix: 16)) before the attach"))
            }
            try handleAttachFrame(f, on: c, nowNs: nowNs)
            return
        }
        switch f {
        case .hello:
            throw ProtocolError(.unexpected("second HELLO on a connection"))
        case .auth:
            throw ProtocolError(.unexpected("AUTH on an attached connection"))
        case .beginIROB(let b):
            sawIROB = true
            try checkReceiveMemory(for: b)
            if case .reAck(let id) = try receiver.begin(b, nowNs: nowNs) { c.pendingAcks.append((id, nowNs)) }
            syncReceiveMemory()
        case .data:
            break  // handled in place by processFrames
        case .endIROB(let id, let length):
            _ = try receiver.end(id: id, length: length)
        case .ack(let a):
            handleAck(a, on: c, nowNs: nowNs)
        case .resendRequest(let r):
            sender.resend(r)
        case .dataCheck(let ids):
            let (ack, resend) = receiver.check(ids)
            for id in ack { c.pendingAcks.append((id, nowNs)) }
            c.control.append(contentsOf: resend.map { .resendRequest($0) })
        case .newInterface(let info):
            log.debug("peer announced network", metadata: ["interface": "\(info.name)", "kind": "\(info.kind)"])
        case .downInterface(let nid):
            if let other = conns.byNetwork[nid], other !== c {
                connectionFailed(other, reason: "peer reported its network down", nowNs: nowNs)
            }
        case .goodbye(let g):
            peerGoodbye = true
            receiver.peerLastID = g.lastID
            log.info("peer said goodbye", metadata: ["reason": "\(g.reason)", "lastID": "\(g.lastID)"])
            deliverToReceivers()
            mailbox.wakeSenders()
        case .ping(let nonce):
            c.control.append(.pong(nonce: nonce, holdMicroseconds: 0))
        case .pong(let nonce, _):
            // Only the echo of this connection's own path-probe PING is a sample: a PONG the peer
            // made up, repeated or held back can name no other time.
            if c.pathProbeNonce != 0, nonce == c.pathProbeNonce, nowNs >= nonce {
                c.pathProbeNonce = 0
                background.observePathRTT(interface: c.network.interfaceName, fd: c.fd, rttNs: nowNs - nonce, nowNs: nowNs)
            }
        case .extension(let type, let body):
            handleExtensionFrame(type: type, body: body, on: c, nowNs: nowNs)
        }
    }

    private func handleAck(_ a: Ack, on c: Connection, nowNs: UInt64) {
        c.lastAckReceivedNs = nowNs
        var samples = sender.acknowledge(below: a.cumulative)
        var holds: [IROBID: UInt32] = [:]
        for e in a.entries {
            if let s = sender.acknowledge(e.id) {
                samples.append(s)
                holds[e.id] = e.holdMicroseconds
            }
        }
        for s in samples where s.labels.isForeground {
            background.observe(.acknowledged(id: s.id, nowNs: nowNs), interface: nil)
            troubleForegroundAcknowledged(s.id)
        }
        for s in samples where !s.resent && s.singleConnection {
            guard let conn = s.connection.flatMap({ conns.connection(id: $0) }), conn === c,
                  let net = conns.nets[c.network.networkID] else { continue }
            let hold = UInt64(holds[s.id] ?? 0) * 1000
            let elapsed = nowNs &- s.firstSentNs
            if elapsed > hold {
                net.estimator.addIROBSample(bytes: s.lengthBytes, queuedAheadBytes: s.queuedAheadBytes, elapsedNs: elapsed - hold,
                                            sendSpanNs: s.lastSentNs &- s.firstSentNs)
            }
        }
        if !samples.isEmpty {
            mailbox.wakeSenders()
            if phase == .closing && sender.unackedCount == 0 { finishClose(flushed: true, nowNs: nowNs) }
        }
    }
}
