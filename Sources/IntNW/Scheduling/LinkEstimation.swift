/// The link estimate background policies scale with, kept by each `BackgroundScheduler` per
/// interface: the interface's delivery rate (bytes acknowledged on every background-sending
/// connection there, summed across multisockets and processes through the shared segment),
/// measured over windows of at least two RTTs (and six segments' time at the estimate on a slow
/// link), and the estimate is the largest window rate of the
/// last `horizonNs` (a windowed maximum, as BBR's bandwidth filter). A delivery rate never exceeds
/// the link's, so every window is a lower bound; the maximum over a few seconds finds the link
/// whenever background filled it at some point, and forgets a rate the link no longer gives
/// within the horizon (or, with `fallMargin`, within two windows that both showed queueing:
/// the link was full at what they delivered; the next path sample undoes what the path's own
/// lengthening explains). Whether the bottleneck was busy cannot be read reliably from RTTs on a slow
/// link (a full segment's own transmission time and delayed ACKs look like queueing), so it is not
/// used: a policy that keeps background below the link must probe above its estimate for the
/// estimate to rise. delay-target does so through `LinkEvidence`: a window whose background was
/// held back by the policy's own window while the path showed no queueing adds a *probe* a step
/// above the largest measured rate (the step grows towards `gain` while the delivery rate
/// follows), which lasts until the policy sees queueing. When background resumes after the horizon
/// passed without a sample, the estimate the link last gave stays as such a probe: a connection
/// that starts again reads below the link in its first windows. Also: the oracle
/// schedule experiments give (`INTNW_BG_ORACLE`), and the record of estimates over time
/// (`INTNW_BG_ESTIMATE_LOG`).
#if canImport(Glibc)
import Glibc
#endif
import LinuxSupport
import Synchronization

/// One full TCP segment's payload on the testbed's paths, bytes: a 1,500-byte MTU less the IPv4
/// and TCP headers and the timestamp option (1500 - 20 - 20 - 12). The unit the background
/// policies size windows, grants and samples in; a path with a smaller MTU only makes these
/// bounds a little generous.
enum FullSegment {
    static let payloadBytes = 1448
}

/// What a policy's decision saw of the link, for the delivery-rate estimate to probe by.
public enum LinkEvidence: Sendable, Equatable {
    /// Nothing either way (background was not held by the policy's window, or the measured
    /// queueing delay was in between).
    case none
    /// The policy's own window held background back while the path showed no queueing: the
    /// delivery rate measured is the window's, not the link's, and the link may carry `gain` x
    /// more. `segmentStep` is the ratio by which one more full segment grows that window: the
    /// policy grants whole segments, so a probe that grows a window of two or three segments by
    /// a few percent changes nothing that is sent, and the delivery rate cannot follow it; a
    /// probe step below half a segment becomes a whole one (1: no such floor). `fillShare` is the
    /// share of the window a window-limited delivery rate shows (1: all of it): the policy grants
    /// whole segments only while at least one is free, so its bytes in flight average about a
    /// segment below the window, and the delivery rate reads that share of the estimate even
    /// where the link has room. Below 1 the next probe starts from the sample divided by it
    /// (what the window allowed) rather than from the sample, so that the estimate can rise on a
    /// window of a few segments.
    case headroom(gain: Double, segmentStep: Double = 1, fillShare: Double = 1)
    /// The path showed queueing: the link is full at what background sends now.
    case queueing
}

