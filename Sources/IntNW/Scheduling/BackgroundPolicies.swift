/// The background policies of DESIGN.md section 6 (`seeds/fg-bg-anticipatory-scheduling.txt`):
/// exclusive, permissive, anticipatory, trickle, plus delay-target (LEDBAT-like, our own). Each
/// is a pure function of the `BackgroundContext` except delay-target, which keeps a window per
/// multisocket. See docs/scheduling.md for what each one costs foreground traffic and why.
#if canImport(Glibc)
import Glibc
#endif

/// Why background data was held back: the counters of `BackgroundSchedulingStats` and the
/// `reason` of each debug log line.
public enum BackgroundHoldReason: String, Sendable, CaseIterable, Codable {
    /// Another multisocket (this process or another) has foreground data enqueued or not yet
    /// acknowledged on the interface: the barrier of the multi-app note.
    case foregroundElsewhere = "foreground-elsewhere"
    /// The policy never sends background data on this kind of network (exclusive).
    case excludedNetwork = "excluded-network"
    /// Foreground activity was too recent (anticipatory: not yet idle for 4 x RTT).
    case foregroundRecent = "foreground-recent"
    /// The socket is not empty enough (anticipatory: unsent bytes; trickle: queue >= one chunk).
    case socketBusy = "socket-busy"
    /// The background window is full for the queueing delay measured (delay-target).
    case queueingDelay = "queueing-delay"
    /// The kernel could not take a chunk whole now; bytes it refused would sit in user space ahead
    /// of later foreground data (socket-buffer discipline).
    case kernelBufferFull = "kernel-buffer-full"
    /// A policy that does not say why (any `BackgroundPolicy` that is not explained).
    case policy = "policy"
}

/// A decision with its reason.
public struct BackgroundVerdict: Sendable, Equatable {
    public var decision: BackgroundDecision
    /// Why background waits (nil when it may go).
    public var reason: BackgroundHoldReason?

    public init(decision: BackgroundDecision, reason: BackgroundHoldReason?) {
        self.decision = decision
        self.reason = reason
    }

    public static func send(maxBytes: Int) -> BackgroundVerdict { BackgroundVerdict(decision: .send(maxBytes: maxBytes), reason: nil) }
    public static func hold(_ reason: BackgroundHoldReason, untilNs: UInt64?) -> BackgroundVerdict {
        BackgroundVerdict(decision: .wait(untilNs: untilNs), reason: reason)
    }
}

/// A background policy that says why it holds data back, and whether the multi-app barrier
/// applies to it.
public protocol ExplainedBackgroundPolicy: BackgroundPolicy {
    /// Short name for logs and stats (`anticipatory`).
    var name: String { get }
    /// Whether background waits while another multisocket has foreground data enqueued or
    /// unacknowledged on the same interface. Default: true.
    var honorsForegroundBarrier: Bool { get }
    func verdict(_ context: BackgroundContext) -> BackgroundVerdict
}

extension ExplainedBackgroundPolicy {
    public var honorsForegroundBarrier: Bool { true }
    public func decide(_ context: BackgroundContext) -> BackgroundDecision { verdict(context).decision }
}

/// A policy with state of its own: every multisocket (and every session a listener accepts) gets
/// a fresh instance from `makeInstance()`, so one options value can be shared.
public protocol StatefulBackgroundPolicy: BackgroundPolicy {
    func makeInstance() -> any BackgroundPolicy
}

extension BackgroundContext {
    /// Nanoseconds since the last foreground activity; `UInt64.max` when there never was any.
    public var foregroundIdleNs: UInt64 {
        if lastForegroundActivityNs == 0 { return .max }
        return nowNs > lastForegroundActivityNs ? nowNs - lastForegroundActivityNs : 0
    }
}

@inline(__always) func nanoseconds(milliseconds ms: Double) -> UInt64 { UInt64(max(0, ms) * 1e6) }

// MARK: - permissive

extension PermissiveBackgroundPolicy: ExplainedBackgroundPolicy {
    public var name: String { "permissive" }
    /// The straw man of the note: background goes whenever it is ready, whatever other
    /// multisockets do (only this multisocket's own foreground data goes first).
    public var honorsForegroundBarrier: Bool { false }
    public func verdict(_ context: BackgroundContext) -> BackgroundVerdict { .send(maxBytes: Int.max) }
}

// MARK: - exclusive

