/// Per-multisocket background admission: runs the configured `BackgroundPolicy` with what it
/// needs (shared last-foreground time, the multi-app barrier, the kernel's queue counts), keeps
/// background bytes out of kernel buffers they could not leave before later foreground data
/// (socket-buffer discipline), counts and logs every hold, and publishes this multisocket's
/// foreground state for the others. Confined to the session's loop lock.
#if canImport(Glibc)
import Glibc
#endif
import CShims
import Logging

/// Counters of a multisocket's background decisions (`MultiSocket.backgroundStats`).
public struct BackgroundSchedulingStats: Sendable, Equatable, Codable {
    /// The policy's name.
    public var policy: String
    /// Times background data could have gone on some connection and a decision was taken.
    public var decisions: UInt64 = 0
    /// Decisions that let background data go.
    public var grants: UInt64 = 0
    /// Sum of the byte limits granted (the pump may use less).
    public var grantedBytes: UInt64 = 0
    /// Decisions that held background back, by reason.
    public var holds: [BackgroundHoldReason: UInt64] = [:]
    /// Dead processes whose foreground contributions this multisocket reclaimed.
    public var reclaimedProcesses: UInt64 = 0
    /// Why the shared segment is not used (nil: used, or not asked for).
    public var sharedSegmentError: String?
    /// The RTT (ms) and bandwidth (bytes/s) the policy was given at its latest decision.
    public var lastRTTMilliseconds: Double = 0
    public var lastBandwidthBytesPerSecond: Double = 0
    /// The largest bandwidth (bytes/s) any decision was given.
    public var maxBandwidthBytesPerSecond: Double = 0
    /// Path probes (`PathRTTProbe`): PINGs sent after a drain, drains given up (the interface did
    /// not empty in time), PONGs that answered, and the latest path RTT measured (ms; 0: none).
    public var pathProbePings: UInt64 = 0
    public var pathProbeTimeouts: UInt64 = 0
    public var pathRTTSamples: UInt64 = 0
    public var pathRTTMilliseconds: Double = 0

    public init(policy: String) { self.policy = policy }

    public var heldTotal: UInt64 { holds.values.reduce(0, +) }
    public func held(_ r: BackgroundHoldReason) -> UInt64 { holds[r, default: 0] }
}

final class BackgroundScheduler {
    /// How soon to look again while another multisocket's foreground data is outstanding, ms.
    /// Other processes cannot wake us, so this is a poll; 10 ms is small next to cellular RTTs.
    static let barrierRecheckMilliseconds = 10.0
    /// How soon to look again while the kernel cannot take a chunk whole, ms.
    static let bufferRecheckMilliseconds = 10.0
    /// Header bytes the frames around a chunk take at most (BEGIN_IROB, DATA, END_IROB).
    static let frameOverheadBytes = 512
    /// Smallest grant worth sending when the kernel has little room, bytes.
    static let minimumUsefulGrantBytes = 1024
    /// SO_MEMINFO (asm-generic/socket.h) and the indices of sk_sndbuf and sk_wmem_queued in it.
    static let soMeminfo: Int32 = 55
    static let meminfoSndbuf = 3
    static let meminfoWmemQueued = 5

    let policy: any BackgroundPolicy
    private let explained: (any ExplainedBackgroundPolicy)?
    /// Shared foreground state; nil on the server side, where a session's interfaces are the
    /// client's and sessions of different clients share no link.
    private let registry: ForegroundRegistry?
    /// Where the interface-wide background budget and delivery counters are shared: the client's
    /// registry; on the server side this process's own, keyed by the client's address on the
    /// interface (`budgetKey`), so that the sessions of one client sharing a client interface
    /// (one per client multisocket) share one budget on the downlink.
    private let budget: ForegroundRegistry?
    private let role: Role
    private let notSentLowWatermarkBytes: Int
    private var log: Logger
    private(set) var stats: BackgroundSchedulingStats

