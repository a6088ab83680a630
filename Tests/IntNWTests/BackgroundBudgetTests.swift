import Testing
import Foundation
@testable import IntNW

@Suite("Background budget and link estimation")
struct BackgroundBudgetTests {
    let bench = PolicyBench()

    @Test("the note's policies are still selectable by name; only delay-target scales with the delivery-rate estimate")
    func policiesAndEstimates() {
        unsetenv(BackgroundPolicyName.environmentVariable)
        // The default is delay-target (the note's anticipatory starves BG when FG talks every second).
        #expect(BackgroundPolicies.fallback == .delayTarget)
        #expect(BackgroundPolicies.fromEnvironment() is DelayTargetBackgroundPolicy)
        #expect(MultiSocketOptions().backgroundPolicy is DelayTargetBackgroundPolicy)
        #expect(BackgroundPolicyName.anticipatory.makePolicy() is AnticipatoryBackgroundPolicy)
        #expect(BackgroundPolicyName.trickle.makePolicy() is TrickleBackgroundPolicy)
        // Only delay-target scales with the delivery-rate estimate; the note's policies keep the
        // general estimate they are defined with.
        for n in BackgroundPolicyName.allCases {
            let p = n.makePolicy() as? any ExplainedBackgroundPolicy
            #expect(p?.scalesWithDeliveryRate == (n == .delayTarget), "\(n)")
        }
    }

    @Test("delay-target's window is the interface's: BG other connections and processes have in the kernel counts against it")
    func delayTargetInterfaceWindow() {
        var unpaced = DelayTargetBackgroundPolicy.Parameters()
        unpaced.pacingGain = 0  // the window alone (pacing would cap each grant at one segment)
        let p = DelayTargetBackgroundPolicy(parameters: unpaced)
        // 64 KB/s x (200 + 22.625 + 10) ms = 14,888 bytes.
        var c = bench.context(now: 1, lastFG: nil, unacked: 4_000, srttMs: 200, minRTTMs: 200)
        #expect(p.verdict(c).decision == .send(maxBytes: 10_888))
        c.backgroundElsewhereBytes = 6_000
        #expect(p.verdict(c).decision == .send(maxBytes: 4_888))
        c.backgroundElsewhereBytes = 10_000  // 888 bytes of room: less than a segment
        #expect(p.verdict(c).reason == .queueingDelay)
        // The note's policies ignore it: anticipatory and trickle decide per connection as defined.
        let a = AnticipatoryBackgroundPolicy()
        var ac = bench.context(now: 10, lastFG: 1, unacked: 0)
        ac.backgroundElsewhereBytes = 1 << 30
        #expect(a.verdict(ac).decision == .send(maxBytes: 44_000))  // 11 idle periods x 4000 B
        let t = TrickleBackgroundPolicy()
        var tc = bench.context(now: 1.1, lastFG: 1, unacked: 0)
        tc.backgroundElsewhereBytes = 1 << 30
        #expect(t.verdict(tc).decision == .send(maxBytes: 3_200))
    }