/// Algorithm 1 of the note: never send background data on the excluded kinds of network (by
/// default cellular); it waits for another network (e.g. WiFi) to appear.
public struct ExclusiveBackgroundPolicy: ExplainedBackgroundPolicy {
    /// Kinds of network background data never uses.
    public var excludedKinds: Set<NetworkKind>
    public init(excludedKinds: Set<NetworkKind> = [.cellular]) { self.excludedKinds = excludedKinds }
    public var name: String { "exclusive" }
    public func verdict(_ context: BackgroundContext) -> BackgroundVerdict {
        // Nothing to re-check by time: a new network (an event) is what changes the answer.
        excludedKinds.contains(context.network.kind) ? .hold(.excludedNetwork, untilNs: nil) : .send(maxBytes: Int.max)
    }
}

// MARK: - anticipatory

/// The note's final algorithm: background goes only after the link has been foreground-idle for
/// `idleRTTMultiple` x RTT and the socket is empty; the chunk grows with idle time:
///
///     chunk = min(max(bandwidth x minimumChunkSeconds, minimumChunkFloorBytes)
///                 x floor(idle / (idleRTTMultiple x RTT)),  bandwidth x maximumChunkSeconds)
///
/// With the defaults, the first chunk is 1/16 s worth of the link (62.5 ms of delay for a
/// foreground message that arrives behind it) and no chunk is more than 1 s worth.
public struct AnticipatoryBackgroundPolicy: ExplainedBackgroundPolicy {
    /// What "the socket buffer is empty" means.
    public enum EmptySocketTest: String, Sendable, Equatable {
        /// No bytes the kernel has not yet sent (SIOCOUTQNSD == 0): DESIGN.md's reading.
        /// Bytes in flight are not counted, so congestion control decides how many chunks are
        /// in flight at once.
        case noUnsentBytes = "unsent"
        /// Nothing unacknowledged (SIOCOUTQ == 0): at most one chunk in flight, which is what
        /// makes the note's "62.5 ms at first, 1 s at most" bound on foreground delay hold.
        case nothingUnacknowledged = "unacked"
    }

    public struct Parameters: Sendable, Equatable {
        /// The idle wait in RTTs (the note's `magic_number = RTT * 4`).
        public var idleRTTMultiple: Double = 4
        /// Smallest chunk as seconds' worth of the link's bandwidth (`bandwidth / 16`), seconds.
        public var minimumChunkSeconds: Double = 1.0 / 16
        /// Floor of the smallest chunk, bytes (the note's 64).
        public var minimumChunkFloorBytes: Int = 64
        /// Largest chunk as seconds' worth of bandwidth (`max_chunksize = bandwidth`), seconds.
        public var maximumChunkSeconds: Double = 1
        public var emptySocketTest: EmptySocketTest = .noUnsentBytes
        /// How soon to look again while the socket is not empty, milliseconds.
        public var recheckMilliseconds: Double = 10
        /// Lower bound on the RTT the idle wait is computed from, milliseconds.
        public var minimumRTTMilliseconds: Double = 1
        public init() {}
    }

    public var parameters: Parameters
    public init(parameters: Parameters = Parameters()) { self.parameters = parameters }
    public var name: String { "anticipatory" }

    /// The idle wait for `context`'s network, ns.
    public func idleThresholdNs(_ context: BackgroundContext) -> UInt64 {
        nanoseconds(milliseconds: max(context.network.estimate.rttMilliseconds, parameters.minimumRTTMilliseconds)
                    * parameters.idleRTTMultiple)
    }

    /// Chunk size after `idleNs` of foreground silence (threshold `thresholdNs`), bytes.
    public func chunkBytes(bandwidthBytesPerSecond bw: Double, idleNs: UInt64, thresholdNs: UInt64) -> Int {
        let minChunk = max(bw * parameters.minimumChunkSeconds, Double(parameters.minimumChunkFloorBytes))
        let maxChunk = max(bw * parameters.maximumChunkSeconds, minChunk)
        let steps = idleNs == .max ? Double.infinity : Double(idleNs / max(thresholdNs, 1))
        return Int(min(minChunk * steps, maxChunk))
    }

    public func verdict(_ context: BackgroundContext) -> BackgroundVerdict {
        let threshold = idleThresholdNs(context)
        let idle = context.foregroundIdleNs
        // Strictly greater, as in the note's `(now - last_fg) > magic_number`.
        if idle <= threshold {
            return .hold(.foregroundRecent, untilNs: context.lastForegroundActivityNs + threshold + 1)
        }
        let busy: Bool
        switch parameters.emptySocketTest {
        case .noUnsentBytes: busy = context.kernelUnsentBytes > 0
        case .nothingUnacknowledged: busy = context.kernelUnackedBytes > 0
        }
        if busy {
            return .hold(.socketBusy, untilNs: context.nowNs + nanoseconds(milliseconds: parameters.recheckMilliseconds))
        }
        return .send(maxBytes: chunkBytes(bandwidthBytesPerSecond: context.network.estimate.bandwidthBytesPerSecond,
                                          idleNs: idle, thresholdNs: threshold))
    }
}

