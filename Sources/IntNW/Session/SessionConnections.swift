/// A session's connections coming and going: the client follows its local networks (one
/// connection per network, reconnecting with backoff), the server attaches connections the
/// listener hands over; both establish connections and recover when one fails (what it carried
/// goes back in the queues). Runs under the loop lock.
#if canImport(Glibc)
import Glibc
#endif
import CShims

extension Session {
    // MARK: - Client: networks and connections

    /// The monitor (or static configuration) reports the current set of usable local networks.
    func networksChanged(_ current: [LocalNetwork], nowNs: UInt64) {
        guard role == .client, phase != .closed else { return }
        let byID = Dictionary(current.map { ($0.networkID, $0) }, uniquingKeysWith: { a, _ in a })
        for (nid, old) in localNetworks where byID[nid] != old {
            localNetworks[nid] = nil
            retireNetwork(nid, reason: byID[nid] == nil ? "network gone" : "address changed", nowNs: nowNs)
        }
        for (nid, n) in byID where localNetworks[nid] == nil {
            localNetworks[nid] = n
            reconnectAttempts[nid] = 0
            log.info("network up", metadata: ["interface": "\(n.interfaceName)", "kind": "\(n.kind)",
                                              "address": "\(IPv4Endpoint.format(n.address))"])
            openConnection(n, nowNs: nowNs)
        }
        if localNetworks.isEmpty { failEstablishWaitersIfHopeless() }
    }

    private func retireNetwork(_ nid: UInt32, reason: String, nowNs: UInt64) {
        reconnectPending.remove(nid)
        // Every connection on it, also those still connecting or waiting for the server's HELLO.
        for c in conns.all where c.network.networkID == nid {
            log.info("network retired", metadata: ["interface": "\(c.network.interfaceName)", "reason": "\(reason)"])
            connectionFailed(c, reason: reason, nowNs: nowNs)
        }
        // Tell the server at once, over whatever is left, so it resends what that network carried.
        for c in conns.byNetwork.values where c.state == .established {
            c.control.append(.downInterface(networkID: nid))
        }
        loop.markDirty(self)
    }

    private func openConnection(_ n: LocalNetwork, nowNs: UInt64) {
        guard let server, phase != .closed else { return }
        let fd: Int32
        do {
            fd = try Sockets.tcpSocket()
        } catch {
            lastConnectError = "\(n.interfaceName): \(error)"
            scheduleReconnect(n.networkID, nowNs: nowNs)
            return
        }
        Sockets.configureConnection(fd, notSentLowWatermarkBytes: options.notSentLowWatermarkBytes)
        do {
            // Bind first so source-based policy routing sends it over this interface; and to the
            // device itself where allowed, for hosts without policy routing.
            if options.bindToDevice && !Sockets.bindToDevice(fd, n.interfaceName) {
                log.debug("SO_BINDTODEVICE refused; relying on source-address routing", metadata: ["interface": "\(n.interfaceName)"])
            }
            try Sockets.bind(fd, IPv4Endpoint(address: n.address, port: 0))
            let done = try Sockets.startConnect(fd, to: server)
            let c = Connection(id: conns.makeID(), fd: fd, state: .connecting, network: n,
                               outCapacity: Session.outCapacity, nowNs: nowNs)
            conns.netState(for: n)
            conns.add(c)
            loop.register(fd: fd, self)
            if done { connectCompleted(c, nowNs: nowNs) }
        } catch {
            Glibc.close(fd)
            lastConnectError = "\(n.interfaceName): \(error)"
            log.debug("connect failed", metadata: ["interface": "\(n.interfaceName)", "error": "\(error)"])
            scheduleReconnect(n.networkID, nowNs: nowNs)
        }
    }

    private func scheduleReconnect(_ nid: UInt32, nowNs: UInt64) {
        guard role == .client, phase == .open, !peerGoodbye, localNetworks[nid] != nil,
              !reconnectPending.contains(nid) else { return }
        let attempt = reconnectAttempts[nid, default: 0]
        reconnectAttempts[nid] = attempt + 1
        let delay = min(5.0, options.reconnectDelaySeconds * Double(1 << min(attempt, 5)))
        reconnectPending.insert(nid)
        loop.schedule(atNs: nowNs + UInt64(delay * 1e9)) { [weak self] in
            guard let self else { return }
            self.reconnectPending.remove(nid)
            guard self.phase == .open, let n = self.localNetworks[nid], self.conns.byNetwork[nid] == nil,
                  !self.conns.byFD.values.contains(where: { $0.network.networkID == nid && $0.state != .closed }) else { return }
            self.openConnection(n, nowNs: cshims_monotonic_ns())
        }
        failEstablishWaitersIfHopeless()
    }