/// The delivery-rate estimate of one interface.
struct LinkRateTracker {
    /// Bytes per second; 0 until the first sample.
    private(set) var estimateBytesPerSecond = 0.0
    private(set) var samples = 0
    /// Probes added (a window that showed headroom and no queueing), and probes dropped when
    /// queueing showed (diagnostics and tests).
    private(set) var probes = 0
    private(set) var probesDropped = 0
    /// Measurements dropped before the horizon passed because two windows in a row that queued
    /// delivered less (`fallMargin`; diagnostics and tests).
    private(set) var superseded = 0
    /// Measurements the fall rule dropped that came back at the next path sample, which showed
    /// the path itself lengthened enough to explain their fall (diagnostics and tests).
    private(set) var restored = 0
    /// Above 1: two sampled windows in a row that both showed queueing drop the measurements of
    /// the horizon more than this many times the larger of the two (the policy's
    /// `delay-target:fall-margin`, `defaultFallMargin` by default; `fall=horizon`: 0). 0: off.
    /// Queueing evidence is only as good as the policy's base RTT: a path that lengthened since
    /// its latest drain reads as queueing too, and its windows deliver less (the real drive's
    /// cellular path: 1.3-1.5 x below the estimate, where the link's fall gave 1.7-2.1 x per step).
    var fallMargin = 0.0
    /// The latest sample (diagnostics): its window's bytes, length (ns) and rate, whether that
    /// window showed headroom (the largest gain, 0: none) or queueing, and the share of its
    /// decisions that saw queueing.
    private(set) var lastSample: (bytes: UInt64, ns: UInt64, rate: Double, headroomGain: Double, queueing: Bool,
                                  queueingShare: Double)?
    init(fallMargin: Double = 0) { self.fallMargin = fallMargin }

    /// Whether the estimate is a probe's, not a measurement's.
    var estimateIsProbe: Bool {
        guard let top = recent.max(by: { $0.rate < $1.rate }) else { return false }
        return top.probe
    }
    /// Window rates of the horizon: (end of window, rate, whether a probe rather than a measurement).
    private var recent: [(atNs: UInt64, rate: Double, probe: Bool)] = []
    private var windowStartNs: UInt64 = 0
    /// The latest observation (the window's start when none since).
    private var lastObservationNs: UInt64 = 0
    private var windowStartDelivered: UInt64 = 0
    private var observations = 0
    /// Whether the window waits for its first delivery to start its clock (after every restart).
    private var awaitingDelivery = true
    /// Whether a window since the latest sample delivered at least one full segment but too few
    /// for a sample (a slow link, rather than background idle or a dead link).
    private var slowWindowsSinceSample = false
    /// The largest probe gain the current window showed headroom with (0: none), and whether it
    /// showed queueing.
    private var headroomGain = 0.0
    /// The largest segment step the current window's headroom came with (1: none).
    private var headroomSegmentStep = 1.0
    /// The smallest fill share the current window's headroom came with (1: none).
    private var headroomFillShare = 1.0
    /// Whether the current window showed queueing at any decision.
    private var queueingSeen: Bool { queueingDecisions > 0 }
    /// The rate of the latest sample when its window showed queueing (nil: it did not, or the
    /// latest window was no sample).
    private var previousQueueingRate: Double?
    /// The decisions of the current window (evidence noted), and how many of them saw queueing.
    private var decisions = 0
    private var queueingDecisions = 0
    /// Measurements the fall rule dropped since the latest path sample, the rate the link was
    /// full at when it dropped them (the smallest, after several drops), and the path's RTT the
    /// tracker knew of then (ns; 0: none): the next path sample judges them (`pathSampled`).
    private var suspended: [(atNs: UInt64, rate: Double)] = []
    private var suspendedFull = 0.0
    private var suspendedPathNs: UInt64 = 0
    /// The latest path RTT a path probe measured, ns (0: none yet).
    private var pathNs: UInt64 = 0
    /// The step of the next probe above the largest measurement, as a share of the gain's excess
    /// over 1: a quarter after queueing (or a probe the delivery rate did not follow), doubled
    /// after each probe the delivery rate followed, up to the whole gain.
    private var probeStep = Self.firstProbeStep
    /// The largest measurement when the latest probe was made (0: no probe since queueing).
    private var measuredAtProbe = 0.0
    static let firstProbeStep = 0.25
    /// The `fallMargin` of `delay-target` (and of its `fall=queueing`): 300 ms windows on a full
    /// link read within about 15% of each other (the real drive's cellular uplink: 127-143 KB/s
    /// on a 140-170 KB/s link), and the path's own lengthening between drains 1.3-1.5 x below the
    /// estimate (1.25 until 8 Dec).
    static let defaultFallMargin = 1.5
    /// The smallest fill share (`LinkEvidence.headroom`) a probe starts from the window by: a
    /// window of four segments. Smaller windows are left to the segment floor.
    static let minimumFillShare = 0.75
    /// How long a window's rate counts, ns.
    static let horizonNs: UInt64 = 3_000_000_000

