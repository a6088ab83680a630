#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging

/// The whole emulated testbed: namespaces, shaped links and the trace replayer, brought up and torn
/// down as one. Used by `intnw-lab net up`, the experiment harness and the namespace tests.
// @unchecked: immutable after bring-up (lets); the shaper and replayer it holds synchronize themselves.
public final class Testbed: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var prefix = "intnw"
        public var trace: Trace
        public var shaper: ShaperKind = .userspace
        /// Seconds between WiFi disappearing and its carrier going down (docs/testbed.md, Topology).
        public var notifyDelaySeconds = 2.0
        /// Replay length in seconds; nil = the trace's duration (longer loops the trace).
        public var durationSeconds: Double?
        public var userspace = UserspaceShaper.Options()
        /// Raise the namespaces' TCP buffer maxima (tcp_rmem/tcp_wmem third value), bytes.
        public var tcpBufferBytes: Int?
        /// Congestion control and TCP sysctls pinned in both namespaces.
        public var tcp = TCPSettings()
        /// Configure Linux MPTCP's path manager in this mode (nil: leave MPTCP unconfigured).
        public var mptcp: MPTCPMode?
        /// JSON-lines record of every slice/carrier event applied.
        public var replayLogPath: String?

        public init(trace: Trace) { self.trace = trace }
    }

    public let configuration: Configuration
    public let topology: Topology
    public let shaper: Shaper
    public let replayer: TraceReplayer
    /// The TCP sysctls as read back from each namespace after setup: "client"/"server" -> key -> value.
    public private(set) var tcpRecord: [String: [String: String]] = [:]
    private let logger: Logger
    private var isDown = false
    /// With MPTCP: carrier changes on their way to the task that follows them with path-manager endpoints.
    private var carrierEvents: AsyncStream<(String, Bool)>.Continuation?
    private var endpointTask: Task<Void, Never>?

    private init(configuration: Configuration, topology: Topology, shaper: Shaper, replayer: TraceReplayer, logger: Logger) {
        self.configuration = configuration
        self.topology = topology
        self.shaper = shaper
        self.replayer = replayer
        self.logger = logger
    }

    /// Brings the testbed up with the trace's first slice applied; `startReplay` starts the clock.
    /// On failure everything created so far is removed again.
    public static func up(_ config: Configuration, logger: Logger) async throws -> Testbed {
        let spec = TopologySpec(prefix: config.prefix)
        guard config.trace.links.count >= spec.links.count else {
            throw TestbedError.traceLinks(have: config.trace.links.count, need: spec.links.count)
        }
        let topology = Topology(spec: spec)
        try await topology.create(tcpBufferBytes: config.tcpBufferBytes, tcp: config.tcp, logger: logger)
        let shaper: Shaper
        var tcpRecord: [String: [String: String]] = [:]
        do {
            for (role, ns) in [("client", spec.clientNamespace), ("server", spec.serverNamespace)] {
                tcpRecord[role] = try await topology.readSysctls(namespace: ns, keys: TCPSettings.recordedKeys)
                let cc = tcpRecord[role]?["net.ipv4.tcp_congestion_control"]
                guard cc == config.tcp.congestionControl.rawValue else {
                    throw TopologyError.namespacesUnsupported("\(role) namespace runs congestion control \(cc ?? "?") instead of \(config.tcp.congestionControl.rawValue) (is the tcp_\(config.tcp.congestionControl.rawValue) module available?)")
                }
            }
        } catch {
            await topology.destroy(logger: logger)
            throw error
        }
        do {
            shaper = try makeShaper(config, logger: logger)
            try shaper.attach(topology: spec)
            try await topology.configureLinks()
            if let mode = config.mptcp { try await topology.configureMPTCP(mode) }
        } catch {
            await topology.destroy(logger: logger)
            throw error
        }
        Topology.writeOwner(prefix: spec.prefix, pid: getpid())
        let replayer = TraceReplayer(trace: config.trace, linkNames: spec.links.map(\.name), shaper: shaper,
                                     notifyDelaySeconds: config.notifyDelaySeconds,
                                     durationSeconds: config.durationSeconds,
                                     eventLogPath: config.replayLogPath, logger: logger)
        let bed = Testbed(configuration: config, topology: topology, shaper: shaper, replayer: replayer, logger: logger)
        bed.tcpRecord = tcpRecord
        if let mode = config.mptcp { bed.followCarrierWithMPTCPEndpoints(mode) }
        do {
            try replayer.applyInitial()
        } catch {
            await bed.down()
            throw error
        }
        return bed
    }

    static func makeShaper(_ config: Configuration, logger: Logger) throws -> Shaper {
        switch config.shaper {
        case .userspace:
            return UserspaceShaper(options: config.userspace, logger: logger)
        case .netem:
            return NetemShaper(seed: config.userspace.seed, logger: logger)
        }
    }

    public func startReplay() { replayer.start() }

    /// An address's MPTCP endpoint exists while its link has carrier (`Topology.mptcpEndpointCommand`):
    /// the replayer's carrier changes are applied in order by a task of their own, off the replay thread.
    private func followCarrierWithMPTCPEndpoints(_ mode: MPTCPMode) {
        let (stream, continuation) = AsyncStream<(String, Bool)>.makeStream(bufferingPolicy: .unbounded)
        carrierEvents = continuation
        let topology = topology, logger = logger
        endpointTask = Task {
            for await (link, up) in stream {
                do {
                    try await topology.followCarrierForMPTCP(link: link, up: up, mode: mode)
                    logger.info("mptcp: \(link) endpoint \(up ? "added" : "deleted") (carrier \(up ? "up" : "down"))")
                } catch {
                    logger.warning("mptcp: following \(link) carrier \(up ? "up" : "down") failed: \(error)")
                }
            }
        }
        replayer.onCarrierChange = { link, up in continuation.yield((link, up)) }
    }

    /// Stops replay, removes the links and namespaces. Safe to call more than once.
    public func down() async {
        guard !isDown else { return }
        isDown = true
        replayer.stop()
        carrierEvents?.finish()
        await endpointTask?.value
        shaper.detach()
        await topology.destroy(logger: logger)
        Topology.clearOwner(prefix: topology.spec.prefix)
    }
}

public enum TestbedError: Error, CustomStringConvertible {
    case traceLinks(have: Int, need: Int)
    public var description: String {
        switch self {
        case .traceLinks(let have, let need): return "the trace describes \(have) links but the topology needs \(need)"
        }
    }
}

extension Testbed {
    /// Suspends until the replay has run its duration or was stopped (without blocking the caller's
    /// executor: the blocking wait happens on a plain thread).
    public func waitForReplay() async {
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            let r = replayer
            let t = Thread { r.wait(); cont.resume() }
            t.start()
        }
    }
}

extension Testbed {
    /// Brings a testbed up, runs `body`, and always tears it down (also when `body` throws).
    public static func with<T>(_ config: Configuration, logger: Logger, _ body: (Testbed) async throws -> T) async throws -> T {
        let bed = try await Testbed.up(config, logger: logger)
        do {
            let result = try await body(bed)
            await bed.down()
            return result
        } catch {
            await bed.down()
            throw error
        }
    }
}
