/// The connections of one session, indexed by socket, by id and by network, and the per-network
/// state (estimates, counters) that outlives individual connections. Also the session's view of
/// its networks as the scheduler sees them (`NetworkStatus`). No I/O here; confined to the loop lock.

/// Per-network bookkeeping (estimates, counters) that outlives individual connections.
final class NetState {
    let networkID: UInt32
    var kind: NetworkKind
    var name: String
    var estimator: NetworkEstimator
    var bytesSent: UInt64 = 0
    var bytesReceived: UInt64 = 0
    var lastForegroundNs: UInt64 = 0
    init(networkID: UInt32, kind: NetworkKind, name: String) {
        self.networkID = networkID
        self.kind = kind
        self.name = name
        self.estimator = NetworkEstimator(kind: kind)
    }
}

final class ConnectionSet {
    /// Every open connection (connecting, awaiting HELLO or established), by socket.
    private(set) var byFD: [Int32: Connection] = [:]
    private var byID: [ConnectionID: Connection] = [:]
    /// The current connection of each network.
    private(set) var byNetwork: [UInt32: Connection] = [:]
    /// Per-network state, kept after the network's connections are gone.
    private(set) var nets: [UInt32: NetState] = [:]
    private var nextID: UInt32 = 1

    // MARK: - Membership

    /// A fresh connection id.
    func makeID() -> ConnectionID {
        defer { nextID += 1 }
        return ConnectionID(nextID)
    }

    /// `c` is open (not yet the current connection of its network).
    func add(_ c: Connection) {
        byFD[c.fd] = c
        byID[c.id] = c
    }

    /// Makes `c` its network's current connection (the caller retired the previous one).
    func makeCurrent(_ c: Connection) { byNetwork[c.network.networkID] = c }

    /// `c` is gone: from every index.
    func remove(_ c: Connection) {
        byFD[c.fd] = nil
        byID[c.id] = nil
        let nid = c.network.networkID
        if byNetwork[nid] === c { byNetwork[nid] = nil }
    }

    func removeAll() {
        byFD.removeAll()
        byID.removeAll()
        byNetwork.removeAll()
    }

    func connection(fd: Int32) -> Connection? { byFD[fd] }
    func connection(id: ConnectionID) -> Connection? { byID[id] }

    /// No connection is open.
    var isEmpty: Bool { byFD.isEmpty }
    var count: Int { byFD.count }

    /// A snapshot of every open connection (safe to iterate while connections fail).
    var all: [Connection] { Array(byFD.values) }

    /// Whether some network has an established connection (troubled or not).
    var anyEstablished: Bool { byNetwork.values.contains { $0.state == .established } }

    /// An established connection other than `excluding` that is not troubled when `untroubled`.
    func firstEstablished(excluding: Connection? = nil, untroubled: Bool = false) -> Connection? {
        byNetwork.values.first { $0 !== excluding && $0.state == .established && (!untroubled || !$0.troubled) }
    }

    // MARK: - Network view

    /// The state of network `n`, created on first use; kind and name follow the latest report.
    @discardableResult
    func netState(for n: LocalNetwork) -> NetState {
        if let s = nets[n.networkID] {
            s.kind = n.kind
            s.name = n.interfaceName
            return s
        }
        let s = NetState(networkID: n.networkID, kind: n.kind, name: n.interfaceName)
        nets[n.networkID] = s
        return s
    }

    func status(of net: NetState) -> NetworkStatus {
        let c = byNetwork[net.networkID]
        return NetworkStatus(networkID: net.networkID, kind: net.kind, interfaceName: net.name,
                             usable: c?.state == .established, troubled: c?.troubled ?? false,
                             estimate: net.estimator.current, bytesSent: net.bytesSent,
                             bytesReceived: net.bytesReceived, lastForegroundActivityNs: net.lastForegroundNs)
    }

    var allStatuses: [NetworkStatus] { nets.values.map { status(of: $0) }.sorted { $0.networkID < $1.networkID } }

    /// Usable, untroubled networks: what the chooser may pick from.
    func usableStatuses() -> [NetworkStatus] {
        var out: [NetworkStatus] = []
        for (nid, c) in byNetwork where c.state == .established && !c.troubled {
            if let n = nets[nid] { out.append(status(of: n)) }
        }
        return out
    }

    func hasSuitableNetwork(_ r: NetworkRestriction) -> Bool {
        byNetwork.values.contains { $0.state == .established && !$0.troubled && r.allows($0.network.kind) }
    }
}