    @Test("delivery-rate tracking: the largest window rate of the last 3 s; a slower link is followed once the horizon passes; windows of a few small messages are no sample")
    func linkRateTracker() {
        var t = LinkRateTracker()
        let ms: UInt64 = 1_000_000
        var now: UInt64 = 1_000 * ms
        var delivered: UInt64 = 0
        // Observations every 10 ms; windows of 2 x 200 ms.
        func run(_ rate: Double, seconds: Double) {
            for _ in 0..<Int(seconds * 100) {
                now += 10 * ms
                delivered += UInt64(rate / 100)
                t.observe(nowNs: now, deliveredBytes: delivered, minRTTNs: 200 * ms)
            }
        }
        run(64_000, seconds: 2)
        #expect(abs(t.estimateBytesPerSecond - 64_000) < 64_000 * 0.02)
        // Background held back for a while (FG): lower rates do not lower the estimate...
        run(20_000, seconds: 2)
        #expect(abs(t.estimateBytesPerSecond - 64_000) < 64_000 * 0.02)
        // ...until the horizon has passed without a faster window: the link got slower.
        run(32_000, seconds: 2)
        #expect(abs(t.estimateBytesPerSecond - 32_000) < 32_000 * 0.02)
        // A faster window raises it at once (the first whole window at that rate).
        run(48_000, seconds: 0.9)
        #expect(abs(t.estimateBytesPerSecond - 48_000) < 48_000 * 0.02)
        // A counter that goes back (a process left) or a gap without decisions gives no sample.
        let n = t.samples
        // (A time before the latest observation, but after the window's start, neither.)
        #expect(!t.observe(nowNs: now - 5 * ms, deliveredBytes: delivered, minRTTNs: 200 * ms) && t.samples == n)
        let back = t.observe(nowNs: now + 10 * ms, deliveredBytes: 0, minRTTNs: 200 * ms)
        let gap = t.observe(nowNs: now + 5_000 * ms, deliveredBytes: 1_000_000, minRTTNs: 200 * ms)
        #expect(!back && !gap && t.samples == n)
        // A window's clock starts at its first delivery: the first acknowledgement a round trip
        // after the connection's first bytes (nothing delivered for 200 ms, then 13 KB/s) is not
        // read as a slower link (timed from the first decision the window would read 9.1 KB/s:
        // four segments in 0.64 s, 0.2 s of it the empty pipe).
        var fresh = LinkRateTracker()
        for k in 1...160 {
            let at = UInt64(k) * 10 * ms
            fresh.observe(nowNs: 1_000 * ms + at, deliveredBytes: at <= 200 * ms ? 0 : UInt64(13_000 * Double(at - 200 * ms) / 1e9),
                          minRTTNs: 200 * ms)
        }
        #expect(fresh.samples >= 1 && abs(fresh.estimateBytesPerSecond - 13_000) < 13_000 * 0.05)
        // Two connections on the interface, observed in each pass with one clock reading: the
        // second observation at the window's first delivery neither restarts it nor keeps it
        // from ending (350 KB/s, the windows of a 25 ms path).
        var pair = LinkRateTracker()
        for k in 1...100 {
            for _ in 0..<2 {
                pair.observe(nowNs: 1_000 * ms + UInt64(k) * 10 * ms, deliveredBytes: UInt64(k) * 3_500, minRTTNs: 25 * ms)
            }
        }
        #expect(pair.samples >= 2 && abs(pair.estimateBytesPerSecond - 350_000) < 350_000 * 0.05)
        // A sender of small messages (acknowledgements: 254 B in 400 ms) measures itself, not the
        // link: no sample, the estimate stays where the last real window put it.
        var acks = LinkRateTracker()
        var d: UInt64 = 0
        for k in 1...300 {
            d += k % 16 == 0 ? 40 : 0
            acks.observe(nowNs: 1_000 * ms + UInt64(k) * 10 * ms, deliveredBytes: d, minRTTNs: 20 * ms)
        }
        #expect(acks.samples == 0 && acks.estimateBytesPerSecond == 0)
        // Without a sample in the horizon, a link slower than four segments per window (9.7 KB/s:
        // 2.9 KB in a 300 ms window) is measured over a longer window; one slower than four
        // segments in four windows (3 KB/s) is not.
        func slow(_ rate: Double) -> LinkRateTracker {
            var s = LinkRateTracker()
            for k in 1...300 {
                s.observe(nowNs: 1_000 * ms + UInt64(k) * 10 * ms, deliveredBytes: UInt64(rate * Double(k) / 100),
                          minRTTNs: 100 * ms)
            }
            return s
        }
        let crawl = slow(9_700)
        #expect(crawl.samples >= 1 && abs(crawl.estimateBytesPerSecond - 9_700) < 9_700 * 0.05)
        #expect(slow(3_000).samples == 0)
        // With a sample in the horizon, windows keep their shortest length: a slower stretch
        // after it gives no sample, and the estimate stays the faster window's until the horizon
        // passes; then the slow link is measured over longer windows.
        var after = LinkRateTracker()
        var at: UInt64 = 1_000 * ms, bytes: UInt64 = 0
        func step(_ rate: Double, _ seconds: Double) {
            for _ in 0..<Int(seconds * 100) {
                at += 10 * ms
                bytes += UInt64(rate / 100)
                after.observe(nowNs: at, deliveredBytes: bytes, minRTTNs: 100 * ms)
            }
        }
        step(40_000, 1)
        let fast = after.samples
        step(9_700, 2.5)
        #expect(fast >= 2 && after.samples == fast && abs(after.estimateBytesPerSecond - 40_000) < 40_000 * 0.05)
        step(9_700, 3)
        #expect(after.samples > fast && abs(after.estimateBytesPerSecond - 9_700) < 9_700 * 0.05)
    }

