#if canImport(Glibc)
import Glibc
#endif

/// The path's RTT now, measured without background's own queue: the base a delay-based background
/// policy measures its queueing delay against.
///
/// Why: the kernel's minimum RTT (TCP_INFO `min_rtt`) is the smallest sample of the last five
/// minutes. On a path whose RTT moves (a vehicular WiFi hop: 22-45 ms from second to second, with
/// spikes of 100-335 ms lasting seconds, against a minimum of 18-24 ms), everything above that
/// minimum reads as queueing. A window of bandwidth x (minimum + target) then no longer covers the
/// path's round trip, background delivers less than the estimate, and the estimate (the largest
/// delivery rate of a few seconds) falls with it, a second at a time. RTT alone cannot tell a
/// longer path from a queue; emptying the queue can.
///
/// How, per interface: every *period* (on a grid of the monotonic clock, so that every multisocket
/// and process on the host drains in the same slot) background holds until nothing of it is in
/// flight on the interface (this connection, this multisocket's other connections and, through the
/// shared segment, other multisockets and processes) and no foreground is outstanding there (a
/// reply queued ahead of the PING would read as path), then a PING goes on the connection. Its
/// round trip, echoed by the peer at once, is the path's without background's queue; background
/// resumes behind the PING after a short grace (so that the others draining in the same slot
/// still find the interface empty; a millisecond when nobody else decides about background
/// there). The link idles for about one round trip per drain, so the period is `periodRTTs`
/// base RTTs, rounded up to a power of two seconds (1-8 s): at most about 1/`periodRTTs` of the
/// link's time. A drain that cannot empty the queue within `drainTimeoutRTTs` smoothed RTTs (at
/// least `minimumDrainTimeoutNs`) gives up until the next slot. The sample is used until
/// `maximumAgePeriods` periods have passed without a new one.
///
/// The sample only ever moves the base within [kernel minimum, smoothed RTT less one segment]: a
/// path that shortened since (the smoothed RTT falls below the sample) and a peer that delays its
/// PONGs (its echo can only make the sample larger) cannot push the base above what the connection
/// itself shows.
struct PathRTTProbe {
    /// What the scheduler should do about background on the interface now.
    enum Action: Equatable {
        /// Decide as usual.
        case none
        /// A drain is on: hold background back.
        case hold
        /// The interface is drained: send a PING on the deciding connection, alone (background
        /// stays held for this decision and the grace after it).
        case ping
    }

    /// In flight or queued at most this much, bytes, a connection or an interface counts as
    /// drained: IntNW's own ACK and control frames (well under one segment), not data.
    static let drainedBytes = 256
    static let drainTimeoutRTTs = 4.0
    /// How long background stays held after the PING, ns: the other multisockets and processes
    /// draining in the same slot look again within one re-check (10 ms) and must still find the
    /// interface drained to send their own.
    static let graceNs: UInt64 = 20_000_000
    /// The grace when no other multisocket or process decides about background on the interface:
    /// nobody else drains, and background sent behind the PING queues behind it (its round trip
    /// is unchanged). The real drive's WiFi (1 s periods) idled 24 ms after every PING with the
    /// full grace, about 2% of the link.
    static let aloneGraceNs: UInt64 = 1_000_000
    static let minimumDrainTimeoutNs: UInt64 = 100_000_000
    static let maximumAgePeriods: UInt64 = 3
    /// The shortest and longest period, ns.
    static let minimumPeriodNs: UInt64 = 1_000_000_000
    static let maximumPeriodNs: UInt64 = 8_000_000_000

    /// The drain period for a path of base RTT `baseRTTNs`: `rtts` base RTTs rounded up to a power
    /// of two seconds, 1-8 s (every multisocket on an interface lands on the same grid, or on one
    /// whose slots contain the others'). 0: never probe.
    static func periodNs(baseRTTNs: UInt64, rtts: Double) -> UInt64 {
        guard rtts > 0, rtts.isFinite else { return 0 }
        let want = Double(baseRTTNs) * rtts
        var p = minimumPeriodNs
        while Double(p) < want && p < maximumPeriodNs { p *= 2 }
        return p
    }

