/// The seams the schedulers plug into: network choice, background admission, trouble detection.
/// This file holds the protocols and the default implementations; richer policies (exclusive,
/// permissive, anticipatory, trickle; TCP_INFO trouble detection) implement the same protocols.
import CShims

/// A snapshot of one usable network as the schedulers see it.
public struct NetworkStatus: Sendable, Equatable {
    /// This side's id for the network (the client's interface index; on the server, the id the
    /// client sent in HELLO).
    public var networkID: UInt32
    public var kind: NetworkKind
    /// Client interface name (e.g. "wlan0").
    public var interfaceName: String
    /// Whether a connection on it is established and can carry data now.
    public var usable: Bool
    /// Whether the trouble detector currently flags it.
    public var troubled: Bool
    public var estimate: NetworkEstimate
    /// Payload bytes of DATA frames this side sent / received on it.
    public var bytesSent: UInt64
    public var bytesReceived: UInt64
    /// Monotonic ns of the last foreground IROB sent or received on it (0: never).
    public var lastForegroundActivityNs: UInt64
}

/// Chooses the network for a message from the usable ones.
public protocol NetworkChooser: Sendable {
    /// Returns the chosen network id, or nil when none of `networks` may carry `labels`.
    /// `networks` holds only usable, untroubled networks. Called on the I/O thread: keep it cheap.
    func choose(for labels: Labels, among networks: [NetworkStatus]) -> UInt32?
}

/// The default choice (docs/scheduling.md): WiFi, when usable and allowed, dominates; otherwise
/// latency-bound messages (foreground/small) take the lowest-RTT network and bandwidth-bound
/// ones (background/large) the highest-bandwidth network.
public struct DefaultNetworkChooser: NetworkChooser {
    public init() {}
    public func choose(for labels: Labels, among networks: [NetworkStatus]) -> UInt32? {
        let r = labels.restriction
        let allowed = networks.filter { r.allows($0.kind) }
        if allowed.isEmpty { return nil }
        if let wifi = allowed.filter({ $0.kind == .wifi }).min(by: { $0.estimate.rttMilliseconds < $1.estimate.rttMilliseconds }) {
            return wifi.networkID
        }
        if labels.prefersLowLatency {
            return allowed.min { ($0.estimate.rttMilliseconds, $0.networkID) < ($1.estimate.rttMilliseconds, $1.networkID) }?.networkID
        }
        return allowed.max {
            ($0.estimate.bandwidthBytesPerSecond, UInt32.max - $0.networkID) < ($1.estimate.bandwidthBytesPerSecond, UInt32.max - $1.networkID)
        }?.networkID
    }
}

/// What a background policy sees when background data could go on a connection.
public struct BackgroundContext: Sendable {
    public var network: NetworkStatus
    public var nowNs: UInt64
    /// Monotonic ns of the last foreground activity on this interface (0: never), by this
    /// multisocket or, through the shared segment, any other multisocket or process.
    public var lastForegroundActivityNs: UInt64
    /// Whether any other usable network could carry this background message.
    public var otherUsableNetworks: Int
    /// Bytes in the kernel send queue not yet sent (SIOCOUTQNSD) and not yet ACKed (SIOCOUTQ).
    public var kernelUnsentBytes: Int
    public var kernelUnackedBytes: Int
    /// Other multisockets (of this process or of other processes, through the shared segment)
    /// with foreground data enqueued or not yet acknowledged on this interface.
    public var foregroundElsewhere: Int
    /// The kernel's smoothed and minimum RTT of this connection (TCP_INFO), microseconds; 0 = unknown.
    public var kernelSmoothedRTTMicroseconds: UInt32
    public var kernelMinRTTMicroseconds: UInt32
    /// Background bytes unacknowledged in kernel send queues on this interface outside this
    /// connection: this multisocket's other connections, other multisockets and (through the shared
    /// segment) other processes. Policies with an interface-wide budget subtract it.
    public var backgroundElsewhereBytes: Int
    /// Of `foregroundElsewhere`, those whose foreground data on this interface is not yet entirely
    /// sent: still in user space or unsent in a kernel send queue (SIOCOUTQNSD > 0). Once it is 0,
    /// every byte of that foreground data has left the host's socket send queues, ahead of any
    /// background data sent now (`delay-target:barrier=wire`).
    public var foregroundElsewhereUnsent: Int = 0
    /// The path's RTT now without background's queue, microseconds, from the latest drain's PING
    /// on this interface (`PathRTTProbe`; policies that ask for drains); 0 = unknown.
    public var pathRTTMicroseconds: UInt32 = 0
    /// How far the path's RTT moved between the latest drains, microseconds (the lower median change
    /// between consecutive samples, `PathRTTProbe.variationMicroseconds`); 0 = unknown.
    public var pathRTTVariationMicroseconds: UInt32 = 0
    /// When background on this interface resumed after the latest path-probe drain, monotonic ns,
    /// while that is recent (two round trips and 100 ms); 0 = not refilling.
    public var refillSinceNs: UInt64 = 0
    /// Whether the connection's congestion window is what limits it now: as many segments in
    /// flight as the window allows (TCP_INFO `tcpi_unacked` >= `tcpi_snd_cwnd`). Unsent bytes
    /// then wait for acknowledgements, not for the kernel's pacing or its small-queues limit.
    public var kernelCongestionWindowLimited = false