    @Test("delivery-rate tracking on a slow link: windows last six segments at the estimate, so a two-segment window per round trip is sampled and probed without waiting for the horizon")
    func linkRateTrackerSlowLink() throws {
        let ms: UInt64 = 1_000_000
        // The vehicular segment's cellular uplink: a 212 ms path, background held to two
        // segments per 266 ms round trip (10.9 KB/s), acknowledged a pair at a time, every
        // decision showing headroom (a window of two segments: one more is a step of 1.5).
        var t = LinkRateTracker()
        var now: UInt64 = 1_000 * ms, delivered: UInt64 = 0
        var sampleTimes: [UInt64] = []
        for k in 1...500 {
            now += 10 * ms
            if k % 27 == 0 { delivered += 2 * 1_448 }
            if t.observe(nowNs: now, deliveredBytes: delivered, minRTTNs: 212 * ms) { sampleTimes.append(now) }
            t.note(.headroom(gain: 1.25, segmentStep: 1.5))
        }
        // The first sample runs on (no estimate yet); after it, windows of 6 x 1,448 B at about
        // 11 KB/s (0.8 s) each hold four segments or more. With windows of two round trips (424
        // ms, about 4.3 KB) the next sample waited for the 3 s horizon to pass.
        #expect(sampleTimes.count >= 4)
        let gaps = zip(sampleTimes.dropFirst(), sampleTimes).map { Double($0 - $1) / 1e9 }
        #expect(gaps.allSatisfy { $0 < 1.5 })
        // Each such window held background back without queueing: the estimate is a probe a
        // segment's step above the 10.9 KB/s measured.
        #expect(t.estimateIsProbe && t.estimateBytesPerSecond > 10_900 * 1.4 && t.estimateBytesPerSecond < 10_900 * 1.6)
        // The latest sample, as the debug log reports it: its rate is its bytes over its length,
        // a measurement (below the probed estimate) from a window with headroom and no queueing.
        let last = try #require(t.lastSample)
        #expect(abs(last.rate - Double(last.bytes) / (Double(last.ns) / 1e9)) < 1e-6 && last.bytes >= 4 * 1_448)
        #expect(last.rate < t.estimateBytesPerSecond && last.headroomGain == 1.25 && !last.queueing)
        // A fast link keeps the shortest window (two RTTs, 300 ms at least).
        #expect(LinkRateTracker.windowNs(minRTTNs: 50 * ms, estimateBytesPerSecond: 350_000) == 300 * ms)
        #expect(LinkRateTracker.windowNs(minRTTNs: 50 * ms, estimateBytesPerSecond: 0) == 300 * ms)
        #expect(LinkRateTracker.windowNs(minRTTNs: 212 * ms, estimateBytesPerSecond: 10_000) == 868_800 * 1_000)
    }