    /// Foreground IROBs enqueued and not yet acknowledged → interfaces they count on.
    private var outstanding: [UInt64: [String]] = [:]
    /// Per interface: how many entries of `outstanding` count on it.
    private var perInterface: [String: Int] = [:]
    /// Which foreground IROBs are not yet entirely sent, and the interfaces this multisocket has
    /// published as having such foreground data (`ForegroundRegistry.setForegroundUnsent`).
    private var wire = ForegroundWireTracker()
    private var publishedUnsent: Set<String> = []
    /// Last foreground activity this multisocket saw per interface (when there is no registry).
    private var ownLastForeground: [String: UInt64] = [:]
    /// Per connection (fd): its interface, the bytes unacknowledged in its kernel send queue at
    /// the latest background decision, and when (the interface-wide background budget).
    private var backgroundByConnection: [Int32: (interface: String, bytes: Int, atNs: UInt64)] = [:]
    /// The link estimate per interface (delivery rate), and what feeds it: each connection's latest
    /// TCP_INFO bytes_acked and this multisocket's cumulative acknowledged bytes per interface.
    private var trackers: [String: LinkRateTracker] = [:]
    /// The policy's fall margin for every tracker (`LinkEvidenceReporting.estimateFallMargin`).
    private let fallMargin: Double
    private var ackedByConnection: [Int32: UInt64] = [:]
    private var ownDelivered: [String: UInt64] = [:]
    /// The path probe per interface (shared-state key), for policies that ask for it, and the
    /// connection a PING is wanted on now (`takePathProbe`).
    private var pathProbes: [String: PathRTTProbe] = [:]
    private var pathProbeWanted: Int32?
    /// Per connection: what of its smoothed RTT the latest path sample showed to be history.
    private var rttHistory: [Int32: SmoothedRTTHistory] = [:]
    /// The trace's capacity when an experiment gives it (`INTNW_BG_ORACLE`).
    private let oracle: OracleSchedule?
    private let side: String
    private var lastRecordNs: [String: UInt64] = [:]

    init(options: MultiSocketOptions, role: Role, log: Logger) {
        var p = options.backgroundPolicy
        if let s = p as? any StatefulBackgroundPolicy { p = s.makeInstance() }
        policy = p
        explained = p as? any ExplainedBackgroundPolicy
        fallMargin = (p as? any LinkEvidenceReporting)?.estimateFallMargin ?? 0
        notSentLowWatermarkBytes = options.notSentLowWatermarkBytes
        self.log = log
        stats = BackgroundSchedulingStats(policy: explained?.name ?? String(describing: type(of: p)))
        if let problem = EnvironmentProblem.take() { log.error("\(BackgroundPolicyName.environmentVariable): \(problem)") }
        let (o, oracleProblem) = OracleSchedule.fromEnvironment()
        oracle = o
        if let oracleProblem { log.error("\(oracleProblem)") }
        side = role == .client ? "client" : "server"
        if role == .client {
            let r = ForegroundRegistry.registry(for: options.sharedSchedulingSegment,
                                                namespacePath: options.networkNamespacePath, logger: log)
            registry = r
            budget = r
            stats.sharedSegmentError = r.segmentError?.description
        } else {
            // Server: this process's own registry, keyed by client address and interface
            // (`key(_:fd:)`): the barrier and the budget between the sessions of one client.
            let r = ForegroundRegistry.registry(for: .processLocal, namespacePath: nil, logger: log)
            registry = r
            budget = r
        }
        self.role = role
    }

    // MARK: - Foreground bookkeeping

    private func count(_ id: UInt64, on interface: String) {
        var list = outstanding[id, default: []]
        guard !list.contains(interface) else { return }
        list.append(interface)
        outstanding[id] = list
        let before = perInterface[interface, default: 0]
        perInterface[interface] = before + 1
        if before == 0 { registry?.setForegroundOutstanding(true, interface: interface) }
    }

    private func release(_ id: UInt64) {
        guard let list = outstanding.removeValue(forKey: id) else { return }
        for interface in list {
            let after = perInterface[interface, default: 1] - 1
            perInterface[interface] = after > 0 ? after : nil
            if after <= 0 { registry?.setForegroundOutstanding(false, interface: interface) }
        }
    }

    /// Server side: the key of each client interface name, from the connections seen.
    private var serverKeys: [String: String] = [:]