    func connectCompleted(_ c: Connection, nowNs: UInt64) {
        if let err = Sockets.pendingError(c.fd) {
            lastConnectError = "\(c.network.interfaceName): connect: \(err)"
            connectionFailed(c, reason: "connect: \(err)", nowNs: nowNs)
            return
        }
        startAttach(c)
    }

    private func failEstablishWaitersIfHopeless() {
        // Keep waiting while any network might still connect; `connect` has its own timeout.
        if role == .client && localNetworks.isEmpty && mailbox.hasEstablishWaiters && options.staticNetworks != nil {
            failEstablishWaiters(.connectFailed("no usable network"))
        }
    }

    func failEstablishWaiters(_ e: IntNWError) { mailbox.establishFailed(e) }

    // MARK: - Server: attaching connections

    /// The listener hands over a connection whose HELLO named this session and whose attach it
    /// authenticated; `reply` is what still has to be sent (the listener already sent the HELLO
    /// and challenge of a join).
    func attach(fd: Int32, hello: Hello, leftover: [UInt8], reply: [Frame], nowNs: UInt64) {
        let net = LocalNetwork(networkID: hello.networkID, kind: hello.networkKind, interfaceName: hello.interfaceName, address: 0)
        conns.netState(for: net)
        let c = Connection(id: conns.makeID(), fd: fd, state: .awaitingHello, network: net,
                           outCapacity: Session.outCapacity, nowNs: nowNs)
        conns.add(c)
        loop.register(fd: fd, self)
        for f in reply { _ = c.out.append(f) }
        establish(c, nowNs: nowNs)
        if !leftover.isEmpty {
            c.decoder.feed(leftover)
            processFrames(c, nowNs: nowNs)
        }
    }

    // MARK: - Both sides

    /// A connection is usable: make it the network's connection and let waiting work proceed.
    func establish(_ c: Connection, nowNs: UInt64) {
        c.state = .established
        let nid = c.network.networkID
        if let old = conns.byNetwork[nid], old !== c {
            connectionFailed(old, reason: "replaced by a new connection on the same network", nowNs: nowNs)
        }
        conns.makeCurrent(c)
        reconnectAttempts[nid] = 0
        idleSinceNs = nil
        c.lastAckReceivedNs = nowNs
        var info = cshims_tcp_info()
        var len: UInt32 = 0
        if cshims_get_tcp_info(c.fd, &info, &len) == 0 { conns.nets[nid]?.estimator.addTCPInfo(info, connection: c.fd, nowNs: nowNs) }
        log.info("connection established", metadata: ["interface": "\(c.network.interfaceName)", "kind": "\(c.network.kind)"])
        if role == .client {
            // Informational for the server (and for anyone reading a capture).
            let info = InterfaceInfo(networkID: nid, kind: c.network.kind, ipv4Address: c.network.address, name: c.network.interfaceName)
            for other in conns.byNetwork.values where other !== c && other.state == .established {
                other.control.append(.newInterface(info))
            }
        }
        mailbox.establishSucceeded()
        runThunks()
        scheduleMaintenance(nowNs: nowNs)
        loop.markDirty(self)
    }

    /// A connection died (or was retired): close it and put what it carried back in the queues.
    func connectionFailed(_ c: Connection, reason: String, nowNs: UInt64) {
        guard c.state != .closed else { return }
        let wasEstablished = c.state == .established
        if !wasEstablished { lastConnectError = "\(c.network.interfaceName): \(reason)" }
        loop.unregister(fd: c.fd)
        c.abortSocket()
        background.connectionClosed(fd: c.fd)
        conns.remove(c)
        let nid = c.network.networkID
        // ACKs that were waiting for this connection go out on another one.
        if !c.pendingAcks.isEmpty, let other = conns.firstEstablished() {
            other.pendingAcks.append(contentsOf: c.pendingAcks)
        }
        c.pendingAcks.removeAll()
        if c.auth.privateKey != nil && authKey == nil {
            // The key share died with it: a parked connection carries a new one.
            c.auth.privateKey = nil
            startParkedAttaches()
        }
        let requeued = sender.connectionFailed(c.id)
        if wasEstablished || !requeued.isEmpty {
            log.info("connection closed", metadata: ["interface": "\(c.network.interfaceName)", "reason": "\(reason)",
                                                     "requeued": "\(requeued.count)"])
        }
        if role == .client {
            if localNetworks[nid] != nil && phase == .open && !peerGoodbye { scheduleReconnect(nid, nowNs: nowNs) }
        } else if conns.isEmpty {
            // Every carrier is gone, so the client puts back all it had not had acknowledged:
            // partial IROBs come again and need not hold memory meanwhile.
            _ = receiver.dropIncomplete()
            idleSinceNs = nowNs
            scheduleMaintenance(nowNs: nowNs)
        }
        syncReceiveMemory()
        loop.markDirty(self)
    }
}