    @Test("delivery-rate probing: a window held by the policy without queueing raises the estimate a step above the largest measurement, never on a probe alone; the step grows while the delivery rate follows; queueing drops every probe")
    func linkRateTrackerProbes() {
        let ms: UInt64 = 1_000_000
        var t = LinkRateTracker()
        var now: UInt64 = 1_000 * ms
        var delivered: UInt64 = 0
        // Observations every 10 ms on a 50 ms path (windows of 300 ms), each with `evidence`.
        func run(_ rate: Double, seconds: Double, _ evidence: LinkEvidence) {
            for _ in 0..<Int((seconds * 100).rounded()) {
                now += 10 * ms
                delivered += UInt64(rate / 100)
                t.observe(nowNs: now, deliveredBytes: delivered, minRTTNs: 50 * ms)
                t.note(evidence)
            }
        }
        func near(_ a: Double, _ b: Double) -> Bool { abs(a - b) < b * 0.02 }
        // Without evidence the estimate is the delivery rate, as before.
        run(200_000, seconds: 1, .none)
        #expect(near(t.estimateBytesPerSecond, 200_000) && t.probes == 0 && !t.estimateIsProbe)
        // Held by the window, no queueing: a first small step (a quarter of the gain's 25%), and
        // however long it lasts no more while the delivery rate does not follow.
        run(200_000, seconds: 1.5, .headroom(gain: 1.25))
        #expect(near(t.estimateBytesPerSecond, 212_500) && t.probes >= 3 && t.estimateIsProbe)
        // A delivery rate that follows each probe (the link has room): the step doubles each
        // window up to the whole gain, and the estimate more than doubles in eight windows.
        let start = t.estimateBytesPerSecond
        var ratios: [Double] = []
        for _ in 0..<240 {
            let before = t.estimateBytesPerSecond
            run(before, seconds: 0.01, .headroom(gain: 1.25))
            if t.estimateBytesPerSecond != before { ratios.append(t.estimateBytesPerSecond / before) }
        }
        #expect(ratios.count >= 6)
        #expect(t.estimateBytesPerSecond > 2 * start)
        #expect(ratios.allSatisfy { $0 <= 1.25 + 1e-9 } && ratios.suffix(3).allSatisfy { $0 > 1.2 })
        // Queueing shows: every probe goes at once, the estimate is the largest measurement.
        let measured = t.estimateBytesPerSecond / ratios.last!
        t.note(.queueing)
        #expect(near(t.estimateBytesPerSecond, measured) && !t.estimateIsProbe && t.probesDropped >= 4)
        // A window with headroom at some decisions and queueing at another is no probe.
        let before = t.probes
        run(measured, seconds: 0.7, .headroom(gain: 1.25))
        let afterHeadroom = t.probes
        for k in 0..<60 {
            now += 10 * ms
            delivered += UInt64(measured / 100)
            t.observe(nowNs: now, deliveredBytes: delivered, minRTTNs: 50 * ms)
            t.note(k % 20 == 10 ? .queueing : .headroom(gain: 1.25))
        }
        #expect(afterHeadroom > before && t.probes == afterHeadroom && !t.estimateIsProbe)
        // The first sample after the horizon passed without one (background idle 10 s; the
        // connection starts again slowly): the estimate the link last gave stays as a probe, until
        // queueing shows.
        func resumed(firstWindow evidence: LinkEvidence) -> LinkRateTracker {
            var r = LinkRateTracker()
            var at: UInt64 = 1_000 * ms, bytes: UInt64 = 0
            for (rate, seconds) in [(100_000.0, 1.0), (25_000, 0.7)] {
                if rate < 100_000 { at += 10_000 * ms }
                for _ in 0..<Int(seconds * 100) {
                    at += 10 * ms
                    bytes += UInt64(rate / 100)
                    r.observe(nowNs: at, deliveredBytes: bytes, minRTTNs: 50 * ms)
                    if rate < 100_000 { r.note(evidence) }
                }
            }
            return r
        }
        var back = resumed(firstWindow: .none)
        #expect(near(back.estimateBytesPerSecond, 100_000) && back.estimateIsProbe)
        back.note(.queueing)
        #expect(near(back.estimateBytesPerSecond, 25_000) && !back.estimateIsProbe)
        // Not when that first window showed queueing: the link is full at what it delivered.
        let full = resumed(firstWindow: .queueing)
        #expect(near(full.estimateBytesPerSecond, 25_000) && !full.estimateIsProbe)
        // A second of decisions every 10 ms, each delivering `bytesPer10Ms` and noting `evidence`.
        func held(bytesPer10Ms: UInt64, minRTTMs: UInt64, _ evidence: LinkEvidence) -> LinkRateTracker {
            var t = LinkRateTracker()
            for k in 1...100 {
                t.observe(nowNs: 1_000 * ms + UInt64(k) * 10 * ms, deliveredBytes: UInt64(k) * bytesPer10Ms, minRTTNs: minRTTMs * ms)
                t.note(evidence)
            }
            return t
        }
        // Headroom in a window that delivered too little to be a sample (background ran dry) is
        // no probe either.
        let idle = held(bytesPer10Ms: 5, minRTTMs: 50, .headroom(gain: 1.25))
        #expect(idle.probes == 0 && idle.estimateBytesPerSecond == 0)
        // A window of a few segments: the probe adds at least one segment to it (a segment step
        // of 1.5 on 24 KB/s: 36 KB/s, where the gain's first step would have been 25.5 KB/s).
        let few = held(bytesPer10Ms: 240, minRTTMs: 100, .headroom(gain: 1.25, segmentStep: 1.5))
        #expect(few.probes >= 1 && few.estimateIsProbe && abs(few.estimateBytesPerSecond - 36_000) < 36_000 * 0.02)
        // The debug log's queueing share: of the sampled window's decisions, those that saw queueing.
        #expect(few.lastSample?.queueingShare == 0 && held(bytesPer10Ms: 240, minRTTMs: 100, .queueing).lastSample?.queueingShare == 1)
        // A window of about nine segments (3G): the gain's first step (6.25%) is more than half a
        // segment (5.5%), and stays.
        let nine = held(bytesPer10Ms: 580, minRTTMs: 100, .headroom(gain: 1.25, segmentStep: 1.11))
        #expect(nine.probes >= 1 && abs(nine.estimateBytesPerSecond - 58_000 * 1.0625) < 58_000 * 0.01)
        // With a fill share (the policy's probe-from=window), the probe starts from what the window
        // allowed: 58 KB/s delivered at a share of 0.9 is a 64.4 KB/s window, probed at 1.0625 x that.
        let filled = held(bytesPer10Ms: 580, minRTTMs: 100, .headroom(gain: 1.25, segmentStep: 1.11, fillShare: 0.9))
        #expect(filled.probes >= 1 && abs(filled.estimateBytesPerSecond - 58_000 / 0.9 * 1.0625) < 58_000 * 0.01)
        // A share below three quarters (a window of fewer than four segments) is left to the
        // segment floor: the probe starts from the measurement, as without a share.
        let few2 = held(bytesPer10Ms: 240, minRTTMs: 100, .headroom(gain: 1.25, segmentStep: 1.5, fillShare: 0.5))
        #expect(abs(few2.estimateBytesPerSecond - 36_000) < 36_000 * 0.02)
        // Seven segments (the real drive's cellular window): the segment floor (1.15 x the
        // measurement) and the window's share (0.85) both apply; the larger probe wins: 24 KB/s
        // at a share of 0.85 is a 28.2 KB/s window, probed at 1.0625 x that (30 KB/s, against
        // 27.6 from the floor).
        let seven = held(bytesPer10Ms: 240, minRTTMs: 100, .headroom(gain: 1.25, segmentStep: 1.15, fillShare: 0.85))
        #expect(abs(seven.estimateBytesPerSecond - 24_000 / 0.85 * 1.0625) < 24_000 * 0.02)
    }