    /// The name shared state knows `interface` by: the interface on the client; on the server the
    /// client's address on it and its name (`budgetKey`), from connection `fd` or, without one,
    /// from the last connection seen on that interface (nil: none seen yet).
    private func key(_ interface: String, fd: Int32?) -> String? {
        guard role == .server else { return interface }
        if let fd, fd >= 0 {
            let k = budgetKey(interface: interface, fd: fd)
            serverKeys[interface] = k
            return k
        }
        return serverKeys[interface]
    }

    /// A foreground IROB was enqueued; `interface` is where the chooser would put it now (nil:
    /// no usable network yet; it counts once it is sent somewhere).
    func foregroundEnqueued(_ id: IROBID, interface: String?) {
        // Unsent first, outstanding second: no reader may see it outstanding but sent.
        let k = interface.flatMap { key($0, fd: nil) }
        wire.enqueued(id.rawValue, interface: k)
        syncUnsent()
        if let k {
            count(id.rawValue, on: k)
        } else if outstanding[id.rawValue] == nil {
            outstanding[id.rawValue] = []
        }
    }

    /// A chunk of foreground IROB `id` was appended to connection `fd` (on `interface`);
    /// `isLast`: nothing of it is left in the sender. Called before `observe(.sent ...)`.
    func foregroundChunkQueued(_ id: IROBID, interface: String, fd: Int32, isLast: Bool) {
        guard let k = key(interface, fd: fd) else { return }
        wire.chunkQueued(id.rawValue, interface: k, fd: fd, isLast: isLast)
        syncUnsent()
    }

    /// Looks whether foreground data handed to connections has left them: `unsent(fd)` is what
    /// connection `fd` still has to send (user-space buffer plus SIOCOUTQNSD; nil: gone). Returns
    /// whether to look again soon (some foreground data still waits in a kernel queue, and nothing
    /// wakes the session when that drains).
    func checkForegroundOnWire(unsent: (Int32) -> Int?) -> Bool {
        guard wire.hasWritten else { return false }
        let waiting = wire.probe(unsent: unsent)
        syncUnsent()
        return waiting
    }

    /// Publishes the interfaces whose foreground data is not yet entirely sent, as changed.
    private func syncUnsent() {
        let now = wire.pendingInterfaces
        guard now != publishedUnsent else { return }
        for i in now where !publishedUnsent.contains(i) { registry?.setForegroundUnsent(true, interface: i) }
        for i in publishedUnsent where !now.contains(i) { registry?.setForegroundUnsent(false, interface: i) }
        publishedUnsent = now
    }

    /// Foreground activity reported by the session; `interface` names the event's network, `fd`
    /// the connection it happened on (the server side needs it to know the client's address).
    func observe(_ event: ForegroundEvent, interface: String?, fd: Int32? = nil) {
        switch event {
        case .sent(let id, _, _, let nowNs):
            if let interface, let k = key(interface, fd: fd) {
                count(id.rawValue, on: k)
                noteActivity(k, nowNs)
            }
        case .received(_, _, let nowNs):
            if let interface, let k = key(interface, fd: fd) { noteActivity(k, nowNs) }
        case .acknowledged(let id, _):
            release(id.rawValue)
            wire.acknowledged(id.rawValue)
            syncUnsent()
        }
        policy.observe(event)
    }

    private func noteActivity(_ interface: String, _ nowNs: UInt64) {
        if ownLastForeground[interface, default: 0] < nowNs { ownLastForeground[interface] = nowNs }
        registry?.noteForeground(interface: interface, nowNs: nowNs)
    }

    /// The multisocket is gone: whatever it still counted on stops counting.
    func close() {
        budget?.forgetBackground(owner: ObjectIdentifier(self))
        backgroundByConnection.removeAll()
        for interface in perInterface.keys { registry?.setForegroundOutstanding(false, interface: interface) }
        perInterface.removeAll()
        outstanding.removeAll()
        wire.removeAll()
        syncUnsent()
    }