    /// Shortest sampling window for a link of minimum RTT `minRTTNs`: two RTTs, at least 300 ms
    /// (on a slow link shorter windows count too few segments: ACKs that arrive bunched would
    /// read as a rate above the link's).
    static func windowNs(minRTTNs: UInt64) -> UInt64 { max(2 * minRTTNs, 300_000_000) }

    /// How many full segments a window lasts for at the current estimate, at least: a link that
    /// delivers two thirds of the estimate still fills a sample (`minimumWindowBytes`, four).
    /// On a slow link the shortest window holds too few segments to be a sample at the rate
    /// background is allowed: the vehicular segment's cellular uplink (estimate 10-13 KB/s, a
    /// window of two segments per 270 ms round trip) delivered about 4.6 KB per 424 ms window,
    /// so samples came only from the windows that ran on once the horizon was empty, one every
    /// 3-4 s, and the estimate sat at 8-13 KB/s while the link rose to 18-28. Only links below
    /// about 29 KB/s (six segments in 300 ms) get longer windows.
    static let windowSegmentsAtEstimate = 6.0

    /// The window for a link of minimum RTT `minRTTNs` at estimate `bytesPerSecond` (0: none):
    /// `windowNs(minRTTNs:)`, or six segments' time at the estimate when that is longer.
    static func windowNs(minRTTNs: UInt64, estimateBytesPerSecond bytesPerSecond: Double) -> UInt64 {
        let base = windowNs(minRTTNs: minRTTNs)
        guard bytesPerSecond > 0, bytesPerSecond.isFinite else { return base }
        let segments = windowSegmentsAtEstimate * Double(FullSegment.payloadBytes) / bytesPerSecond * 1e9
        return max(base, UInt64(min(segments, 10e9)))
    }

    /// The fewest bytes a window must have delivered to be a sample: four full segments. A window
    /// of a few small messages measured the sender, not the link (a server session whose only
    /// background data were 40-byte acknowledgements read 635 B/s on a 625 KB/s WiFi uplink, and
    /// paced its acknowledgements by it).
    static let minimumWindowBytes = UInt64(4 * FullSegment.payloadBytes)

    /// How many shortest windows a window may run for while it has delivered fewer than
    /// `minimumWindowBytes` and the horizon holds no sample (the estimate is the prior, or older
    /// than the horizon): on a link slower than four segments per window it stays open until it
    /// holds four (a 9.7 KB/s cellular uplink delivers 2.9 KB in 300 ms; without this it never
    /// gave a sample and the estimate stayed at its 50 KB/s prior, 137% above the link, for the
    /// whole trial). Four windows: the slowest link measured is four segments in 1.2 s, 4.8 KB/s.
    /// Only then: a longer window averages over the moments background was held (foreground,
    /// path-probe drains), and once samples come, windows of the shortest length that hold four
    /// segments are what the windowed maximum needs (the vehicular segment's cellular estimate
    /// read 12-14 KB/s on a 14-22 KB/s link with every window allowed to run on, 16 without).
    static let longestWindowMultiple: UInt64 = 4