    /// Decisions every 10 ms on a 50 ms path (windows of 300 ms) until the tracker's next sample,
    /// each noting `evidence` and delivering at `rate` (the evidence before the observation, so
    /// that the window that ends has seen it all and the next none).
    private static func window(_ t: inout LinkRateTracker, _ rate: Double, _ evidence: LinkEvidence,
                               clock: inout (now: UInt64, delivered: UInt64)) {
        let ms: UInt64 = 1_000_000
        let n = t.samples
        while t.samples == n {
            clock.now += 10 * ms
            clock.delivered += UInt64(rate / 100)
            t.note(evidence)
            t.observe(nowNs: clock.now, deliveredBytes: clock.delivered, minRTTNs: 50 * ms)
        }
    }

    @Test("a link that falls (fall=queueing): two windows in a row that queued and delivered less than 1 / the margin drop the larger measurements before the horizon passes; one such window, windows without queueing, a full link's spread, or fall=horizon do not")
    func linkRateTrackerFollowsFalls() throws {
        let ms: UInt64 = 1_000_000
        func near(_ a: Double, _ b: Double) -> Bool { abs(a - b) < b * 0.03 }
        func tracker() -> LinkRateTracker {
            var t = LinkRateTracker()
            t.fallMargin = 1.25
            return t
        }
        var clock: (now: UInt64, delivered: UInt64) = (1_000 * ms, 0)
        var t = tracker()
        for _ in 0..<3 { Self.window(&t, 140_000, .none, clock: &clock) }
        #expect(near(t.estimateBytesPerSecond, 140_000))
        // Background held back without queueing (foreground, the policy's window): as before.
        for _ in 0..<2 { Self.window(&t, 80_000, .none, clock: &clock) }
        #expect(near(t.estimateBytesPerSecond, 140_000) && t.superseded == 0)
        // One window that queued at 80 KB/s: not yet (one window's delivery bunches).
        Self.window(&t, 80_000, .queueing, clock: &clock)
        #expect(near(t.estimateBytesPerSecond, 140_000) && t.superseded == 0)
        // The second in a row: the link was full at 80 KB/s, 140 is a rate it no longer gives.
        Self.window(&t, 75_000, .queueing, clock: &clock)
        #expect(near(t.estimateBytesPerSecond, 80_000) && t.superseded >= 1)
        // A tracker without a margin (`fall=horizon`): the horizon alone.
        var plain = LinkRateTracker()
        for _ in 0..<3 { Self.window(&plain, 140_000, .none, clock: &clock) }
        for _ in 0..<3 { Self.window(&plain, 80_000, .queueing, clock: &clock) }
        #expect(near(plain.estimateBytesPerSecond, 140_000) && plain.superseded == 0)
        // Queueing windows that alternate with windows that did not queue keep the windowed maximum.
        var alternating = tracker()
        for _ in 0..<3 { Self.window(&alternating, 140_000, .none, clock: &clock) }
        for k in 0..<6 { Self.window(&alternating, 80_000, k % 2 == 0 ? .queueing : .none, clock: &clock) }
        #expect(near(alternating.estimateBytesPerSecond, 140_000) && alternating.superseded == 0)
        // A full link's windows spread by 15%: the largest stays the estimate.
        var spread = tracker()
        for rate in [140_000.0, 120_000, 125_000, 119_000] { Self.window(&spread, rate, .queueing, clock: &clock) }
        #expect(near(spread.estimateBytesPerSecond, 140_000) && spread.superseded == 0)
        // The policy's options: on by default at 1.5 (since 8 Dec), `fall=horizon` turns it off.
        let on = try #require(try BackgroundPolicies.parse("delay-target:fall=queueing") as? DelayTargetBackgroundPolicy)
        let plainDefault = try #require(try BackgroundPolicies.parse("delay-target") as? DelayTargetBackgroundPolicy)
        let off = try #require(try BackgroundPolicies.parse("delay-target:fall=horizon") as? DelayTargetBackgroundPolicy)
        let tight = try #require(try BackgroundPolicies.parse("delay-target:fall-margin=1.25") as? DelayTargetBackgroundPolicy)
        #expect(on.estimateFallMargin == 1.5 && plainDefault.estimateFallMargin == 1.5 && off.estimateFallMargin == 0
                && tight.estimateFallMargin == 1.25)
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:fall=sometimes") }
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:fall=horizon,fall-margin=1.5") }
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:fall-margin=1") }
        // A wider margin lets a path's own lengthening (1.4 x below the estimate) pass and still
        // follows a fall (2 x).
        var lenient = LinkRateTracker()
        lenient.fallMargin = 1.5
        for _ in 0..<3 { Self.window(&lenient, 140_000, .none, clock: &clock) }
        for _ in 0..<2 { Self.window(&lenient, 100_000, .queueing, clock: &clock) }
        #expect(near(lenient.estimateBytesPerSecond, 140_000) && lenient.superseded == 0)
        for _ in 0..<2 { Self.window(&lenient, 70_000, .queueing, clock: &clock) }
        #expect(near(lenient.estimateBytesPerSecond, 100_000) && lenient.superseded >= 1)
    }

    @Test("fall=queueing and the path probe: measurements dropped while the path itself lengthened come back at the next path sample (within the horizon); a sample that shows too little lengthening, or none, confirms the drop")
    func fallUndoneByThePathsLengthening() {
        let ms: UInt64 = 1_000_000
        func near(_ a: Double, _ b: Double) -> Bool { abs(a - b) < b * 0.03 }
        var clock: (now: UInt64, delivered: UInt64) = (1_000 * ms, 0)
        // Two queueing windows at a tenth of the 300 KB/s measured before, on a path sampled at
        // 35 ms: dropped at once.
        func fallen() -> LinkRateTracker {
            var t = LinkRateTracker(fallMargin: 1.5)
            t.pathSampled(rttNs: 35 * ms, nowNs: clock.now)
            for _ in 0..<3 { Self.window(&t, 300_000, .none, clock: &clock) }
            for _ in 0..<2 { Self.window(&t, 30_000, .queueing, clock: &clock) }
            #expect(near(t.estimateBytesPerSecond, 30_000) && t.superseded >= 1)
            return t
        }
        // The next sample: the path is 335 ms (9.6 x). A window-limited rate falls that much with
        // no change in the link: the measurements come back.
        var spike = fallen()
        spike.pathSampled(rttNs: 335 * ms, nowNs: clock.now + 10 * ms)
        #expect(near(spike.estimateBytesPerSecond, 300_000) && spike.restored >= 1)
        // The same path: the link fell; the drop stands, also at later samples.
        var fall = fallen()
        fall.pathSampled(rttNs: 36 * ms, nowNs: clock.now + 10 * ms)
        #expect(near(fall.estimateBytesPerSecond, 30_000) && fall.restored == 0)
        fall.pathSampled(rttNs: 335 * ms, nowNs: clock.now + 20 * ms)
        #expect(near(fall.estimateBytesPerSecond, 30_000) && fall.restored == 0)
        // Lengthened 1.5 x: explains a fall to 30_000 x 1.5 x 1.5 = 67.5 KB/s, not to a tenth.
        var little = fallen()
        little.pathSampled(rttNs: 52 * ms, nowNs: clock.now + 10 * ms)
        #expect(near(little.estimateBytesPerSecond, 30_000) && little.restored == 0)
        // Explained, but the sample came after the horizon: the measurements are too old to count.
        var late = fallen()
        late.pathSampled(rttNs: 335 * ms, nowNs: clock.now + LinkRateTracker.horizonNs + 1_000 * ms)
        #expect(near(late.estimateBytesPerSecond, 30_000) && late.restored == 0)
        // No path sample before the drop: nothing to judge a lengthening by.
        var unknown = LinkRateTracker(fallMargin: 1.5)
        for _ in 0..<3 { Self.window(&unknown, 300_000, .none, clock: &clock) }
        for _ in 0..<2 { Self.window(&unknown, 30_000, .queueing, clock: &clock) }
        unknown.pathSampled(rttNs: 335 * ms, nowNs: clock.now + 10 * ms)
        #expect(near(unknown.estimateBytesPerSecond, 30_000) && unknown.restored == 0)
    }

    @Test("A window-limited delivery rate that shows 85% of the window: probes from the window find a 145 KB/s link, probes from the delivery rate do not")
    func probesFromTheWindowFindTheLink() {
        let ms: UInt64 = 1_000_000
        let capacity = 145_000.0, segment = 1448.0
        // A model of delay-target on the real drive's cellular uplink (7 Dec, 74.8-77.0 s): the
        // window is the estimate x (base RTT 84 ms + 10 ms target) plus a segment's transmission
        // at the estimate; the bytes in flight average 1.3 segments below it (the grant rule);
        // the round trip is the base, a segment's transmission at the link and 8 ms of delayed
        // acknowledgements, plus any queue. At an 88 KB/s estimate the delivery rate is 77 KB/s
        // (measured: 75, 7.8 KB in flight of a 9.7 KB window). The policy reports queueing from
        // 10 ms over the base less a segment at the estimate.
        func run(fromWindow: Bool) -> (median: Double, samples: Int) {
            var t = LinkRateTracker()
            var delivered: UInt64 = 0
            var estimates: [Double] = []
            for k in 1...3_000 {
                let e = t.estimateBytesPerSecond > 0 ? t.estimateBytesPerSecond : 50_000
                let window = max(2 * segment, e * (0.084 + 0.010) + segment)
                let inFlight = window - 1.3 * segment
                let unqueued = 0.084 + segment / capacity + 0.008
                let rtt = unqueued + max(0, inFlight - capacity * unqueued) / capacity
                delivered += UInt64(min(capacity, inFlight / rtt) / 100)
                t.observe(nowNs: 1_000 * ms + UInt64(k) * 10 * ms, deliveredBytes: delivered, minRTTNs: 84 * ms)
                if rtt - 0.084 - segment / e >= 0.010 {
                    t.note(.queueing)
                } else {
                    t.note(.headroom(gain: 1.25, segmentStep: 1 + segment / window, fillShare: fromWindow ? 1 - segment / window : 1))
                }
                if k > 1_000 { estimates.append(t.estimateBytesPerSecond) }
            }
            return (estimates.sorted()[estimates.count / 2], t.samples)
        }
        let window = run(fromWindow: true), measured = run(fromWindow: false)
        #expect(window.samples > 20 && measured.samples > 20)
        #expect(abs(window.median - capacity) / capacity <= 0.25, "from the window: median \(window.median) B/s")
        #expect(measured.median < capacity * 0.75, "from the delivery rate: median \(measured.median) B/s")
    }

    @Test("oracle schedule: parsed, looked up by interface and time, bad lines refused with the line number")
    func oracleSchedule() throws {
        let s = try OracleSchedule.parse("""
            # comment
            start_ns 1000000000
            link cell0 0 64000 128000 200 1
            link cell0 10.5 32000 64000 300 1  # a drop
            link wifi0 0 0 0 40 0
            """)
        #expect(s.point(interface: "cell0", nowNs: 999_999_999) == nil)
        #expect(s.point(interface: "cell0", nowNs: 1_000_000_000)?.upBytesPerSecond == 64_000)
        #expect(s.point(interface: "cell0", nowNs: 11_000_000_000)?.upBytesPerSecond == 64_000)
        #expect(s.point(interface: "cell0", nowNs: 11_600_000_000)?.downBytesPerSecond == 64_000)
        #expect(s.point(interface: "wifi0", nowNs: 5_000_000_000)?.available == false)
        #expect(s.point(interface: "eth0", nowNs: 5_000_000_000) == nil)
        #expect(throws: IntNWError.invalidArgument("oracle schedule line 2: expected link <interface> <t s> <up B/s> <down B/s> <rtt ms> <0|1>")) {
            try OracleSchedule.parse("start_ns 1\nlink cell0 0 -1 0 0 1")
        }
        #expect(throws: IntNWError.invalidArgument("oracle schedule line 3: time goes back for cell0")) {
            try OracleSchedule.parse("start_ns 1\nlink cell0 5 1 1 1 1\nlink cell0 4 1 1 1 1")
        }
        #expect(throws: IntNWError.invalidArgument("oracle schedule: no start_ns line")) { try OracleSchedule.parse("") }
        #expect(throws: IntNWError.invalidArgument("oracle schedule line 1: unknown item 'speed'")) { try OracleSchedule.parse("speed 1") }
    }

    @Test("the shared segment sums other processes' fresh BG bytes and delivered counters; stale and own entries do not count")
    func sharedBudget() throws {
        let name = uniqueSegmentName("budget")
        defer { SharedSegment.unlink(name: name) }
        let a = try SharedSegment.open(name: name)
        let b = try SharedSegment.open(name: name)
        let c = try SharedSegment.open(name: name)
        let cell = try #require(a.interfaceSlot(named: "cell0"))
        let wifi = try #require(a.interfaceSlot(named: "wifi0"))
        let now: UInt64 = 5_000_000_000_000
        a.publishBackground(bytes: 10_000, interface: cell, nowNs: now)
        b.publishBackground(bytes: 7_000, interface: cell, nowNs: now - 100_000_000)
        c.publishBackground(bytes: 1_000, interface: wifi, nowNs: now)
        #expect(c.otherBackground(interface: cell, nowNs: now) == 17_000)
        #expect(a.otherBackground(interface: cell, nowNs: now) == 7_000)  // not its own
        #expect(a.otherBackground(interface: wifi, nowNs: now) == 1_000)
        // b's entry is 100 ms older: 300 ms later it is stale, a's is not yet.
        #expect(c.otherBackground(interface: cell, nowNs: now + 250_000_000) == 10_000)
        #expect(c.otherBackground(interface: cell, nowNs: now + 400_000_000) == 0)
        // Writers: a fresh entry counts with or without bytes in flight; stale ones and one's own do not.
        #expect(c.otherBackgroundWriters(interface: cell, nowNs: now) == 2 && a.otherBackgroundWriters(interface: cell, nowNs: now) == 1)
        c.publishBackground(bytes: 0, interface: cell, nowNs: now)
        #expect(a.otherBackgroundWriters(interface: cell, nowNs: now) == 2)
        #expect(a.otherBackgroundWriters(interface: cell, nowNs: now + 250_000_000) == 1)  // b's is stale
        #expect(b.otherBackgroundWriters(interface: wifi, nowNs: now + 400_000_000) == 0)
        a.publishDelivered(bytes: 1_000_000, interface: cell)
        b.publishDelivered(bytes: 500, interface: cell)
        #expect(c.otherDelivered(interface: cell) == 1_000_500 && a.otherDelivered(interface: cell) == 500)
        withExtendedLifetime((a, b, c)) {}
    }

    @Test("registry: multisockets of one process share the budget; a closed one stops counting and its deliveries stay counted")
    func registryBudget() {
        let r = ForegroundRegistry(segmentName: nil, logger: .init(label: "test"))
        final class Owner {}
        let o1 = Owner(), o2 = Owner()
        let id1 = ObjectIdentifier(o1), id2 = ObjectIdentifier(o2)
        let now: UInt64 = 9_000_000_000
        r.reportBackground(owner: id1, interface: "cell0", bytes: 5_000, nowNs: now)
        r.reportBackground(owner: id2, interface: "cell0", bytes: 3_000, nowNs: now)
        #expect(r.backgroundElsewhere(owner: id1, interface: "cell0", nowNs: now) == 3_000)
        #expect(r.backgroundElsewhere(owner: id2, interface: "cell0", nowNs: now) == 5_000)
        #expect(r.backgroundElsewhere(owner: id2, interface: "wifi0", nowNs: now) == 0)
        #expect(r.backgroundElsewhere(owner: id2, interface: "cell0", nowNs: now + 1_000_000_000) == 0)  // stale
        // Who else decides about BG there (a path probe's drain waits for them): the other one,
        // nobody on an interface only one reports on, nobody once the reports are stale.
        #expect(r.backgroundWritersElsewhere(owner: id1, interface: "cell0", nowNs: now) == 1)
        r.reportBackground(owner: id2, interface: "wifi0", bytes: 0, nowNs: now)
        #expect(r.backgroundWritersElsewhere(owner: id2, interface: "wifi0", nowNs: now) == 0)
        #expect(r.backgroundWritersElsewhere(owner: id1, interface: "wifi0", nowNs: now) == 1)
        #expect(r.backgroundWritersElsewhere(owner: id1, interface: "cell0", nowNs: now + 1_000_000_000) == 0)
        #expect(r.reportDelivered(owner: id1, interface: "cell0", cumulativeBytes: 100) == 100)
        #expect(r.reportDelivered(owner: id2, interface: "cell0", cumulativeBytes: 50) == 150)
        r.forgetBackground(owner: id1)
        #expect(r.backgroundElsewhere(owner: id2, interface: "cell0", nowNs: now) == 0)
        #expect(r.reportDelivered(owner: id2, interface: "cell0", cumulativeBytes: 60) == 160)
        withExtendedLifetime((o1, o2)) {}
    }
}