    /// A context, for policy tests and for callers that evaluate policies themselves.
    public init(network: NetworkStatus, nowNs: UInt64, lastForegroundActivityNs: UInt64, otherUsableNetworks: Int = 0,
                kernelUnsentBytes: Int = 0, kernelUnackedBytes: Int = 0, foregroundElsewhere: Int = 0,
                kernelSmoothedRTTMicroseconds: UInt32 = 0, kernelMinRTTMicroseconds: UInt32 = 0,
                backgroundElsewhereBytes: Int = 0) {
        self.network = network
        self.nowNs = nowNs
        self.lastForegroundActivityNs = lastForegroundActivityNs
        self.otherUsableNetworks = otherUsableNetworks
        self.kernelUnsentBytes = kernelUnsentBytes
        self.kernelUnackedBytes = kernelUnackedBytes
        self.foregroundElsewhere = foregroundElsewhere
        self.kernelSmoothedRTTMicroseconds = kernelSmoothedRTTMicroseconds
        self.kernelMinRTTMicroseconds = kernelMinRTTMicroseconds
        self.backgroundElsewhereBytes = backgroundElsewhereBytes
    }
}

/// Decision of a background policy.
public enum BackgroundDecision: Sendable, Equatable {
    /// Put at most this many background bytes on the connection now.
    case send(maxBytes: Int)
    /// Send nothing now; ask again at this monotonic time (ns), or on the next event if nil.
    case wait(untilNs: UInt64?)
}

/// Foreground activity the runtime reports to the background policy (e.g. so a cross-process
/// policy can publish it in shared memory: the last-FG timestamp and the FG-outstanding count).
public enum ForegroundEvent: Sendable, Equatable {
    /// Foreground bytes of IROB `id` were handed to the connection of `networkID`.
    case sent(id: IROBID, networkID: UInt32, bytes: Int, nowNs: UInt64)
    /// Foreground IROB `id` was acknowledged by the peer (its bytes left every socket buffer).
    case acknowledged(id: IROBID, nowNs: UInt64)
    /// A foreground IROB arrived from the peer on `networkID`.
    case received(id: IROBID, networkID: UInt32, nowNs: UInt64)
}

/// Decides when background data may use a network that foreground traffic also uses. The runtime
/// already guarantees that background data never enters a socket while foreground data is
/// waiting for the same interface (its scheduler always picks foreground first); a policy only
/// restricts further. Both methods run on the I/O thread: keep them cheap.
public protocol BackgroundPolicy: Sendable {
    func decide(_ context: BackgroundContext) -> BackgroundDecision
    /// Observes foreground activity (default: ignored).
    func observe(_ event: ForegroundEvent)
}

extension BackgroundPolicy {
    public func observe(_ event: ForegroundEvent) {}
}

/// Background goes whenever no foreground data waits for the interface (`INTNW_BG_POLICY=permissive`;
/// kept for comparisons: the default policy is delay-target, see `BackgroundPolicies.fallback`).
public struct PermissiveBackgroundPolicy: BackgroundPolicy {
    public init() {}
    public func decide(_ context: BackgroundContext) -> BackgroundDecision { .send(maxBytes: Int.max) }
}

/// What a trouble detector sees about one connection that has foreground data outstanding or that
/// this side found troubled: as soon as foreground data goes on it, then at the time the detector
/// asked for with `TroubleVerdict.nextCheckNs` (the maintenance period if nil). Connections with
/// only background data outstanding are not checked (see docs/trouble-detection.md).
public struct TroubleSample: Sendable {
    public var network: NetworkStatus
    public var nowNs: UInt64
    /// The kernel's full TCP_INFO for the connection.
    public var tcpInfo: cshims_tcp_info
    /// Foreground IROBs sent on it and not yet ACKed.
    public var unackedForegroundIROBs: Int
    /// Monotonic ns of the last IntNW ACK received on this connection (0: none yet).
    public var lastAckNs: UInt64
    /// Monotonic ns since which foreground data has been outstanding on it without a break (0: none
    /// outstanding): a stall cannot have started before this.
    public var foregroundOutstandingSinceNs: UInt64
    /// Monotonic ns when this side declared the network troubled (0: it is not troubled here).
    /// `network.troubled` is this side's own verdict, not the peer's.
    public var troubledSinceNs: UInt64

    public init(network: NetworkStatus, nowNs: UInt64, tcpInfo: cshims_tcp_info, unackedForegroundIROBs: Int,
                lastAckNs: UInt64, foregroundOutstandingSinceNs: UInt64 = 0, troubledSinceNs: UInt64 = 0) {
        self.network = network
        self.nowNs = nowNs
        self.tcpInfo = tcpInfo
        self.unackedForegroundIROBs = unackedForegroundIROBs
        self.lastAckNs = lastAckNs
        self.foregroundOutstandingSinceNs = foregroundOutstandingSinceNs
        self.troubledSinceNs = troubledSinceNs
    }
}

public struct TroubleVerdict: Sendable, Equatable {
    public var troubled: Bool
    /// When to sample again (monotonic ns); nil = at the next maintenance tick.
    public var nextCheckNs: UInt64?
    public init(troubled: Bool, nextCheckNs: UInt64? = nil) {
        self.troubled = troubled
        self.nextCheckNs = nextCheckNs
    }
}

/// Flags networks that stopped making progress (see docs/trouble-detection.md). A troubled
/// network is not chosen for new data, and what it carried unACKed is resent elsewhere.
public protocol TroubleDetector: Sendable {
    func evaluate(_ sample: TroubleSample) -> TroubleVerdict
}

/// Never flags a network: failover only on carrier loss or connection errors (`INTNW_TROUBLE=off`;
/// the default is TCP_INFO trouble detection, see `TroubleDetection.fromEnvironment`).
public struct NoTroubleDetector: TroubleDetector {
    public init() {}
    public func evaluate(_ sample: TroubleSample) -> TroubleVerdict { TroubleVerdict(troubled: false) }
}