    /// One observation at a decision: the interface's cumulative delivered bytes. Returns whether
    /// a window ended with a sample.
    @discardableResult
    mutating func observe(nowNs: UInt64, deliveredBytes: UInt64, minRTTNs: UInt64) -> Bool {
        let shortest = Self.windowNs(minRTTNs: minRTTNs)
        let window = Self.windowNs(minRTTNs: minRTTNs, estimateBytesPerSecond: estimateBytesPerSecond)
        // A gap of more than the shortest window between decisions: background was idle, and the
        // window would measure the idle time, not the link. (A time before the latest observation
        // starts a new window too; the same time does not: a scheduling pass observes each of the
        // interface's connections with one clock reading.)
        guard windowStartNs != 0, nowNs >= lastObservationNs,
              nowNs - lastObservationNs <= shortest, deliveredBytes >= windowStartDelivered else {
            restart(nowNs, deliveredBytes)
            return false
        }
        lastObservationNs = nowNs
        if awaitingDelivery {
            // The window's clock starts at its first delivery, which it does not count: after a
            // restart (the first decision, an idle gap) the first acknowledgement comes a round
            // trip after the first bytes sent, and a window timed from the send measured that
            // empty pipe too (the vehicular trace's cellular uplink: 9 KB/s from the
            // connection's first second on a 13-14 KB/s link, the estimate for 3 s). Between
            // back-to-back windows it loses only the time to the next acknowledgement.
            if deliveredBytes > windowStartDelivered {
                windowStartNs = nowNs
                windowStartDelivered = deliveredBytes
                awaitingDelivery = false
            }
            return false
        }
        observations += 1
        let dt = nowNs - windowStartNs
        guard dt >= window else { return false }
        let bytes = deliveredBytes - windowStartDelivered
        // Too few bytes for a sample: the window runs on (a slow link), up to its longest.
        let unmeasured = recent.last.map { nowNs &- $0.atNs > Self.horizonNs } ?? true
        if bytes < Self.minimumWindowBytes && unmeasured && dt < Self.longestWindowMultiple * shortest { return false }
        defer { restart(nowNs, deliveredBytes) }
        guard observations >= 2, bytes >= Self.minimumWindowBytes else {
            if bytes >= FullSegment.payloadBytes { slowWindowsSinceSample = true }
            previousQueueingRate = nil
            return false
        }
        let rate = Double(bytes) / (Double(dt) / 1e9)
        let queueingShare = decisions > 0 ? Double(queueingDecisions) / Double(decisions) : 0
        lastSample = (bytes, dt, rate, headroomGain, queueingSeen, queueingShare)
        recent.append((nowNs, rate, false))
        recent.removeAll { nowNs &- $0.atNs > Self.horizonNs }
        // The first sample after the horizon passed without one (background idle, the network
        // gone) comes from a connection that starts again from a small congestion window and
        // reads below the link: the estimate the link last gave stays, as a probe, until
        // queueing shows or the horizon passes (the real drive's cellular uplink, idle for 60 s
        // while WiFi carried background, read 23 KB/s in its first window on a 139 KB/s link,
        // against 104 before; the estimate then took 2 s of probes to come back).
        // Not when windows since the last sample delivered between one and four segments: the
        // link got slower under background, it was not idle.
        let slowedUnderBackground = slowWindowsSinceSample
        slowWindowsSinceSample = false
        if unmeasured, samples > 0, !queueingSeen, !slowedUnderBackground, estimateBytesPerSecond > rate {
            recent.append((nowNs, estimateBytesPerSecond, true))
            probes += 1
        }
        samples += 1
        // A busy window (it was a sample) held back by the policy's window with no queueing
        // anywhere in it: the link may carry more than anything measured, so the estimate goes
        // one step above the largest measurement. Always relative to a measurement, so a probe
        // never builds on a probe that the delivery rate did not follow; the step grows while
        // the delivery rate follows (a link far above the estimate is found in a few windows)
        // and starts small otherwise (a link just above it is overshot by little).
        if headroomGain > 1, !queueingSeen {
            let measured = recent.filter { !$0.probe }.map(\.rate).max() ?? rate
            if measuredAtProbe > 0 {
                // The delivery rate followed the previous probe (a new largest measurement): the
                // link had room, take a larger step; otherwise start small again.
                probeStep = measured > measuredAtProbe * 1.02 ? min(1, probeStep * 2) : Self.firstProbeStep
            }
            // A step that adds less than half a segment to the window: one whole segment
            // instead, or the probe changes nothing that is sent (a window of two or three
            // segments). Larger windows keep the gain's step: a 6% probe on 3G's nine segments
            // already admits an extra segment about half the time.
            let gainStep = (headroomGain - 1) * probeStep
            let ratio = gainStep < (headroomSegmentStep - 1) / 2 ? headroomSegmentStep : 1 + gainStep
            // What the window allowed, when the policy says its window-limited delivery shows
            // only a share of it (`LinkEvidence.headroom`'s fill share), probed by the gain's
            // step; the segment floor stays on the measurement (both make up for whole segments,
            // and on a window of two or three segments the two together doubled the estimate:
            // the vehicular segment's cellular uplink, 13 KB/s probed to 24 on a 19-23 KB/s
            // link, queueing, and back to the 10-11 KB/s measured). Windows of fewer than four
            // segments (a share below `minimumFillShare`) keep the measurement alone. The
            // followed test stays on measurements.
            var probe = measured * ratio
            if headroomFillShare >= Self.minimumFillShare && headroomFillShare < 1 {
                probe = max(probe, rate / headroomFillShare * (1 + gainStep))
            }
            recent.append((nowNs, probe, true))
            measuredAtProbe = measured
            probes += 1
        }
        // Two windows in a row that both showed queueing were limited by the link, not by the
        // policy's window (if the base RTT is the path's: `fallMargin`): the link was full at
        // what they delivered, and a measurement well
        // above the larger of the two is a rate it no longer gives (the real drive's cellular
        // uplink fell from 140 to 33 KB/s in four seconds while windows that queued delivered
        // 66-84 and then 23-56 KB/s; the 3 s maximum held 139-143 KB/s, and background's window,
        // four times the link's, queued foreground behind it). Two windows, and the larger: one
        // window's delivery bunches, and a foreground burst that queued shares the link with
        // background for about one window.
        // The drop waits for no path sample (the link's fall queues foreground at once), but is
        // undone at the next one if the path lengthened enough to explain it (`pathSampled`).
        if fallMargin > 1, queueingSeen, let previous = previousQueueingRate {
            let full = max(previous, rate)
            let limit = full * fallMargin
            let noLongerGiven = { (r: (atNs: UInt64, rate: Double, probe: Bool)) in !r.probe && r.rate > limit }
            let dropped = recent.filter(noLongerGiven)
            if !dropped.isEmpty {
                recent.removeAll(where: noLongerGiven)
                superseded += dropped.count
                if suspended.isEmpty {
                    suspendedPathNs = pathNs
                    suspendedFull = full
                } else {
                    suspendedFull = min(suspendedFull, full)
                }
                suspended += dropped.map { ($0.atNs, $0.rate) }
            }
        }
        previousQueueingRate = queueingSeen ? rate : nil
        estimateBytesPerSecond = recent.map(\.rate).max() ?? rate
        return true
    }