    /// Connection `fd` was aborted (its kernel queues went with it): its share of the
    /// interface-wide budget, its acknowledged-bytes counter and its smoothed-RTT history go
    /// too, and a PING wanted on it is not wanted any more (the path probe's timeout covers a
    /// PING that was never sent). Without this they stayed until the descriptor was reused.
    func connectionClosed(fd: Int32) {
        backgroundByConnection[fd] = nil
        ackedByConnection[fd] = nil
        rttHistory[fd] = nil
        if pathProbeWanted == fd { pathProbeWanted = nil }
    }

    /// How many connections this multisocket keeps per-connection state for (tests).
    var connectionStateCount: Int {
        Set(backgroundByConnection.keys).union(ackedByConnection.keys).union(rttHistory.keys).count
    }

    /// Foreground IROBs this multisocket counts as outstanding on `interface` (tests).
    func outstandingForeground(on interface: String) -> Int { perInterface[interface, default: 0] }
    /// Whether this multisocket publishes foreground data on `interface` as not yet entirely sent (tests).
    func foregroundUnsent(on interface: String) -> Bool { publishedUnsent.contains(interface) }

    // MARK: - Decisions

    /// How many bytes the fill after the latest grant sent (policies that pace by it).
    func backgroundUsed(_ bytes: Int) {
        (policy as? any BackgroundUsageObserving)?.backgroundUsed(bytes)
    }

