/// The background policies (docs/scheduling.md, "The policies", which restates the original policy
/// description this file calls "the note"):
/// exclusive, permissive, anticipatory, trickle, plus delay-target (LEDBAT-like, our own). Each
/// is a pure function of the `BackgroundContext` except delay-target, which keeps a window per
/// multisocket. See docs/scheduling.md for what each one costs foreground traffic and why.
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

// MARK: - delay-target (ours)

/// Our fifth policy, in the spirit of LEDBAT (RFC 6817's goal, not its algorithm): background bytes
/// in flight (SIOCOUTQ: everything not yet acknowledged) are bounded by a window: the link's
/// bandwidth-delay product (with one full segment's transmission) plus `targetQueueingDelayMilliseconds`
/// worth of bandwidth, times a scale
/// the measured queueing delay (TCP_INFO smoothed RTT minus minimum RTT) steers once per RTT.
/// At most about the target's worth of background data then waits in the bottleneck queue ahead of
/// a foreground packet, while background keeps the link busy whenever foreground is quiet (no idle
/// wait). The scale:
/// - measured delay above `ceilingQueueingDelayMilliseconds` (LEDBAT's 100 ms): halved (the
///   estimates are too optimistic);
/// - above the target: back towards 1 (x 0.75 per RTT, not below 1);
/// - below half the target while background wanted more than the window allowed: + 0.25 per RTT,
///   up to `maximumScale`, so a bandwidth estimate that is too low (traffic the policy keeps
///   application-limited never shows the link's rate) does not cap background for good;
/// - otherwise, below 1: + 0.25 per RTT.
/// Each multisocket keeps its own scale.
// @unchecked: the per-multisocket window state is touched only under `lock` (a Mutex guarding no value of its own).
public final class DelayTargetBackgroundPolicy: ExplainedBackgroundPolicy, StatefulBackgroundPolicy, @unchecked Sendable {
    public struct Parameters: Sendable, Equatable {
        /// Queueing delay background data may add ahead of foreground data, milliseconds.
        public var targetQueueingDelayMilliseconds: Double = 10
        /// Measured queueing delay above which the window is halved, milliseconds.
        public var ceilingQueueingDelayMilliseconds: Double = 100
        /// Smallest window, bytes (two full segments).
        public var minimumWindowBytes: Int = 2 * 1448
        /// Range of the scale on the model window.
        public var minimumScale: Double = 1.0 / 16
        /// Largest scale: 1, no probing above the model window (the window's target already
        /// exceeds the estimate's bandwidth-delay product, which is what lets the delivery-rate
        /// estimate rise to the link's; a larger scale only lengthens FG's wait).
        public var maximumScale: Double = 1
        /// How soon to look again while the window is full, milliseconds.
        public var recheckMilliseconds: Double = 10
        /// Fault injection (regression checks; docs/regression.md): the share of each
        /// `dutyPeriodSeconds` period background may keep the link busy. Background bytes are
        /// admitted only until one base RTT before the period's share ends (what is in flight then,
        /// about a bandwidth-delay product, drains by the share's end); the rest of the period it
        /// holds. Time-based only: a rule that used the bandwidth estimate would feed its own
        /// throttling back into the estimate and spiral down. While held it looks again every
        /// `recheckMilliseconds`. 1 (the default): off.
        public var dutyFraction: Double = 1
        public var dutyPeriodSeconds: Double = 2
        /// How long another multisocket's or process's foreground data on the interface holds
        /// background back (the multi-app barrier).
        /// Default `acked`: `sent` gives BG much more of the uplink but lets BG into the bottleneck
        /// between the flights of FG larger than one congestion window (16 KB replies on the
        /// 3G downlink: FG p95 1.28-1.30x alone), docs/scheduling.md.
        public var barrier: Barrier = .acked
        public init() {}
    }

    /// The multi-app barrier as delay-target applies it.
    public enum Barrier: String, Sendable, Equatable, CaseIterable {
        /// Until the foreground data is acknowledged, as every note policy does: on a link where
        /// foreground talks about once a second, background stops for a round trip each time
        /// and the link idles for most of it (multiapp: about a quarter of the uplink).
        case acked
        /// Until the foreground data has been sent: foreground activity on the interface at or
        /// after the moment this multisocket first saw the barrier (less `sentSlackMilliseconds`,
        /// as decisions notice the barrier up to one re-check late). Background sent after it
        /// queues behind it at the bottleneck, and the window bounds what it adds ahead of the
        /// next foreground data.
        case sent
    }

    /// With `barrier` = `sent`: foreground activity this long before the barrier was first seen
    /// counts as sending it, milliseconds (two barrier re-checks).
    public static let sentSlackMilliseconds = 20.0

    public let parameters: Parameters
    /// Guards the scale, the update time, the window flag and the barrier time (holds no value itself).
    private let lock = Mutex(())
    private var scale = 1.0
    private var lastUpdateNs: UInt64 = 0
    /// Whether a decision since the last update held background back for lack of window.
    private var windowLimited = false
    /// When this multisocket first saw foreground outstanding elsewhere (0: not now).
    private var barrierSinceNs: UInt64 = 0

    public init(parameters: Parameters = Parameters()) { self.parameters = parameters }

    public var name: String { "delay-target" }
    /// With `barrier` = `sent` the policy applies the barrier itself (`verdict`); with `acked`
    /// the scheduler does, as for the note's policies.
    public var honorsForegroundBarrier: Bool { parameters.barrier == .acked }
    /// Its window exceeds the estimate's bandwidth-delay product by the target, so the delivery
    /// rate rises with the link.
    public var scalesWithDeliveryRate: Bool { true }
    public func makeInstance() -> any BackgroundPolicy { DelayTargetBackgroundPolicy(parameters: parameters) }