    /// A path probe measured the path's RTT, `rttNs`. Measurements the fall rule dropped since
    /// the previous sample were read against the path's RTT then; if the path has lengthened by
    /// a factor L since, a window-limited delivery rate fell by L with no change in the link, so
    /// a dropped measurement within `fallMargin` x L x the rate the link was full at comes back
    /// (while it is within the horizon). The others stay dropped: the link fell. A sample that
    /// shows no lengthening confirms the whole drop. (The real drive's WiFi: its RTT went from
    /// 35 to 335 ms for a second, windows that queued against the 35 ms base delivered a tenth of
    /// the link, the fall rule dropped the measurements of the seconds before, and background on
    /// WiFi carried 21-88% of the link per second in the three seconds after the RTT came back,
    /// 64-94% without the rule.)
    mutating func pathSampled(rttNs: UInt64, nowNs: UInt64) {
        defer {
            pathNs = rttNs
            suspended.removeAll()
        }
        guard !suspended.isEmpty, suspendedPathNs > 0, rttNs > suspendedPathNs else { return }
        let lengthening = Double(rttNs) / Double(suspendedPathNs)
        let back = suspended.filter {
            nowNs >= $0.atNs && nowNs - $0.atNs <= Self.horizonNs && $0.rate <= suspendedFull * fallMargin * lengthening
        }
        guard !back.isEmpty else { return }
        recent += back.map { ($0.atNs, $0.rate, false) }
        recent.sort { $0.atNs < $1.atNs }
        restored += back.count
        if let top = recent.map(\.rate).max() { estimateBytesPerSecond = top }
    }