    /// Decides how much background data may go on the connection `fd` of `network` now.
    /// `userQueuedBytes` is what already waits in the connection's user-space buffer.
    func decide(network: NetworkStatus, otherUsableNetworks: Int, fd: Int32, userQueuedBytes: Int,
                nowNs: UInt64) -> BackgroundDecision {
        stats.decisions += 1
        let interface = network.interfaceName
        // Shared state's name for it (the interface itself on the client).
        let sharedKey = key(interface, fd: fd) ?? interface
        let unsent = max(0, Int(cshims_siocoutqnsd(fd)))
        let unacked = max(0, Int(cshims_siocoutq(fd)))
        var info = cshims_tcp_info()
        var len: UInt32 = 0
        let haveInfo = cshims_get_tcp_info(fd, &info, &len) == 0
        var lastFG = max(network.lastForegroundActivityNs, ownLastForeground[sharedKey, default: 0])
        var elsewhere = 0
        var elsewhereUnsent = 0
        if let registry {
            let v = registry.view(interface: sharedKey, selfOutstanding: perInterface[sharedKey, default: 0] > 0,
                                  selfUnsent: publishedUnsent.contains(sharedKey))
            lastFG = max(lastFG, v.lastForegroundNs)
            elsewhere = v.otherMultisockets + v.otherProcesses
            elsewhereUnsent = v.otherMultisocketsUnsent + v.otherProcessesUnsent
            if !v.reclaimedPIDs.isEmpty {
                stats.reclaimedProcesses += UInt64(v.reclaimedPIDs.count)
                log.notice("reclaimed the foreground state of exited processes",
                           metadata: ["interface": "\(interface)", "pids": "\(v.reclaimedPIDs)"])
            }
        }
        // The interface-wide background budget: what this connection has in the kernel now, what
        // this multisocket's other connections there had at their latest decisions, and what other
        // multisockets and processes report.
        backgroundByConnection[fd] = (interface, unacked, nowNs)
        let freshNs = SharedLayout.backgroundFreshMilliseconds * 1_000_000
        var ownOnInterface = 0
        var bgElsewhere = 0
        for (cfd, e) in backgroundByConnection where e.interface == interface {
            if nowNs &- e.atNs > freshNs { backgroundByConnection[cfd] = nil; continue }
            ownOnInterface += e.bytes
            if cfd != fd { bgElsewhere += e.bytes }
        }
        if let budget {
            budget.reportBackground(owner: ObjectIdentifier(self), interface: sharedKey, bytes: ownOnInterface, nowNs: nowNs)
            bgElsewhere += budget.backgroundElsewhere(owner: ObjectIdentifier(self), interface: sharedKey, nowNs: nowNs)
        }
        if haveInfo { trackLink(interface: interface, key: sharedKey, fd: fd, info: info, nowNs: nowNs) }
        // Drained: no background of anyone's in flight on the interface, and no foreground either
        // (this multisocket's or another's, until acknowledged): a 16 KB FG reply queued ahead of
        // the PING on the 3G downlink read as 85-105 ms of path (bgscale, 8 BG sessions: samples of
        // 285-305 ms on the 200 ms path, and the base, the window and FG's wait grew with them).
        let foregroundOnInterface = elsewhere + perInterface[sharedKey, default: 0]
        let drained = unacked <= PathRTTProbe.drainedBytes && userQueuedBytes <= PathRTTProbe.drainedBytes
            && bgElsewhere <= PathRTTProbe.drainedBytes && foregroundOnInterface == 0
        // Nobody else decides about BG here: nobody else drains in this slot, and BG may follow
        // the PING at once (`PathRTTProbe.aloneGraceNs`). Asked only when drained: the grace
        // matters only at a PING, and a PING needs the interface drained.
        let drainsAlone = drained
            && (budget?.backgroundWritersElsewhere(owner: ObjectIdentifier(self), interface: sharedKey, nowNs: nowNs) ?? 0) == 0
        let grace = drainsAlone ? PathRTTProbe.aloneGraceNs : PathRTTProbe.graceNs
        let probeAction = pathProbe(key: sharedKey, fd: fd, info: haveInfo ? info : nil, drained: drained, graceNs: grace, nowNs: nowNs)
        let view = schedulingView(network, info: haveInfo ? info : nil, nowNs: nowNs)
        let probe = pathProbes[sharedKey]
        let pathRTTMicroseconds = probe?.pathRTTMicroseconds(nowNs: nowNs) ?? 0
        record(view, pathRTTMicroseconds: pathRTTMicroseconds, nowNs: nowNs)
        var smoothedRTT: UInt32 = haveInfo ? info.tcpi_rtt : 0
        if haveInfo, let probe, pathRTTMicroseconds > 0 {
            let segmentMs = DelayTargetBackgroundPolicy.segmentSerializationMilliseconds(
                bandwidthBytesPerSecond: view.network.estimate.bandwidthBytesPerSecond)
            var history = rttHistory[fd, default: SmoothedRTTHistory()]
            history.update(pathSampleAtNs: probe.sampleAtNs, pathMicroseconds: pathRTTMicroseconds, nowNs: nowNs,
                           smoothedMicroseconds: info.tcpi_rtt, segmentMicroseconds: segmentMs * 1000,
                           segmentsIn: info.tcpi_segs_in)
            rttHistory[fd] = history
            smoothedRTT = history.adjusted(smoothedMicroseconds: info.tcpi_rtt, segmentsIn: info.tcpi_segs_in)
        }
        var ctx = BackgroundContext(network: view.network, nowNs: nowNs, lastForegroundActivityNs: lastFG,
                                    otherUsableNetworks: otherUsableNetworks, kernelUnsentBytes: unsent,
                                    kernelUnackedBytes: unacked, foregroundElsewhere: elsewhere,
                                    kernelSmoothedRTTMicroseconds: smoothedRTT,
                                    kernelMinRTTMicroseconds: haveInfo ? info.tcpi_min_rtt : 0,
                                    backgroundElsewhereBytes: bgElsewhere)
        ctx.foregroundElsewhereUnsent = elsewhereUnsent
        ctx.pathRTTMicroseconds = pathRTTMicroseconds
        ctx.pathRTTVariationMicroseconds = probe?.variationMicroseconds(nowNs: nowNs) ?? 0
        ctx.kernelCongestionWindowLimited = haveInfo && info.tcpi_snd_cwnd > 0 && info.tcpi_unacked >= info.tcpi_snd_cwnd
        if haveInfo, let probe {
            // At the estimate the refill takes the window's time: one base RTT, one segment and
            // the target (10 ms). Two RTTs and 100 ms bound it also on a short path, and end it
            // where the estimate is far below the link.
            let within = UInt64(max(info.tcpi_rtt, info.tcpi_min_rtt)) * 1000 * 2 + 100_000_000
            ctx.refillSinceNs = probe.refillSinceNs(nowNs: nowNs, withinNs: within)
        }
        stats.lastRTTMilliseconds = ctx.network.estimate.rttMilliseconds
        stats.lastBandwidthBytesPerSecond = ctx.network.estimate.bandwidthBytesPerSecond
        stats.maxBandwidthBytesPerSecond = max(stats.maxBandwidthBytesPerSecond, stats.lastBandwidthBytesPerSecond)
        var verdict: BackgroundVerdict
        // The PING goes alone: BG granted in the same write would share its segment, and the
        // PING's bytes would arrive only with the whole segment (one segment's transmission, 22.6
        // ms on a 64 KB/s link, read as path).
        if probeAction != .none {
            let recheckNs = probeAction == .ping ? min(grace, nanoseconds(milliseconds: Self.barrierRecheckMilliseconds))
                : nanoseconds(milliseconds: Self.barrierRecheckMilliseconds)
            verdict = .hold(.pathProbe, untilNs: nowNs + recheckNs)
        } else if elsewhere > 0 && (explained?.honorsForegroundBarrier ?? true) {
            verdict = .hold(.foregroundElsewhere, untilNs: nowNs + nanoseconds(milliseconds: Self.barrierRecheckMilliseconds))
        } else if let explained {
            verdict = explained.verdict(ctx)
        } else {
            let d = policy.decide(ctx)
            verdict = BackgroundVerdict(decision: d, reason: { if case .wait = d { return .policy } else { return nil } }())
        }
        if let reporter = policy as? any LinkEvidenceReporting {
            trackers[interface]?.note(reporter.linkEvidence(ctx, verdict: verdict))
        }
        var room = Int.max
        if case .send(let n) = verdict.decision {
            room = kernelRoom(fd: fd, unsent: unsent, userQueuedBytes: userQueuedBytes)
            if room < min(n, Self.minimumUsefulGrantBytes) {
                verdict = .hold(.kernelBufferFull, untilNs: nowNs + nanoseconds(milliseconds: Self.bufferRecheckMilliseconds))
            } else {
                verdict.decision = .send(maxBytes: min(n, room))
            }
        }
        switch verdict.decision {
        case .send(let n):
            stats.grants += 1
            stats.grantedBytes += UInt64(n)
            // Count the grant at once, so other multisockets deciding before our bytes reach the
            // kernel see them (the next decision here replaces it with the kernel's count).
            if n < Int.max / 2, n > 0 {
                backgroundByConnection[fd]?.bytes += n
                budget?.reportBackground(owner: ObjectIdentifier(self), interface: sharedKey,
                                           bytes: ownOnInterface + n, nowNs: nowNs)
            }
        case .wait(let until):
            let reason = verdict.reason ?? .policy
            stats.holds[reason, default: 0] += 1
            log.debug("background held", metadata: [
                "reason": "\(reason.rawValue)", "policy": "\(stats.policy)", "interface": "\(interface)",
                "idle_ms": "\(lastFG == 0 ? -1 : Double(ctx.foregroundIdleNs) / 1e6)",
                "fg_elsewhere": "\(elsewhere)", "fg_unsent_elsewhere": "\(elsewhereUnsent)", "bg_elsewhere": "\(bgElsewhere)", "unsent": "\(unsent)", "unacked": "\(unacked)",
                "rtt_ms": "\(ctx.network.estimate.rttMilliseconds)", "bw_Bps": "\(Int(ctx.network.estimate.bandwidthBytesPerSecond))",
                "srtt_us": "\(ctx.kernelSmoothedRTTMicroseconds)", "kernel_srtt_us": "\(haveInfo ? info.tcpi_rtt : 0)", "min_rtt_us": "\(ctx.kernelMinRTTMicroseconds)",
                "kernel_room": "\(room == Int.max ? -1 : room)",
                "retry_in_ms": "\(until.map { Double($0 &- nowNs) / 1e6 } ?? -1)",
            ])
        }
        return verdict.decision
    }