// MARK: - trickle

/// Trickling without piggybacking (DESIGN.md section 6): `chunkSeconds` worth of background at a
/// time while the kernel send queue (every byte not yet acknowledged, SIOCOUTQ) is below one
/// chunk; after `idleAfterSeconds` without foreground activity the chunk becomes
/// `idleChunkSeconds` worth. Piggybacking background bytes onto foreground sends is not built:
/// see docs/scheduling.md.
public struct TrickleBackgroundPolicy: ExplainedBackgroundPolicy {
    public struct Parameters: Sendable, Equatable {
        /// Chunk while foreground is around, seconds' worth of bandwidth.
        public var chunkSeconds: Double = 0.05
        /// Chunk once foreground has been quiet for `idleAfterSeconds`, seconds' worth.
        public var idleChunkSeconds: Double = 1
        /// Foreground silence after which the larger chunk applies, seconds.
        public var idleAfterSeconds: Double = 5
        /// Smallest chunk, bytes (slow links).
        public var minimumChunkBytes: Int = 64
        /// How soon to look again while the queue is too full, milliseconds.
        public var recheckMilliseconds: Double = 10
        public init() {}
    }

    public var parameters: Parameters
    public init(parameters: Parameters = Parameters()) { self.parameters = parameters }
    public var name: String { "trickle" }

    public func chunkBytes(_ context: BackgroundContext) -> Int {
        let quiet = context.foregroundIdleNs >= nanoseconds(milliseconds: parameters.idleAfterSeconds * 1000)
        let seconds = quiet ? parameters.idleChunkSeconds : parameters.chunkSeconds
        return max(parameters.minimumChunkBytes, Int(context.network.estimate.bandwidthBytesPerSecond * seconds))
    }

    public func verdict(_ context: BackgroundContext) -> BackgroundVerdict {
        let chunk = chunkBytes(context)
        if context.kernelUnackedBytes >= chunk {
            return .hold(.socketBusy, untilNs: context.nowNs + nanoseconds(milliseconds: parameters.recheckMilliseconds))
        }
        return .send(maxBytes: chunk)
    }
}

// MARK: - delay-target (ours)

/// Our fifth policy, LEDBAT-like (RFC 6817's idea, not its code): background bytes in flight
/// (SIOCOUTQ) are bounded by a window that grows while the queueing delay the connection measures
/// (TCP_INFO smoothed RTT minus minimum RTT) is below `targetQueueingDelayMilliseconds` and
/// shrinks above it, once per RTT by `gain` x (target - delay) / target x one bandwidth-delay
/// product. Foreground data arriving at the bottleneck therefore waits behind at most about the
/// target's worth of background bytes, while background keeps the link busy when foreground is
/// quiet. Each multisocket keeps its own window.
public final class DelayTargetBackgroundPolicy: ExplainedBackgroundPolicy, StatefulBackgroundPolicy, @unchecked Sendable {
    public struct Parameters: Sendable, Equatable {
        /// Queueing delay background may cause, milliseconds (LEDBAT allows at most 100).
        public var targetQueueingDelayMilliseconds: Double = 25
        /// Window change per RTT at 100% off target, in bandwidth-delay products.
        public var gain: Double = 1
        /// Smallest window, bytes (two full segments).
        public var minimumWindowBytes: Int = 2 * 1448
        /// Largest window, seconds' worth of bandwidth.
        public var maximumWindowSeconds: Double = 1
        /// How soon to look again while the window is full, milliseconds.
        public var recheckMilliseconds: Double = 10
        public init() {}
    }

    public let parameters: Parameters
    private let lock = Lock()
    private var windowBytes: Double
    private var lastUpdateNs: UInt64 = 0

    public init(parameters: Parameters = Parameters()) {
        self.parameters = parameters
        self.windowBytes = Double(parameters.minimumWindowBytes)
    }

    public var name: String { "delay-target" }
    public func makeInstance() -> any BackgroundPolicy { DelayTargetBackgroundPolicy(parameters: parameters) }

    /// The current window, bytes (tests and diagnostics).
    public var currentWindowBytes: Int { lock.lock(); defer { lock.unlock() }; return Int(windowBytes) }

    /// Measured queueing delay, ms: kernel smoothed RTT minus its minimum, or 0 when unknown.
    static func queueingDelayMilliseconds(_ c: BackgroundContext) -> Double {
        guard c.kernelSmoothedRTTMicroseconds > 0, c.kernelMinRTTMicroseconds > 0,
              c.kernelMinRTTMicroseconds != UInt32.max else { return 0 }
        return max(0, Double(c.kernelSmoothedRTTMicroseconds) - Double(c.kernelMinRTTMicroseconds)) / 1000
    }

