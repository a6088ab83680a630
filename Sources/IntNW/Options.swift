/// Configuration of multisockets and listeners, and how local interfaces map to network kinds.
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A local network (interface with an IPv4 address) a client multisocket can bind to.
public struct LocalNetwork: Sendable, Hashable {
    /// Stable id for the network: the interface index.
    public var networkID: UInt32
    public var kind: NetworkKind
    public var interfaceName: String
    /// IPv4 address, host order; connections are bound to it before `connect`.
    public var address: UInt32
    public init(networkID: UInt32, kind: NetworkKind, interfaceName: String, address: UInt32) {
        self.networkID = networkID
        self.kind = kind
        self.interfaceName = interfaceName
        self.address = address
    }
}

/// Maps interface names to network kinds: explicit configuration first, then name heuristics.
public struct NetworkClassifier: Sendable, Equatable {
    /// Interface name → kind, e.g. from `INTNW_NETWORKS=wifi:wifi0,cellular:cell0`.
    public var explicit: [String: NetworkKind]
    public init(explicit: [String: NetworkKind] = [:]) { self.explicit = explicit }

    /// Parses `kind:ifname[,kind:ifname...]` (kinds: wifi, cellular, wired, other).
    public static func parse(_ spec: String) throws -> [String: NetworkKind] {
        var out: [String: NetworkKind] = [:]
        for item in spec.split(separator: ",") where !item.trimmingSpaces.isEmpty {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[1].trimmingSpaces.isEmpty else {
                throw IntNWError.invalidArgument("network spec '\(item)' is not kind:interface")
            }
            let kind: NetworkKind
            switch parts[0].trimmingSpaces.lowercased() {
            case "wifi", "wlan": kind = .wifi
            case "cellular", "cell", "wwan", "3g", "lte": kind = .cellular
            case "wired", "ethernet": kind = .wired
            case "other": kind = .other
            default: throw IntNWError.invalidArgument("unknown network kind '\(parts[0])' in '\(item)' (wifi, cellular, wired, other)")
            }
            out[parts[1].trimmingSpaces] = kind
        }
        return out
    }

    /// Reads `INTNW_NETWORKS` from the environment; an unparsable value is ignored (logged by caller).
    public static func fromEnvironment() -> NetworkClassifier {
        guard let raw = getenv("INTNW_NETWORKS"), let map = try? parse(String(cString: raw)) else {
            return NetworkClassifier()
        }
        return NetworkClassifier(explicit: map)
    }