    /// The grid slot drained (or given up) last, and the period of that grid (nil before the first
    /// decision).
    private var slotDone: (slot: UInt64, periodNs: UInt64)?
    /// When the current drain began (0: none on).
    private var drainStartNs: UInt64 = 0
    /// Until when background stays held after this slot's PING.
    private var graceUntilNs: UInt64 = 0
    /// The latest sample: the path's RTT, ns, and when it was measured.
    private(set) var sampleNs: UInt64 = 0
    private(set) var sampleAtNs: UInt64 = 0
    private var samplePeriodNs: UInt64 = 0
    /// The latest samples, ns, oldest first (at most `variationSamples`), and the variation they
    /// show (`variationMicroseconds`), taken once per sample rather than at every decision.
    private(set) var recentSamplesNs: [UInt64] = []
    private var variationNs: UInt64 = 0
    /// How many samples the path's variation is read from.
    static let variationSamples = 5
    /// Drains that ended with a PING, and drains given up (diagnostics and tests).
    private(set) var pings = 0
    private(set) var timeouts = 0

    /// At a decision: `drained` is whether no background of anyone's is in flight on the interface
    /// or waiting in this connection's buffers, and no foreground of anyone's is outstanding there;
    /// `smoothedRTTNs` the connection's smoothed RTT; `graceNs` how long background stays held
    /// after a PING (`graceNs`, or `aloneGraceNs` when nobody else drains).
    mutating func check(nowNs: UInt64, periodNs: UInt64, drained: Bool, smoothedRTTNs: UInt64,
                        graceNs: UInt64 = Self.graceNs) -> Action {
        guard periodNs > 0 else { return .none }
        if nowNs < graceUntilNs { return .hold }
        let slot = nowNs / periodNs
        guard let done = slotDone, done.periodNs == periodNs else {
            // The first decision, or the period changed with the base RTT: start counting from
            // this slot (the queue of a new connection is empty, and its first round trips
            // measure the path anyway).
            slotDone = (slot, periodNs)
            drainStartNs = 0
            return .none
        }
        guard slot > done.slot else { return .none }
        if drainStartNs == 0 { drainStartNs = nowNs }
        if drained {
            slotDone = (slot, periodNs)
            drainStartNs = 0
            graceUntilNs = nowNs + max(1, graceNs)
            pings += 1
            samplePeriodNs = periodNs
            return .ping
        }
        let timeout = max(Self.minimumDrainTimeoutNs, UInt64(Double(smoothedRTTNs) * Self.drainTimeoutRTTs))
        if nowNs &- drainStartNs > timeout {
            slotDone = (slot, periodNs)
            drainStartNs = 0
            timeouts += 1
            return .none
        }
        return .hold
    }

    /// When background resumed after this interface's latest drain (the end of the PING's grace),
    /// while that was less than `withinNs` ago; 0 otherwise. Every multisocket and process on the
    /// interface drains in the same slot and resumes within a few milliseconds of the others, so
    /// the policy can bound what all of them have in flight together by the time since then
    /// (`DelayTargetBackgroundPolicy.refillLimitBytes`).
    func refillSinceNs(nowNs: UInt64, withinNs: UInt64) -> UInt64 {
        guard graceUntilNs != 0, nowNs >= graceUntilNs, nowNs - graceUntilNs < withinNs else { return 0 }
        return graceUntilNs
    }

    /// A PONG answered the drain's PING after `rttNs`.
    mutating func sample(rttNs: UInt64, nowNs: UInt64) {
        sampleNs = rttNs
        sampleAtNs = nowNs
        recentSamplesNs.append(rttNs)
        if recentSamplesNs.count > Self.variationSamples { recentSamplesNs.removeFirst() }
        let d = zip(recentSamplesNs.dropFirst(), recentSamplesNs).map { $0 > $1 ? $0 - $1 : $1 - $0 }.sorted()
        variationNs = d.isEmpty ? 0 : d[(d.count - 1) / 2]
    }