    /// Runs the path probe of interface `key` for a policy that asks for one (`PathRTTProbing`)
    /// and notes the connection a PING is wanted on.
    private func pathProbe(key: String, fd: Int32, info: cshims_tcp_info?, drained: Bool, graceNs: UInt64,
                           nowNs: UInt64) -> PathRTTProbe.Action {
        guard let probing = explained as? any PathRTTProbing, probing.pathProbeRTTs > 0, let info,
              info.tcpi_min_rtt > 0, info.tcpi_min_rtt != UInt32.max else { return .none }
        let period = PathRTTProbe.periodNs(baseRTTNs: UInt64(info.tcpi_min_rtt) * 1000, rtts: probing.pathProbeRTTs)
        var probe = pathProbes[key, default: PathRTTProbe()]
        let timeoutsBefore = probe.timeouts
        let action = probe.check(nowNs: nowNs, periodNs: period, drained: drained, smoothedRTTNs: UInt64(info.tcpi_rtt) * 1000,
                                 graceNs: graceNs)
        stats.pathProbeTimeouts += UInt64(probe.timeouts - timeoutsBefore)
        pathProbes[key] = probe
        if action == .ping { pathProbeWanted = fd }
        return action
    }

    /// Whether the latest decision on connection `fd` wants a PING sent on it now (asked once).
    func takePathProbe(fd: Int32) -> Bool {
        guard pathProbeWanted == fd else { return false }
        pathProbeWanted = nil
        stats.pathProbePings += 1
        return true
    }