    /// What the latest decision saw of the link. Queueing drops every probe at once: the link is
    /// full at what background sends now, and the estimate falls back to the largest measured
    /// rate.
    mutating func note(_ evidence: LinkEvidence) {
        decisions += 1
        if evidence == .queueing { queueingDecisions += 1 }
        switch evidence {
        case .none:
            break
        case .headroom(let gain, let segmentStep, let fillShare):
            headroomGain = max(headroomGain, gain)
            if segmentStep.isFinite { headroomSegmentStep = max(headroomSegmentStep, segmentStep) }
            if fillShare.isFinite { headroomFillShare = min(headroomFillShare, max(0, min(1, fillShare))) }
        case .queueing:
            probeStep = Self.firstProbeStep
            measuredAtProbe = 0
            let before = recent.count
            recent.removeAll { $0.probe }
            if recent.count != before {
                probesDropped += before - recent.count
                if let m = recent.map(\.rate).max() { estimateBytesPerSecond = m }
            }
        }
    }

    private mutating func restart(_ nowNs: UInt64, _ delivered: UInt64) {
        windowStartNs = nowNs
        lastObservationNs = nowNs
        windowStartDelivered = delivered
        observations = 0
        awaitingDelivery = true
        headroomGain = 0
        headroomSegmentStep = 1
        headroomFillShare = 1
        decisions = 0
        queueingDecisions = 0
    }
}

/// The link capacity over time as the experiment's trace defines it (`INTNW_BG_ORACLE` names the
/// file): the "oracle" estimate, so that estimator error and policy effect can be told apart.
///
/// Format (text, one item per line, `#` comments):
///
///     start_ns <CLOCK_MONOTONIC ns of trace time 0>
///     link <interface> <t seconds> <up bytes/s> <down bytes/s> <rtt ms> <available 0|1>
///
/// `link` lines of one interface in increasing time; each holds until the next.
public struct OracleSchedule: Sendable, Equatable {
    public struct Point: Sendable, Equatable {
        public var seconds: Double
        public var upBytesPerSecond: Double
        public var downBytesPerSecond: Double
        public var rttMilliseconds: Double
        public var available: Bool
    }

    public var startNs: UInt64
    public var links: [String: [Point]]

    /// Largest file accepted, bytes.
    public static let maximumBytes = 4 << 20

    public static func parse(_ text: String) throws(IntNWError) -> OracleSchedule {
        var start: UInt64?
        var links: [String: [Point]] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.isEmpty { continue }
            func bad(_ why: String) -> IntNWError { .invalidArgument("oracle schedule line \(n + 1): \(why)") }
            switch f[0] {
            case "start_ns":
                guard f.count == 2, let v = UInt64(f[1]) else { throw bad("expected start_ns <ns>") }
                start = v
            case "link":
                guard f.count == 7, let t = Double(f[2]), let up = Double(f[3]), let down = Double(f[4]),
                      let rtt = Double(f[5]), let av = Int(f[6]), t.isFinite, t >= 0, up.isFinite, up >= 0,
                      down.isFinite, down >= 0, rtt.isFinite, rtt >= 0, av == 0 || av == 1 else {
                    throw bad("expected link <interface> <t s> <up B/s> <down B/s> <rtt ms> <0|1>")
                }
                let name = String(f[1])
                if let last = links[name]?.last, last.seconds > t { throw bad("time goes back for \(name)") }
                links[name, default: []].append(Point(seconds: t, upBytesPerSecond: up, downBytesPerSecond: down,
                                                      rttMilliseconds: rtt, available: av == 1))
            default:
                throw bad("unknown item '\(f[0])'")
            }
        }
        guard let start else { throw .invalidArgument("oracle schedule: no start_ns line") }
        return OracleSchedule(startNs: start, links: links)
    }

    /// The point of `interface` at monotonic `nowNs` (nil: unknown interface, or before time 0).
    public func point(interface: String, nowNs: UInt64) -> Point? {
        guard let pts = links[interface], nowNs >= startNs else { return nil }
        let t = Double(nowNs - startNs) / 1e9
        var lo = 0, hi = pts.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pts[mid].seconds <= t { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? nil : pts[lo - 1]
    }

    /// The schedule `INTNW_BG_ORACLE` names, read once per process (nil: unset, or unreadable: then
    /// `problem` says why, once).
    static func fromEnvironment() -> (OracleSchedule?, problem: String?) {
        loaded.withLock { state in
            if let state { return state }
            guard let raw = getenv("INTNW_BG_ORACLE"), !String(cString: raw).isEmpty else {
                state = (nil, nil)
                return (nil, nil)
            }
            let path = String(cString: raw)
            let result: (OracleSchedule?, problem: String?)
            do {
                result = (try parse(try readSmallFile(path, limit: maximumBytes)), nil)
            } catch {
                result = (nil, "INTNW_BG_ORACLE \(path): \(error); background policies use the measured estimate")
            }
            state = result
            return result
        }
    }

    private static let loaded = Mutex<(OracleSchedule?, problem: String?)?>(nil)
}