    /// How far the path's RTT moves from one drain to the next, µs: the lower median of the
    /// absolute differences between consecutive samples of the latest `variationSamples` (0: fewer
    /// than two, or the latest too old to be the base). The lower median, so that one sample far
    /// off (a second of 1,288 ms on a 210 ms path), which makes two of the four differences, does
    /// not count. A path whose RTT moves by more than the policy's queueing target between two
    /// drains reads as queueing the moment it lengthens: the real drive's cellular path moves by
    /// 1-45 ms from second to second (60-113 ms).
    func variationMicroseconds(nowNs: UInt64) -> UInt32 {
        guard pathRTTMicroseconds(nowNs: nowNs) > 0 else { return 0 }
        return UInt32(clamping: variationNs / 1000)
    }

    /// The path's RTT, µs, for the base (0: no sample, or too old).
    func pathRTTMicroseconds(nowNs: UInt64) -> UInt32 {
        guard sampleNs > 0, samplePeriodNs > 0, nowNs &- sampleAtNs <= Self.maximumAgePeriods * samplePeriodNs else { return 0 }
        return UInt32(clamping: sampleNs / 1000)
    }
}

/// What of a connection's smoothed RTT (TCP_INFO `tcpi_rtt`) is history, by what a path probe
/// showed: when the drained PING's answer came back nothing of BG was queued on the interface, so
/// whatever the smoothed RTT then exceeded the path's RTT (and one segment's transmission) by was
/// left from before, not queueing now. The kernel moves the smoothed RTT an eighth of the way to
/// each RTT sample, at most one sample per segment received, so after k segments received at
/// least 7/8^k of that excess is still in it; delay-target's measured queueing delay leaves that
/// much out (never more: a queue that builds after the drain still shows in full).
/// Measured on the real drive: BG back on the cellular uplink after 58 s on WiFi found the
/// connection's smoothed RTT at 275 ms on an 81 ms path (its value from 58 s before), read more
/// than 100 ms of queueing for a second while it decayed, halved its window to two segments, and
/// the delivery-rate estimate read 33 KB/s on a 120 KB/s link.
struct SmoothedRTTHistory {
    /// The path sample this was taken at (0: none), the excess then (µs), and the connection's
    /// segments received then.
    private var sampleAtNs: UInt64 = 0
    private var excessMicroseconds = 0.0
    private var segmentsIn: UInt32 = 0
    /// Taken only this soon after the sample: later, BG sent since may have queued.
    static let captureWithinNs: UInt64 = 50_000_000
    /// What of the smoothed RTT stays per sample (Linux: srtt += (sample - srtt) / 8).
    static let keptPerSample = 0.875

    /// Notes the connection's smoothed RTT at a path sample (taken at `pathSampleAtNs`, `pathMicroseconds`),
    /// once per sample; `segmentMicroseconds` is one full segment's transmission at the estimate.
    mutating func update(pathSampleAtNs: UInt64, pathMicroseconds: UInt32, nowNs: UInt64, smoothedMicroseconds: UInt32,
                         segmentMicroseconds: Double, segmentsIn: UInt32) {
        guard pathSampleAtNs != 0, pathSampleAtNs != sampleAtNs, pathMicroseconds > 0 else { return }
        sampleAtNs = pathSampleAtNs
        self.segmentsIn = segmentsIn
        let fresh = nowNs >= pathSampleAtNs && nowNs - pathSampleAtNs <= Self.captureWithinNs
        let excess = Double(smoothedMicroseconds) - Double(pathMicroseconds) - max(0, segmentMicroseconds)
        excessMicroseconds = fresh && excess.isFinite ? max(0, excess) : 0
    }

    /// The smoothed RTT less what of the excess must still be in it, µs.
    func adjusted(smoothedMicroseconds: UInt32, segmentsIn now: UInt32) -> UInt32 {
        guard excessMicroseconds > 0, now >= segmentsIn else { return smoothedMicroseconds }
        let left = excessMicroseconds * pow(Self.keptPerSample, Double(min(now - segmentsIn, 400)))
        return UInt32(max(1, Double(smoothedMicroseconds) - left))
    }
}

/// A background policy that measures its queueing delay against the path's RTT now and asks for
/// the drains that measure it (`PathRTTProbe`).
protocol PathRTTProbing {
    /// The drain period in base RTTs (0: no drains).
    var pathProbeRTTs: Double { get }
}