    /// The PONG of a path probe's PING on connection `fd` of `interface` came back `rttNs` after it left.
    func observePathRTT(interface: String, fd: Int32, rttNs: UInt64, nowNs: UInt64) {
        guard let k = key(interface, fd: fd), pathProbes[k] != nil else { return }
        pathProbes[k]?.sample(rttNs: rttNs, nowNs: nowNs)
        trackers[interface]?.pathSampled(rttNs: rttNs, nowNs: nowNs)
        stats.pathRTTSamples += 1
        stats.pathRTTMilliseconds = Double(rttNs) / 1e6
    }

    /// The budget's name for `interface`: the interface on the client; on the server the client's
    /// address on it and the client's interface name (sessions of different clients share no link).
    private func budgetKey(interface: String, fd: Int32) -> String {
        guard role == .server else { return interface }
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) }
        } == 0
        guard ok, addr.sin_family == sa_family_t(AF_INET) else { return "peer ? \(interface) fd \(fd)" }
        let ip = UInt32(bigEndian: addr.sin_addr.s_addr)
        return "peer \(ip >> 24).\(ip >> 16 & 255).\(ip >> 8 & 255).\(ip & 255) \(interface)"
    }

    /// Feeds the interface's delivery-rate estimate from one connection's TCP_INFO; logs each
    /// sample at debug level (`link sample`: its rate, the estimate after it, headroom, queueing
    /// and probes), which is how the estimate's errors on the real drive were traced.
    private func trackLink(interface: String, key: String, fd: Int32, info: cshims_tcp_info, nowNs: UInt64) {
        let acked = info.tcpi_bytes_acked
        if let prev = ackedByConnection[fd], acked >= prev { ownDelivered[interface, default: 0] &+= acked - prev }
        ackedByConnection[fd] = acked
        let mine = ownDelivered[interface, default: 0]
        let total = budget?.reportDelivered(owner: ObjectIdentifier(self), interface: key, cumulativeBytes: mine) ?? mine
        let minRTTNs = info.tcpi_min_rtt > 0 && info.tcpi_min_rtt != UInt32.max ? UInt64(info.tcpi_min_rtt) * 1000 : 0
        let sampled = trackers[interface, default: LinkRateTracker(fallMargin: fallMargin)].observe(nowNs: nowNs, deliveredBytes: total, minRTTNs: minRTTNs)
        if sampled, let t = trackers[interface], let s = t.lastSample {
            log.debug("link sample", metadata: [
                "interface": "\(interface)", "bytes": "\(s.bytes)", "window_ms": "\(s.ns / 1_000_000)",
                "rate_Bps": "\(Int(s.rate))", "estimate_Bps": "\(Int(t.estimateBytesPerSecond))",
                "estimate_is_probe": "\(t.estimateIsProbe)", "headroom_gain": "\(s.headroomGain)", "queueing": "\(s.queueing)", "queueing_share": "\(Double(Int(s.queueingShare * 100)) / 100)",
                "probes": "\(t.probes)", "probes_dropped": "\(t.probesDropped)", "superseded": "\(t.superseded)", "restored": "\(t.restored)",
            ])
        }
    }

    /// The network as policies see it, and where its estimate came from.
    /// - With an oracle schedule (experiments): the trace's capacity at this moment in this
    ///   side's sending direction, and its RTT.
    /// - An oracle estimate the application set: as given.
    /// - Otherwise the RTT is the connection's kernel minimum RTT (the link's, without the queueing
    ///   our own background data adds: the smoothed RTT of a connection carrying background swells
    ///   with that background's own queue, which would stretch anticipatory's idle wait further the
    ///   more background there is), and the bandwidth is the interface's delivery-rate estimate
    ///   (`LinkRateTracker`) once it has a sample, for policies that scale with it
    ///   (`scalesWithDeliveryRate`: delay-target); IntNW's general estimate otherwise.
    private func schedulingView(_ network: NetworkStatus, info: cshims_tcp_info?, nowNs: UInt64) -> (network: NetworkStatus, source: String) {
        var n = network
        if let oracle, let p = oracle.point(interface: network.interfaceName, nowNs: nowNs) {
            n.estimate = NetworkEstimate(rttMilliseconds: max(p.rttMilliseconds, 1),
                                         bandwidthBytesPerSecond: max(1, side == "client" ? p.upBytesPerSecond : p.downBytesPerSecond),
                                         source: .oracle)
            return (n, "oracle")
        }
        if network.estimate.source == .oracle { return (n, "oracle") }
        var source = network.estimate.source.rawValue
        if explained?.scalesWithDeliveryRate == true, let t = trackers[network.interfaceName], t.samples > 0 {
            n.estimate.bandwidthBytesPerSecond = t.estimateBytesPerSecond
            source = t.estimateIsProbe ? "probed" : "tracked"
        }
        if let info, info.tcpi_min_rtt > 0, info.tcpi_min_rtt != UInt32.max {
            n.estimate.rttMilliseconds = Double(info.tcpi_min_rtt) / 1000
        }
        return (n, source)
    }

    private func record(_ view: (network: NetworkStatus, source: String), pathRTTMicroseconds: UInt32, nowNs: UInt64) {
        guard let recorder = EstimateRecorder.shared else { return }
        let interface = view.network.interfaceName
        if let last = lastRecordNs[interface], nowNs &- last < EstimateRecorder.periodNs { return }
        lastRecordNs[interface] = nowNs
        recorder.record(nowNs: nowNs, side: side, interface: interface, bandwidthBytesPerSecond: view.network.estimate.bandwidthBytesPerSecond,
                        rttMilliseconds: view.network.estimate.rttMilliseconds,
                        pathRTTMilliseconds: pathRTTMicroseconds > 0 ? Double(pathRTTMicroseconds) / 1000 : nil, source: view.source)
    }

    /// Payload bytes the kernel will surely take at once: below TCP_NOTSENT_LOWAT (the kernel stops
    /// taking data at the low-water mark of unsent bytes) and within the send buffer's free memory
    /// (counted at twice the payload: each segment's buffer carries overhead), less what already
    /// waits in user space ahead of it. Bytes it refused would stay in user space, in front of
    /// any foreground data enqueued later.
    private func kernelRoom(fd: Int32, unsent: Int, userQueuedBytes: Int) -> Int {
        var room = notSentLowWatermarkBytes - unsent
        var mem = (UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0), UInt32(0),
                   UInt32(0), UInt32(0), UInt32(0))
        var len = socklen_t(MemoryLayout.size(ofValue: mem))
        let ok = withUnsafeMutableBytes(of: &mem) { getsockopt(fd, SOL_SOCKET, Self.soMeminfo, $0.baseAddress, &len) } == 0
        if ok && Int(len) >= (Self.meminfoWmemQueued + 1) * 4 {
            let (sndbuf, queued) = withUnsafeBytes(of: &mem) { b in
                (Int(b.load(fromByteOffset: Self.meminfoSndbuf * 4, as: UInt32.self)),
                 Int(b.load(fromByteOffset: Self.meminfoWmemQueued * 4, as: UInt32.self)))
            }
            room = min(room, (sndbuf - queued) / 2)
        }
        return room - userQueuedBytes - Self.frameOverheadBytes
    }
}
