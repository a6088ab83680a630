/// The background policies (docs/scheduling.md, "The policies", which restates the original policy
/// description this file calls "the note"):
/// exclusive, permissive, anticipatory, trickle, each a pure function of the `BackgroundContext`.
/// delay-target (LEDBAT-like, our own, the default), which keeps a window per multisocket, is in
/// DelayTargetPolicy.swift. See docs/scheduling.md for what each one costs foreground traffic and why.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Why background data was held back: the counters of `BackgroundSchedulingStats` and the
/// `reason` of each debug log line.
public enum BackgroundHoldReason: String, Sendable, CaseIterable, Codable {
    /// Another multisocket (this process or another) has foreground data enqueued or not yet
    /// acknowledged on the interface: the barrier of the multi-app design (docs/scheduling.md).
    case foregroundElsewhere = "foreground-elsewhere"
    /// The policy never sends background data on this kind of network (exclusive).
    case excludedNetwork = "excluded-network"
    /// Foreground activity was too recent (anticipatory: not yet idle for 4 x RTT).
    case foregroundRecent = "foreground-recent"
    /// The socket is not empty enough (anticipatory: unsent bytes; trickle: queue >= one chunk).
    case socketBusy = "socket-busy"
    /// The background window is full for the queueing delay measured (delay-target).
    case queueingDelay = "queueing-delay"
    /// Outside the share of each period background may use (delay-target's `duty`, a fault
    /// injection for regression checks).
    case dutyCycle = "duty-cycle"
    /// The previous grants have not yet had time to cross the link at the pacing rate
    /// (delay-target's pacing, which keeps background from entering the bottleneck in bursts).
    case pacing = "pacing"
    /// Background on the interface drains so that a PING can measure the path's RTT without its
    /// queue (delay-target's path probe, about one round trip every few seconds).
    case pathProbe = "path-probe"
    /// After a path-probe drain, background on the interface refills no faster than the bandwidth
    /// estimate, summed over every multisocket and process (delay-target): the emptied bottleneck
    /// would otherwise take each one's paced refill at once.
    case refill = "refill"
    /// The connection's congestion window is full and its kernel holds more unsent than the link
    /// carries until the next decision (at least one pacing quantum): the congestion window, not
    /// the policy, limits it now, and more would leave in a burst when the window reopens
    /// (delay-target's `holdKernelBacklog`).
    case kernelBacklog = "kernel-backlog"
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
    /// Whether the policy scales with the interface's delivery-rate estimate (`LinkRateTracker`)
    /// rather than IntNW's general estimate. Only a policy that sends above its estimate when the
    /// link allows may: the delivery rate of BG kept below the estimate only shows the estimate
    /// back (anticipatory's chunk of bandwidth/16 would shrink it to nothing). Default: false.
    var scalesWithDeliveryRate: Bool { get }
    func verdict(_ context: BackgroundContext) -> BackgroundVerdict
}

extension ExplainedBackgroundPolicy {
    public var honorsForegroundBarrier: Bool { true }
    public var scalesWithDeliveryRate: Bool { false }
    public func decide(_ context: BackgroundContext) -> BackgroundDecision { verdict(context).decision }
}

/// A policy with state of its own: every multisocket (and every session a listener accepts) gets
/// a fresh instance from `makeInstance()`, so one options value can be shared.
public protocol StatefulBackgroundPolicy: BackgroundPolicy {
    func makeInstance() -> any BackgroundPolicy
}

/// A policy told how much of its latest grant was used: the multisocket reports it after the fill
/// that followed the grant (the fill may use less: the scheduler caps a grant by the kernel's room,
/// and background data may run out). delay-target's pacing charges the bytes sent, not the bytes
/// granted: a small background message (an application's acknowledgement) must not hold the next
/// one for a whole quantum.
public protocol BackgroundUsageObserving: BackgroundPolicy {
    func backgroundUsed(_ bytes: Int)
}

/// A policy that tells the scheduler's delivery-rate estimate what each decision saw of the link
/// (`LinkEvidence`), so that the estimate can probe above what the policy's own window let through.
public protocol LinkEvidenceReporting: BackgroundPolicy {
    func linkEvidence(_ context: BackgroundContext, verdict: BackgroundVerdict) -> LinkEvidence
    /// How far above what two windows in a row that showed queueing delivered a measurement may
    /// be and still count (`LinkRateTracker.fallMargin`; 0: any, the horizon alone forgets it).
    var estimateFallMargin: Double { get }
}

extension LinkEvidenceReporting {
    public var estimateFallMargin: Double { 0 }
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
    /// What "the socket buffer is empty" means (docs/scheduling.md has the measurements behind
    /// the default).
    public enum EmptySocketTest: String, Sendable, Equatable {
        /// No bytes the kernel has not yet sent (SIOCOUTQNSD == 0): the original policy description's reading. Bytes
        /// in flight are not counted, so congestion control decides how many chunks are in
        /// flight at once; on a deep bottleneck queue that is most of a second's worth, and the
        /// next foreground message waits behind it (about 4-5 x FG alone on the 3G link).
        case noUnsentBytes = "unsent"
        /// Nothing unacknowledged (SIOCOUTQ == 0): at most one chunk in flight, which is what
        /// makes the note's "62.5 ms at first, 1 s at most" bound on foreground delay hold.
        case nothingUnacknowledged = "unacked"
        /// Less than one chunk unacknowledged (SIOCOUTQ < chunk), the test the original policy description gives
        /// trickle: at most two chunks in flight, so the next chunk is on its way while the last
        /// one is ACKed. The default: foreground delay stays bounded by two chunks, and background
        /// moves about half again as much as with `nothingUnacknowledged`.
        case belowOneChunk = "below-chunk"
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
        public var emptySocketTest: EmptySocketTest = .belowOneChunk
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
        let chunk = chunkBytes(bandwidthBytesPerSecond: context.network.estimate.bandwidthBytesPerSecond,
                               idleNs: idle, thresholdNs: threshold)
        let busy: Bool
        switch parameters.emptySocketTest {
        case .noUnsentBytes: busy = context.kernelUnsentBytes > 0
        case .nothingUnacknowledged: busy = context.kernelUnackedBytes > 0
        case .belowOneChunk: busy = context.kernelUnackedBytes >= chunk
        }
        if busy {
            return .hold(.socketBusy, untilNs: context.nowNs + nanoseconds(milliseconds: parameters.recheckMilliseconds))
        }
        return .send(maxBytes: chunk)
    }
}

// MARK: - trickle

/// Trickling without piggybacking (docs/scheduling.md): `chunkSeconds` worth of background at a
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