    /// The kind of interface `name`, or nil when it is not used at all (loopback, and host-local
    /// virtual bridges and container links, which lead nowhere a server could be).
    public func kind(of name: String) -> NetworkKind? {
        if let k = explicit[name] { return k }
        if name == "lo" { return nil }
        for p in ["docker", "virbr", "br-", "veth", "lxc", "vnet", "cni", "flannel"] where name.hasPrefix(p) { return nil }
        for p in ["wl", "wifi", "ath", "ra"] where name.hasPrefix(p) { return .wifi }
        for p in ["wwan", "rmnet", "cell", "ppp", "usb", "ccmni"] where name.hasPrefix(p) { return .cellular }
        for p in ["eth", "en", "em"] where name.hasPrefix(p) { return .wired }
        return .other
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

/// Options of a client multisocket (and of the sessions a listener accepts).
public struct MultiSocketOptions: Sendable {
    public var classifier: NetworkClassifier
    /// Use only these interfaces (nil: every non-loopback interface with an IPv4 address).
    public var interfaces: [String]?
    /// Fixed local networks instead of watching rtnetlink (e.g. for loopback tests).
    public var staticNetworks: [LocalNetwork]?
    /// Network namespace file (e.g. /var/run/netns/NAME) the I/O thread joins before opening sockets.
    public var networkNamespacePath: String?
    /// Also bind each connection to its interface (SO_BINDTODEVICE, best effort) besides its
    /// address, so it leaves on that link on hosts without source-based policy routing.
    public var bindToDevice: Bool
    /// How long `connect` waits for the first connection, in seconds.
    public var connectTimeoutSeconds: Double
    /// First delay before reconnecting on a network whose connection failed, in seconds (doubles up to 5 s).
    public var reconnectDelaySeconds: Double
    public var sendLimits: SendLimits
    public var receiveLimits: ReceiveLimits
    /// TCP_NOTSENT_LOWAT in bytes: bounds data queued in the kernel ahead of later foreground data.
    public var notSentLowWatermarkBytes: Int
    /// Client: a connection this side has sent nothing on for this many seconds gets a PING, so an
    /// idle session stays within the server's `ListenerOptions.connectionIdleTimeoutSeconds`
    /// (default 20 s; 0 turns keepalives off). Checked every `maintenanceIntervalMilliseconds`.
    public var keepaliveIntervalSeconds: Double = 20
    /// Period of TCP_INFO sampling and housekeeping, in milliseconds.
    public var maintenanceIntervalMilliseconds: Int
    public var chooser: any NetworkChooser
    /// When background data may use a network (default: the policy `INTNW_BG_POLICY` names, else
    /// delay-target; see `BackgroundPolicies.fallback` and docs/scheduling.md).
    public var backgroundPolicy: any BackgroundPolicy
    /// Where client multisockets share foreground state with other processes (multi-app
    /// enforcement); default: the per-user, per-network-namespace segment.
    public var sharedSchedulingSegment: SharedSchedulingSegment = .perNamespace
    /// Flags networks that stop making progress. Default: the detector of docs/trouble-detection.md, or
    /// none when `INTNW_TROUBLE=off` (`TroubleDetection.fromEnvironment`); `NoTroubleDetector()`
    /// turns detection off.
    public var troubleDetector: any TroubleDetector
    public var logger: Logger

    public init(classifier: NetworkClassifier = .fromEnvironment(),
                interfaces: [String]? = nil,
                staticNetworks: [LocalNetwork]? = nil,
                networkNamespacePath: String? = nil,
                bindToDevice: Bool = true,
                connectTimeoutSeconds: Double = 10,
                reconnectDelaySeconds: Double = 0.25,
                sendLimits: SendLimits = SendLimits(),
                receiveLimits: ReceiveLimits = ReceiveLimits(),
                notSentLowWatermarkBytes: Int = 256 << 10,
                maintenanceIntervalMilliseconds: Int = 250,
                chooser: any NetworkChooser = DefaultNetworkChooser(),
                backgroundPolicy: any BackgroundPolicy = BackgroundPolicies.fromEnvironment(),
                troubleDetector: (any TroubleDetector)? = nil,
                logger: Logger? = nil) {
        self.classifier = classifier
        self.interfaces = interfaces
        self.staticNetworks = staticNetworks
        self.networkNamespacePath = networkNamespacePath
        self.bindToDevice = bindToDevice
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.reconnectDelaySeconds = reconnectDelaySeconds
        self.sendLimits = sendLimits
        self.receiveLimits = receiveLimits
        self.notSentLowWatermarkBytes = notSentLowWatermarkBytes
        self.maintenanceIntervalMilliseconds = maintenanceIntervalMilliseconds
        self.chooser = chooser
        self.backgroundPolicy = backgroundPolicy
        let logger = logger ?? {
            // Library default: only what an operator should see; pass a Logger for more.
            var l = Logger(label: "intnw")
            l.logLevel = .notice
            return l
        }()
        self.logger = logger
        self.troubleDetector = troubleDetector ?? TroubleDetection.fromEnvironment(logger: logger)
    }
}

/// Options of a listener.
public struct ListenerOptions: Sendable {
    /// Options given to every accepted session.
    public var session: MultiSocketOptions
    /// Handshake timeout: a connection that has not completed its attach (HELLO and AUTH, and the
    /// PROOF of a join) within this many seconds is closed. Default 5 s.
    public var helloTimeoutSeconds: Double
    /// Idle timeout: an attached connection from which nothing arrives for this many seconds is
    /// closed (clients send PING while otherwise silent, every `MultiSocketOptions.keepaliveIntervalSeconds`);
    /// its session then counts as detached. Default 60 s; 0 turns it off.
    public var connectionIdleTimeoutSeconds: Double
    /// Global receive-memory cap, in bytes, over every session of the listener: IROBs begun and not
    /// yet consumed by the application (with their bookkeeping) plus the connections' read buffers.
    /// At the cap no connection is read until the applications consume or connections go; a
    /// BEGIN_IROB that would exceed it closes its connection (the sender resends later). Default
    /// 256 MiB (each session's own bound is `MultiSocketOptions.receiveLimits`).
    public var receiveMemoryLimitBytes: Int
    /// At most this many connections may be waiting for their HELLO; beyond it the oldest is closed.
    public var maxPendingConnections: Int
    /// A session with no connection for this many seconds is closed.
    public var sessionIdleTimeoutSeconds: Double
    /// At most this many sessions (accepted or waiting in the accept queue). At the bound a
    /// session without connections (longest first), else one that never began an IROB (oldest
    /// first), is closed to make room; if there is none, the new session is refused.
    public var maxSessions: Int
    /// At most this many sessions created from one client IPv4 address (same eviction rule), so
    /// one address cannot take the whole table with throwaway HELLOs.
    public var maxSessionsPerPeer: Int
    /// At most this many connections attached to one session (one per client network; a
    /// connection for a network the session already has replaces it).
    public var maxConnectionsPerSession: Int

    public init(session: MultiSocketOptions = MultiSocketOptions(), helloTimeoutSeconds: Double = 5,
                maxPendingConnections: Int = 1024, sessionIdleTimeoutSeconds: Double = 120, maxSessions: Int = 1024,
                maxSessionsPerPeer: Int = 64, maxConnectionsPerSession: Int = 8,
                connectionIdleTimeoutSeconds: Double = 60, receiveMemoryLimitBytes: Int = 256 << 20) {
        self.session = session
        self.helloTimeoutSeconds = helloTimeoutSeconds
        self.connectionIdleTimeoutSeconds = connectionIdleTimeoutSeconds
        self.receiveMemoryLimitBytes = receiveMemoryLimitBytes
        self.maxPendingConnections = maxPendingConnections
        self.sessionIdleTimeoutSeconds = sessionIdleTimeoutSeconds
        self.maxSessions = maxSessions
        self.maxSessionsPerPeer = maxSessionsPerPeer
        self.maxConnectionsPerSession = maxConnectionsPerSession
    }
}