    /// The current scale on the model window (tests and diagnostics).
    public var currentScale: Double { lock.withLock { _ in scale } }

    /// Measured queueing delay, ms: kernel smoothed RTT minus its minimum, less the serialization
    /// of one full segment at the bandwidth estimate (the RTT of a full segment includes its own
    /// transmission, the minimum RTT is usually a small segment's: on a 64 KB/s link that is 22 ms
    /// that is not queueing), or 0 when unknown.
    static func queueingDelayMilliseconds(_ c: BackgroundContext) -> Double {
        guard c.kernelSmoothedRTTMicroseconds > 0, c.kernelMinRTTMicroseconds > 0,
              c.kernelMinRTTMicroseconds != UInt32.max else { return 0 }
        let serializationMs = segmentSerializationMilliseconds(bandwidthBytesPerSecond: c.network.estimate.bandwidthBytesPerSecond)
        return max(0, (Double(c.kernelSmoothedRTTMicroseconds) - Double(c.kernelMinRTTMicroseconds)) / 1000 - serializationMs)
    }

    /// Transmission time of one full segment (1448 bytes) at `bw`, ms.
    static func segmentSerializationMilliseconds(bandwidthBytesPerSecond bw: Double) -> Double {
        bw > 0 && bw.isFinite ? 1448 / bw * 1000 : 0
    }

    static func baseRTTMilliseconds(_ c: BackgroundContext) -> Double {
        c.kernelMinRTTMicroseconds > 0 && c.kernelMinRTTMicroseconds != UInt32.max
            ? Double(c.kernelMinRTTMicroseconds) / 1000 : c.network.estimate.rttMilliseconds
    }

    /// The window before scaling: bandwidth x (base RTT + one full segment's transmission time +
    /// target), bytes. The minimum RTT is usually a small segment's; a full segment's round trip is
    /// longer by its own transmission (22 ms on 3G), and a window without it stays below the
    /// bandwidth-delay product whenever the estimate is below the link (the delivery rate then
    /// only ever shows the estimate back, and it never rises).
    public func modelWindowBytes(_ context: BackgroundContext) -> Double {
        let bw = context.network.estimate.bandwidthBytesPerSecond
        let bytes = bw * (Self.baseRTTMilliseconds(context) + Self.segmentSerializationMilliseconds(bandwidthBytesPerSecond: bw)
                          + parameters.targetQueueingDelayMilliseconds) / 1000
        return max(Double(parameters.minimumWindowBytes), bytes)
    }

    public func verdict(_ context: BackgroundContext) -> BackgroundVerdict {
        let model = modelWindowBytes(context)
        let qdelay = Self.queueingDelayMilliseconds(context)
        let target = parameters.targetQueueingDelayMilliseconds
        lock.withLock { _ in
            if parameters.barrier == .sent {
                if context.foregroundElsewhere > 0 {
                    if barrierSinceNs == 0 { barrierSinceNs = context.nowNs }
                    let slack = nanoseconds(milliseconds: Self.sentSlackMilliseconds)
                    let sentSince = context.lastForegroundActivityNs != 0
                        && context.lastForegroundActivityNs &+ slack >= barrierSinceNs
                    if !sentSince {
                        return .hold(.foregroundElsewhere, untilNs: context.nowNs + nanoseconds(milliseconds: parameters.recheckMilliseconds))
                    }
                } else {
                    barrierSinceNs = 0
                }
            }
            if context.nowNs &- lastUpdateNs >= nanoseconds(milliseconds: max(Self.baseRTTMilliseconds(context), 1)) || lastUpdateNs == 0 {
                if qdelay > parameters.ceilingQueueingDelayMilliseconds {
                    scale = max(parameters.minimumScale, scale / 2)
                } else if qdelay > target {
                    if scale > 1 { scale = max(1, scale * 0.75) }
                } else if qdelay < target / 2 && windowLimited {
                    scale = min(parameters.maximumScale, scale + 0.25)
                } else if scale < 1 {
                    scale = min(1, scale + 0.25)
                }
                lastUpdateNs = context.nowNs
                windowLimited = false
            }
            let window = max(Double(parameters.minimumWindowBytes), model * scale)
            // The window is the interface's: background other connections, multisockets and
            // processes have in kernel queues there counts against it.
            let room = Int(window) - context.kernelUnackedBytes - context.backgroundElsewhereBytes
            // Less than a segment of room: wait rather than dribble tiny frames.
            if room < min(1448, Int(window) / 2) {
                windowLimited = true
                return .hold(.queueingDelay, untilNs: context.nowNs + nanoseconds(milliseconds: parameters.recheckMilliseconds))
            }
            if parameters.dutyFraction < 1, let next = Self.dutyHoldUntil(parameters, context) {
                // Decisions go on while held: the scheduler's delivery-rate estimate samples at each
                // one, and sparse decisions would leave only the share's ramp-up windows as samples
                // (the estimate, and with it the window, then spirals down).
                return .hold(.dutyCycle, untilNs: min(next, context.nowNs + nanoseconds(milliseconds: parameters.recheckMilliseconds)))
            }
            return .send(maxBytes: room)
        }
    }

    /// When background is outside the period's share (or within one base RTT of its end): the
    /// start of the next period; nil when it may send.
    static func dutyHoldUntil(_ p: Parameters, _ c: BackgroundContext) -> UInt64? {
        let period = UInt64(p.dutyPeriodSeconds * 1e9)
        guard period > 0 else { return nil }
        let phase = c.nowNs % period
        let on = UInt64(Double(period) * p.dutyFraction)
        let rtt = UInt64(max(baseRTTMilliseconds(c), 0) * 1e6)
        return phase + rtt < on ? nil : c.nowNs - phase + period
    }
}