/// Reads a whole file of at most `limit` bytes.
func readSmallFile(_ path: String, limit: Int) throws(IntNWError) -> String {
    let fd: Int32
    switch Syscall.retrying({ open(path, O_RDONLY | O_CLOEXEC) }) {
    case .success(let f): fd = f
    case .failure(let e): throw .invalidArgument("cannot open: \(e)")
    }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n: Int
        switch Syscall.retrying({ buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }) {
        case .success(let r): n = r
        case .failure(let e): throw .invalidArgument("read failed: \(e)")
        }
        if n == 0 { break }
        bytes += buf[0..<n]
        if bytes.count > limit { throw .invalidArgument("larger than \(limit) bytes") }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The background link estimates over time, as JSON lines, when `INTNW_BG_ESTIMATE_LOG` names a
/// file (`%p` becomes the process id): `{"t_ns":…,"side":"client","interface":"…","bw_Bps":…,
/// "rtt_ms":…,"source":"tracked|probed|measured|prior|oracle"}` (`probed`: the
/// delivery-rate estimate is a probe above the measurements; `rtt_ms`: the kernel's minimum RTT),
/// with `"path_rtt_ms":…` when a path probe has measured the path's RTT (`PathRTTProbe`), at most
/// every 100 ms per interface and multisocket, while background data is being scheduled.
final class EstimateRecorder: Sendable {
    static let periodNs: UInt64 = 100_000_000
    /// The log's descriptor; holding the mutex keeps each line's write whole among threads.
    private let fd: Mutex<Int32>

    private init(fd: Int32) { self.fd = Mutex(fd) }

    static let shared: EstimateRecorder? = {
        guard let raw = getenv("INTNW_BG_ESTIMATE_LOG") else { return nil }
        let pattern = String(cString: raw)
        guard !pattern.isEmpty else { return nil }
        let path = pattern.split(separator: "%p", omittingEmptySubsequences: false).joined(separator: String(getpid()))
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        return fd >= 0 ? EstimateRecorder(fd: fd) : nil
    }()

    func record(nowNs: UInt64, side: String, interface: String, bandwidthBytesPerSecond: Double, rttMilliseconds: Double,
                pathRTTMilliseconds: Double? = nil, source: String) {
        let path = pathRTTMilliseconds.map { ",\"path_rtt_ms\":\(Double(Int($0 * 10)) / 10)" } ?? ""
        let line = "{\"t_ns\":\(nowNs),\"side\":\"\(side)\",\"interface\":\"\(interface.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })\",\"bw_Bps\":\(Int(bandwidthBytesPerSecond)),\"rtt_ms\":\(Double(Int(rttMilliseconds * 10)) / 10)\(path),\"source\":\"\(source)\"}\n"
        fd.withLock { fd in _ = Array(line.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
    }
}