    public func verdict(_ context: BackgroundContext) -> BackgroundVerdict {
        let bw = context.network.estimate.bandwidthBytesPerSecond
        let baseRTTms = context.kernelMinRTTMicroseconds > 0 && context.kernelMinRTTMicroseconds != UInt32.max
            ? Double(context.kernelMinRTTMicroseconds) / 1000 : context.network.estimate.rttMilliseconds
        let bdp = max(Double(parameters.minimumWindowBytes), bw * baseRTTms / 1000)
        let maxWindow = max(Double(parameters.minimumWindowBytes), bw * parameters.maximumWindowSeconds)
        let qdelay = Self.queueingDelayMilliseconds(context)
        lock.lock()
        defer { lock.unlock() }
        let period = nanoseconds(milliseconds: max(baseRTTms, 1))
        if lastUpdateNs == 0 {
            lastUpdateNs = context.nowNs
        } else if context.nowNs &- lastUpdateNs >= period {
            let target = max(parameters.targetQueueingDelayMilliseconds, 0.001)
            let offTarget = max(-1, min(1, (target - qdelay) / target))
            windowBytes = max(Double(parameters.minimumWindowBytes),
                              min(maxWindow, windowBytes + parameters.gain * offTarget * bdp))
            lastUpdateNs = context.nowNs
        }
        let room = Int(windowBytes) - context.kernelUnackedBytes
        // Less than a segment of room: wait rather than dribble tiny frames.
        if room < min(1448, Int(windowBytes) / 2) {
            return .hold(.queueingDelay, untilNs: context.nowNs + nanoseconds(milliseconds: parameters.recheckMilliseconds))
        }
        return .send(maxBytes: room)
    }
}

// MARK: - selection by name

/// The policies by name: `MultiSocketOptions.backgroundPolicy`, the `INTNW_BG_POLICY`
/// environment variable (for unmodified apps; `intnw-app --bg-policy` sets it) and the
/// experiments' `--bg-policy`.
public enum BackgroundPolicyName: String, CaseIterable, Sendable, Codable {
    case exclusive
    case permissive
    case anticipatory
    case trickle
    case delayTarget = "delay-target"

    /// The environment variable unmodified apps are configured with.
    public static let environmentVariable = "INTNW_BG_POLICY"

    /// The policy with its default parameters.
    public func makePolicy() -> any BackgroundPolicy {
        switch self {
        case .exclusive: ExclusiveBackgroundPolicy()
        case .permissive: PermissiveBackgroundPolicy()
        case .anticipatory: AnticipatoryBackgroundPolicy()
        case .trickle: TrickleBackgroundPolicy()
        case .delayTarget: DelayTargetBackgroundPolicy()
        }
    }

    /// Parses a name (case-insensitive); the error lists the valid ones.
    public static func parse(_ text: String) throws -> BackgroundPolicyName {
        let t = text.trimmingSpaces.lowercased()
        guard let n = BackgroundPolicyName(rawValue: t) else {
            throw IntNWError.invalidArgument("background policy '\(text)' is not one of \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return n
    }

    /// The name `INTNW_BG_POLICY` holds (nil when unset or empty); throws for an unknown name.
    public static func fromEnvironment() throws -> BackgroundPolicyName? {
        guard let raw = getenv(environmentVariable) else { return nil }
        let s = String(cString: raw)
        if s.trimmingSpaces.isEmpty { return nil }
        return try parse(s)
    }
}

/// Defaults for `MultiSocketOptions.backgroundPolicy`.
public enum BackgroundPolicies {
    /// Without configuration: permissive (the runtime's own FG-first ordering only).
    public static let fallback = BackgroundPolicyName.permissive

    /// The policy `INTNW_BG_POLICY` names, else `fallback`. An unknown name falls back too and
    /// is reported (one error line) by the first multisocket that starts.
    public static func fromEnvironment() -> any BackgroundPolicy {
        do {
            return (try BackgroundPolicyName.fromEnvironment() ?? fallback).makePolicy()
        } catch {
            EnvironmentProblem.record("\(error); using \(fallback.rawValue)")
            return fallback.makePolicy()
        }
    }
}

/// A configuration problem found while building default options (no logger there yet): the
/// first background scheduler logs it once.
enum EnvironmentProblem {
    private static let lock = Lock()
    nonisolated(unsafe) private static var pending: String?

    static func record(_ s: String) {
        lock.lock()
        pending = s
        lock.unlock()
    }

    static func take() -> String? {
        lock.lock()
        defer { lock.unlock() }
        let s = pending
        pending = nil
        return s
    }
}

extension String {
    var trimmingSpaces: String { Substring(self).trimmingSpaces }
}
