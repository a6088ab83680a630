import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import IntNW

@Suite("Path RTT probe")
struct PathRTTProbeTests {
    static let s: UInt64 = 1_000_000_000
    static let ms: UInt64 = 1_000_000

    @Test("the smoothed RTT's history at a drained sample: what of its excess over the path must remain after k segments received is left out, never more")
    func smoothedRTTHistory() {
        // The real drive's cellular uplink after 58 s of BG on WiFi: the connection's smoothed
        // RTT still 275 ms, the drained PING 81 ms, a segment's transmission 13 ms.
        let at = 100 * Self.s
        var h = SmoothedRTTHistory()
        h.update(pathSampleAtNs: at, pathMicroseconds: 81_000, nowNs: at + 15 * Self.ms, smoothedMicroseconds: 275_000,
                 segmentMicroseconds: 13_000, segmentsIn: 1_000)
        // The kernel's estimator: an eighth of the way to each sample.
        func kernel(_ samples: [Double], from start: Double = 275_000) -> Double {
            samples.reduce(start) { $0 + ($1 - $0) / 8 }
        }
        // No queue after the drain (samples of 94 ms), one sample per segment received: the
        // adjusted RTT is the path's and a segment's, where the kernel's still says 175 ms.
        let quiet = kernel(Array(repeating: 94_000, count: 6))
        #expect(quiet > 170_000)
        #expect(abs(Double(h.adjusted(smoothedMicroseconds: UInt32(quiet), segmentsIn: 1_006)) - 94_000) < 200)
        // Segments that carried no sample (twice as many received) leave out less: the adjusted
        // RTT stays at or above what a fresh estimator would read, never below.
        let halfCounted = Double(h.adjusted(smoothedMicroseconds: UInt32(quiet), segmentsIn: 1_012))
        #expect(halfCounted > 94_000 && halfCounted < quiet)
        // A queue that builds after the drain (samples 50 ms above the path) shows in full.
        let queued = kernel(Array(repeating: 144_000, count: 12))
        let fresh = kernel(Array(repeating: 144_000, count: 12), from: 94_000)
        #expect(Double(h.adjusted(smoothedMicroseconds: UInt32(queued), segmentsIn: 1_012)) >= fresh - 200)
        // Taken only right after the sample: 60 ms later BG may have queued again, nothing is
        // left out; nor for a smoothed RTT at the path, nor for a counter that went back (a new
        // connection on the same descriptor).
        var late = SmoothedRTTHistory()
        late.update(pathSampleAtNs: at, pathMicroseconds: 81_000, nowNs: at + 60 * Self.ms, smoothedMicroseconds: 275_000,
                    segmentMicroseconds: 13_000, segmentsIn: 1_000)
        #expect(late.adjusted(smoothedMicroseconds: 190_000, segmentsIn: 1_006) == 190_000)
        var atPath = SmoothedRTTHistory()
        atPath.update(pathSampleAtNs: at, pathMicroseconds: 81_000, nowNs: at + 15 * Self.ms, smoothedMicroseconds: 90_000,
                      segmentMicroseconds: 13_000, segmentsIn: 1_000)
        #expect(atPath.adjusted(smoothedMicroseconds: 120_000, segmentsIn: 1_003) == 120_000)
        #expect(h.adjusted(smoothedMicroseconds: 190_000, segmentsIn: 10) == 190_000)
        // The same sample again changes nothing; the next one is taken afresh.
        h.update(pathSampleAtNs: at, pathMicroseconds: 81_000, nowNs: at + 20 * Self.ms, smoothedMicroseconds: 100_000,
                 segmentMicroseconds: 13_000, segmentsIn: 1_006)
        #expect(abs(Double(h.adjusted(smoothedMicroseconds: UInt32(quiet), segmentsIn: 1_006)) - 94_000) < 200)
        h.update(pathSampleAtNs: at + Self.s, pathMicroseconds: 81_000, nowNs: at + Self.s + 10 * Self.ms,
                 smoothedMicroseconds: 94_000, segmentMicroseconds: 13_000, segmentsIn: 1_100)
        #expect(h.adjusted(smoothedMicroseconds: 150_000, segmentsIn: 1_101) == 150_000)
    }

    @Test("the drain period: base RTTs x the multiple, rounded up to 1, 2, 4 or 8 s; 0 turns it off")
    func period() {
        #expect(PathRTTProbe.periodNs(baseRTTNs: 24 * Self.ms, rtts: 20) == 1 * Self.s)   // WiFi: 0.48 s
        #expect(PathRTTProbe.periodNs(baseRTTNs: 80 * Self.ms, rtts: 20) == 2 * Self.s)   // cellular: 1.6 s
        #expect(PathRTTProbe.periodNs(baseRTTNs: 200 * Self.ms, rtts: 20) == 4 * Self.s)  // 3G: exactly 4 s
        #expect(PathRTTProbe.periodNs(baseRTTNs: 201 * Self.ms, rtts: 20) == 8 * Self.s)
        #expect(PathRTTProbe.periodNs(baseRTTNs: 2_000 * Self.ms, rtts: 20) == 8 * Self.s) // capped
        #expect(PathRTTProbe.periodNs(baseRTTNs: 24 * Self.ms, rtts: 0) == 0)
    }

    @Test("a drain per slot of the clock's grid: hold until drained, one PING, a short grace, then nothing until the next slot")
    func drainCycle() {
        var p = PathRTTProbe()
        let period = 1 * Self.s
        let srtt = 30 * Self.ms
        // The first decision only starts the count (a new connection has no queue).
        #expect(p.check(nowNs: 100 * Self.s + 500 * Self.ms, periodNs: period, drained: false, smoothedRTTNs: srtt) == .none)
        #expect(p.check(nowNs: 100 * Self.s + 900 * Self.ms, periodNs: period, drained: false, smoothedRTTNs: srtt) == .none)
        // The next slot: hold while anything is in flight.
        var now = 101 * Self.s + 2 * Self.ms
        #expect(p.check(nowNs: now, periodNs: period, drained: false, smoothedRTTNs: srtt) == .hold)
        now += 10 * Self.ms
        #expect(p.check(nowNs: now, periodNs: period, drained: false, smoothedRTTNs: srtt) == .hold)
        now += 10 * Self.ms
        #expect(p.check(nowNs: now, periodNs: period, drained: true, smoothedRTTNs: srtt) == .ping)
        #expect(p.pings == 1)
        // The grace: still held (others draining in the slot must find the link empty), then free.
        #expect(p.check(nowNs: now + 10 * Self.ms, periodNs: period, drained: true, smoothedRTTNs: srtt) == .hold)
        #expect(p.check(nowNs: now + 21 * Self.ms, periodNs: period, drained: false, smoothedRTTNs: srtt) == .none)
        #expect(p.check(nowNs: 101 * Self.s + 990 * Self.ms, periodNs: period, drained: false, smoothedRTTNs: srtt) == .none)
        // Nobody else draining on the interface (`aloneGraceNs`): BG may follow the PING a millisecond later.
        var alone = PathRTTProbe()
        _ = alone.check(nowNs: 100 * Self.s, periodNs: period, drained: false, smoothedRTTNs: srtt, graceNs: PathRTTProbe.aloneGraceNs)
        #expect(alone.check(nowNs: now, periodNs: period, drained: true, smoothedRTTNs: srtt, graceNs: PathRTTProbe.aloneGraceNs) == .ping)
        #expect(alone.check(nowNs: now + Self.ms / 2, periodNs: period, drained: true, smoothedRTTNs: srtt) == .hold)
        #expect(alone.check(nowNs: now + Self.ms, periodNs: period, drained: false, smoothedRTTNs: srtt) == .none)
        #expect(alone.refillSinceNs(nowNs: now + 5 * Self.ms, withinNs: Self.s) == now + Self.ms)
        // No sample until the PONG; then the path's RTT for three periods.
        #expect(p.pathRTTMicroseconds(nowNs: now + 30 * Self.ms) == 0)
        p.sample(rttNs: 41_500_000, nowNs: now + 42 * Self.ms)
        #expect(p.pathRTTMicroseconds(nowNs: now + 50 * Self.ms) == 41_500)
        #expect(p.pathRTTMicroseconds(nowNs: now + 42 * Self.ms + 3 * period) == 41_500)
        #expect(p.pathRTTMicroseconds(nowNs: now + 43 * Self.ms + 3 * period) == 0)
    }

    @Test("the path's variation: the lower median change between consecutive samples of the last five; one sample far off does not count; none without two fresh samples")
    func variation() {
        func probe(_ ms: [Double]) -> PathRTTProbe {
            var p = PathRTTProbe()
            let period = 2 * Self.s
            _ = p.check(nowNs: 100 * Self.s, periodNs: period, drained: false, smoothedRTTNs: 100 * Self.ms)
            for (k, rtt) in ms.enumerated() {
                let at = UInt64(102 + 2 * k) * Self.s
                #expect(p.check(nowNs: at, periodNs: period, drained: true, smoothedRTTNs: 100 * Self.ms) == .ping)
                p.sample(rttNs: UInt64((rtt * 1000).rounded()) * 1000, nowNs: at + UInt64((rtt * 1000).rounded()) * 1000)
            }
            return p
        }
        let now = 200 * Self.s
        func fresh(_ p: PathRTTProbe) -> UInt64 { p.sampleAtNs + 10 * Self.ms }
        // 3G's emulated path: 200-203 ms, changes of 1-3 ms.
        let steady = probe([200, 202, 201, 203, 200])
        #expect(steady.variationMicroseconds(nowNs: fresh(steady)) == 2_000)
        // The real drive's cellular path at 2 s intervals (the trace's RTTs at 3, 5, ..., 11 s).
        let drive = probe([76.8, 75.6, 83.8, 84.7, 80.7])
        #expect(drive.variationMicroseconds(nowNs: fresh(drive)) == 1_200)
        let moving = probe([80.7, 104.9, 60.2, 98.0, 85.3, 113.6])
        #expect(moving.variationMicroseconds(nowNs: fresh(moving)) == 28_300)
        // One second far off (the vehicular segment's 1,288 ms on a 206-214 ms path).
        let spike = probe([206, 214, 1_288, 211, 209])
        #expect(spike.variationMicroseconds(nowNs: fresh(spike)) == 8_000)
        // One sample, or samples too old to be the base: unknown.
        #expect(probe([80]).variationMicroseconds(nowNs: now) == 0)
        #expect(drive.variationMicroseconds(nowNs: drive.sampleAtNs + 7 * Self.s) == 0)
    }

    @Test("delay-target's target on a moving path: target-path (3 by default) x the path's variation when that is above target-ms, at most half the base RTT and half the ceiling; target-path=0 turns it off")
    func delayTargetPathTarget() throws {
        let bench = PolicyBench(rttMilliseconds: 80, bandwidthBytesPerSecond: 120_000, kind: .cellular)
        func target(_ policy: String, variationMs: Double, baseMs: Double = 80) throws -> Double {
            let p = try #require(try BackgroundPolicies.parse(policy) as? DelayTargetBackgroundPolicy)
            var c = bench.context(now: 1, lastFG: nil, srttMs: baseMs + 10, minRTTMs: baseMs)
            c.pathRTTMicroseconds = UInt32(baseMs * 1000)
            c.pathRTTVariationMicroseconds = UInt32(variationMs * 1000)
            return p.targetMilliseconds(c)
        }
        #expect(try target("delay-target:target-path=0", variationMs: 28.3) == 10)
        let byDefault = try target("delay-target", variationMs: 9)
        #expect(try byDefault == target("delay-target:target-path=3", variationMs: 9))
        #expect(try target("delay-target:target-path=3", variationMs: 2) == 10)
        #expect(try abs(target("delay-target:target-path=3", variationMs: 9) - 27) < 1e-9)
        // At most half the base RTT: 40 ms on the drive's 80 ms cellular path, 12 ms on a 24 ms
        // WiFi path; half the 100 ms ceiling on a long one.
        #expect(try target("delay-target:target-path=3", variationMs: 28.3) == 40)
        #expect(try target("delay-target:target-path=3", variationMs: 10, baseMs: 24) == 12)
        #expect(try target("delay-target:target-path=3", variationMs: 28.3, baseMs: 200) == 50)
        #expect(try target("delay-target:target-path=3", variationMs: 0) == 10)
        #expect(try target("delay-target:target-path=3,target-ms=30", variationMs: 8) == 30)
        // The window grows with it: 20 ms more of the estimate.
        let p10 = try #require(try BackgroundPolicies.parse("delay-target:target-path=0") as? DelayTargetBackgroundPolicy)
        let p30 = try #require(try BackgroundPolicies.parse("delay-target:target-path=2") as? DelayTargetBackgroundPolicy)
        var c = bench.context(now: 1, lastFG: nil, srttMs: 90, minRTTMs: 80)
        c.pathRTTMicroseconds = 80_000
        c.pathRTTVariationMicroseconds = 15_000
        #expect(abs(p30.modelWindowBytes(c) - p10.modelWindowBytes(c) - 120_000 * 0.020) < 1)
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:target-path=20") }
    }

    @Test("a drain that cannot empty the queue gives up after 4 smoothed RTTs (at least 100 ms) until the next slot")
    func drainTimeout() {
        var p = PathRTTProbe()
        let period = 4 * Self.s
        let srtt = 250 * Self.ms
        _ = p.check(nowNs: 100 * Self.s, periodNs: period, drained: false, smoothedRTTNs: srtt)
        let start = 104 * Self.s
        #expect(p.check(nowNs: start, periodNs: period, drained: false, smoothedRTTNs: srtt) == .hold)
        #expect(p.check(nowNs: start + 1_000 * Self.ms, periodNs: period, drained: false, smoothedRTTNs: srtt) == .hold)
        #expect(p.check(nowNs: start + 1_001 * Self.ms, periodNs: period, drained: false, smoothedRTTNs: srtt) == .none)
        #expect(p.timeouts == 1 && p.pings == 0)
        #expect(p.check(nowNs: start + 3_000 * Self.ms, periodNs: period, drained: true, smoothedRTTNs: srtt) == .none)
        #expect(p.check(nowNs: 108 * Self.s, periodNs: period, drained: true, smoothedRTTNs: srtt) == .ping)
        // A short RTT still gets 100 ms.
        var q = PathRTTProbe()
        _ = q.check(nowNs: 10 * Self.s, periodNs: Self.s, drained: false, smoothedRTTNs: 5 * Self.ms)
        #expect(q.check(nowNs: 11 * Self.s, periodNs: Self.s, drained: false, smoothedRTTNs: 5 * Self.ms) == .hold)
        #expect(q.check(nowNs: 11 * Self.s + 99 * Self.ms, periodNs: Self.s, drained: false, smoothedRTTNs: 5 * Self.ms) == .hold)
        #expect(q.check(nowNs: 11 * Self.s + 101 * Self.ms, periodNs: Self.s, drained: false, smoothedRTTNs: 5 * Self.ms) == .none)
    }

    @Test("a new period (the base RTT moved across a power of two) restarts the count instead of waiting for the old grid's slot numbers")
    func periodChange() {
        var p = PathRTTProbe()
        _ = p.check(nowNs: 100 * Self.s + 100 * Self.ms, periodNs: 2 * Self.s, drained: false, smoothedRTTNs: 60 * Self.ms)
        #expect(p.check(nowNs: 100 * Self.s + 600 * Self.ms, periodNs: Self.s, drained: true, smoothedRTTNs: 30 * Self.ms) == .none)
        #expect(p.check(nowNs: 101 * Self.s + 10 * Self.ms, periodNs: Self.s, drained: true, smoothedRTTNs: 30 * Self.ms) == .ping)
        // Off: never holds.
        var off = PathRTTProbe()
        for k in 0..<5 {
            #expect(off.check(nowNs: UInt64(100 + k) * Self.s, periodNs: 0, drained: false, smoothedRTTNs: 30 * Self.ms) == .none)
        }
    }

    @Test("delay-target's base RTT: the drained path RTT within [kernel minimum, smoothed RTT less one segment]")
    func delayTargetBase() throws {
        let bench = PolicyBench(rttMilliseconds: 30, bandwidthBytesPerSecond: 362_000, kind: .wifi)
        let ser = 1448.0 / 362  // 4 ms
        func ctx(srtt: Double, min: Double, path: Double) -> BackgroundContext {
            var c = bench.context(now: 1, lastFG: nil, srttMs: srtt, minRTTMs: min)
            c.pathRTTMicroseconds = UInt32(path * 1000)
            return c
        }
        // No sample: the kernel's minimum; the 12 ms above it read as queueing.
        #expect(DelayTargetBackgroundPolicy.baseRTTMilliseconds(ctx(srtt: 40 + ser, min: 28, path: 0)) == 28)
        #expect(abs(DelayTargetBackgroundPolicy.queueingDelayMilliseconds(ctx(srtt: 40 + ser, min: 28, path: 0)) - 12) < 1e-9)
        // A drained PING measured 38 ms: the path is longer now, 2 ms of queueing.
        #expect(DelayTargetBackgroundPolicy.baseRTTMilliseconds(ctx(srtt: 40 + ser, min: 28, path: 38)) == 38)
        #expect(abs(DelayTargetBackgroundPolicy.queueingDelayMilliseconds(ctx(srtt: 40 + ser, min: 28, path: 38)) - 2) < 1e-9)
        // The path shortened since (smoothed RTT 31 + one segment): the base follows it down.
        #expect(abs(DelayTargetBackgroundPolicy.baseRTTMilliseconds(ctx(srtt: 31 + ser, min: 28, path: 120)) - 31) < 1e-9)
        // Never below the kernel's minimum.
        #expect(DelayTargetBackgroundPolicy.baseRTTMilliseconds(ctx(srtt: 40 + ser, min: 28, path: 20)) == 28)
        // The window covers the path's round trip: 362,000 x (38 + 4 + 10) ms.
        var params = DelayTargetBackgroundPolicy.Parameters()
        params.pacingGain = 0
        let d = DelayTargetBackgroundPolicy(parameters: params)
        #expect(d.verdict(ctx(srtt: 40 + ser, min: 28, path: 38)) == .send(maxBytes: 18_824))
        // On by default (every 20 base RTTs); 0 turns it off; below 5 RTTs (more than 20% of the
        // link) is refused.
        #expect(d.pathProbeRTTs == 20)
        #expect((BackgroundPolicies.fallback.makePolicy() as? DelayTargetBackgroundPolicy)?.pathProbeRTTs == 20)
        let off = try #require(try BackgroundPolicies.parse("delay-target:path-probe-rtts=0") as? DelayTargetBackgroundPolicy)
        #expect(off.pathProbeRTTs == 0)
        let on = try #require(try BackgroundPolicies.parse("delay-target:path-probe-rtts=40") as? DelayTargetBackgroundPolicy)
        #expect(on.pathProbeRTTs == 40)
        #expect(throws: IntNWError.invalidArgument("delay-target path-probe-rtts=2: expected 0 (off) or 5 to 1000 base RTTs")) {
            try BackgroundPolicies.parse("delay-target:path-probe-rtts=2")
        }
    }

    /// Eight delay-target instances (eight BG processes) on the 3G link decide every millisecond
    /// they are free to, right after a drain emptied the link (no acknowledgement comes back
    /// within the 200 ms simulated). Returns the bytes all of them had in flight at each
    /// millisecond.
    static func refillSimulation(refilling: Bool) -> [Int] {
        let bench = PolicyBench()  // 3G: 64,000 B/s, 200 ms
        let start = PolicyBench.at(100)
        let policies = (0..<8).map { _ in DelayTargetBackgroundPolicy() }
        var own = [Int](repeating: 0, count: 8)
        var freeAt = [UInt64](repeating: 0, count: 8)
        var total: [Int] = []
        for t in 0..<200 {
            let now = start + UInt64(t) * Self.ms
            for i in 0..<8 where freeAt[i] <= now {
                var c = bench.context(now: 0, lastFG: nil, srttMs: 201, minRTTMs: 200)
                c.nowNs = now
                c.kernelUnackedBytes = own[i]
                c.backgroundElsewhereBytes = own.reduce(0, +) - own[i]
                c.refillSinceNs = refilling ? start : 0
                let v = policies[i].verdict(c)
                switch v.decision {
                case .send(let n):
                    own[i] += n
                    policies[i].backgroundUsed(n)
                    freeAt[i] = now + Self.ms
                case .wait(let until):
                    freeAt[i] = max(until ?? now + Self.ms, now + Self.ms)
                }
            }
            total.append(own.reduce(0, +))
        }
        return total
    }

    @Test("after a drain, every BG process on the interface together refills no faster than the bandwidth estimate (8 processes on 3G)")
    func refillAcrossProcesses() {
        let window = DelayTargetBackgroundPolicy().modelWindowBytes(PolicyBench().context(now: 0, lastFG: nil, srttMs: 201, minRTTMs: 200))
        let rate = 64_000.0  // the estimate: the refill adds no queue where it is the link's rate
        let quantum = 1_416.0
        let limited = Self.refillSimulation(refilling: true)
        for (t, bytes) in limited.enumerated() {
            #expect(Double(bytes) <= quantum + rate * Double(t) / 1000 + 1, "at \(t) ms: \(bytes) B in flight")
        }
        // The limit reaches the window within the round trip: background is not starved by it.
        #expect(Double(limited[199]) >= window - 2 * quantum, "\(limited[199]) B of a \(Int(window)) B window")
        // Each process paced alone: the eight send the whole window within 50 ms (what the limit is for).
        let unlimited = Self.refillSimulation(refilling: false)
        #expect(Double(unlimited[50]) >= window - quantum, "\(unlimited[50]) B at 50 ms without the limit")
        #expect(Double(limited[50]) <= quantum + rate * 0.05 + 1)
        // The refill's holds are its own reason, not the window's (no headroom evidence for the estimate).
        var c = PolicyBench().context(now: 0, lastFG: nil, srttMs: 201, minRTTMs: 200)
        c.nowNs = PolicyBench.at(100) + 10 * Self.ms
        c.refillSinceNs = PolicyBench.at(100)
        c.backgroundElsewhereBytes = 4_000
        #expect(DelayTargetBackgroundPolicy().verdict(c).reason == .refill)
        // Past the window, the window binds as before.
        c.nowNs = PolicyBench.at(100) + 250 * Self.ms
        c.backgroundElsewhereBytes = Int(window)
        #expect(DelayTargetBackgroundPolicy().verdict(c).reason == .queueingDelay)
    }

    @Test("no PING while foreground is outstanding on the interface (another multisocket's or its own): it would queue ahead of the PING and read as path")
    func noPingBehindForeground() throws {
        // A loopback TCP connection, so that the scheduler reads a kernel minimum RTT (the grid: 1 s).
        let (l, c, peer) = try loopbackTCPConnection()
        defer { close(l); close(c); close(peer) }

        let seg = uniqueSegmentName("probefg")
        defer { SharedSegment.unlink(name: seg) }
        let fg = BackgroundScheduler(options: BackgroundSchedulerTests.options(ExclusiveBackgroundPolicy(excludedKinds: []), segment: seg),
                                     role: .client, log: quietLogger())
        let bg = BackgroundScheduler(options: BackgroundSchedulerTests.options(try BackgroundPolicies.parse("delay-target:path-probe-rtts=20"),
                                                                               segment: seg), role: .client, log: quietLogger())
        func decide(_ t: UInt64) -> Bool {
            _ = bg.decide(network: BackgroundSchedulerTests.status(), otherUsableNetworks: 0, fd: c, userQueuedBytes: 0, nowNs: t)
            return bg.takePathProbe(fd: c)
        }
        #expect(!decide(100 * Self.s + 500 * Self.ms))  // the first decision starts the count
        // The next slot: another multisocket's FG is outstanding, the drain waits for it.
        fg.foregroundEnqueued(IROBID(1), interface: "cell0")
        #expect(!decide(101 * Self.s + 10 * Self.ms))
        #expect(!decide(101 * Self.s + 20 * Self.ms))
        // Its ACK; now this multisocket's own FG is outstanding.
        fg.observe(.acknowledged(id: IROBID(1), nowNs: 101 * Self.s + 25 * Self.ms), interface: nil)
        bg.foregroundEnqueued(IROBID(2), interface: "cell0")
        #expect(!decide(101 * Self.s + 30 * Self.ms))
        bg.observe(.acknowledged(id: IROBID(2), nowNs: 101 * Self.s + 35 * Self.ms), interface: nil)
        // Nothing of anyone's on the interface: the PING.
        #expect(decide(101 * Self.s + 40 * Self.ms))
        #expect(bg.stats.held(.pathProbe) == 4 && bg.stats.pathProbePings == 1)
        withExtendedLifetime(fg) {}
    }

    @Test("an aborted connection's per-connection state (budget share, acknowledged bytes, RTT history, a wanted PING) goes with it")
    func connectionClosedForgetsState() throws {
        let (l, c, peer) = try loopbackTCPConnection()
        defer { close(l); close(c); close(peer) }
        let seg = uniqueSegmentName("probeclose")
        defer { SharedSegment.unlink(name: seg) }
        let bg = BackgroundScheduler(options: BackgroundSchedulerTests.options(try BackgroundPolicies.parse("delay-target:path-probe-rtts=20"),
                                                                               segment: seg), role: .client, log: quietLogger())
        let seg2 = uniqueSegmentName("probeopen")
        defer { SharedSegment.unlink(name: seg2) }
        let control = BackgroundScheduler(options: BackgroundSchedulerTests.options(try BackgroundPolicies.parse("delay-target:path-probe-rtts=20"),
                                                                                    segment: seg2), role: .client, log: quietLogger())
        func decide(_ s: BackgroundScheduler, _ t: UInt64) {
            _ = s.decide(network: BackgroundSchedulerTests.status(), otherUsableNetworks: 0, fd: c, userQueuedBytes: 0, nowNs: t)
        }
        #expect(bg.connectionStateCount == 0)
        for s in [bg, control] { decide(s, 100 * Self.s + 500 * Self.ms) }
        #expect(bg.connectionStateCount == 1)
        // The next slot wants a PING on it (the control sends it); the connection is aborted
        // before it goes.
        for s in [bg, control] { decide(s, 101 * Self.s + 10 * Self.ms) }
        #expect(control.takePathProbe(fd: c))
        bg.connectionClosed(fd: c)
        #expect(bg.connectionStateCount == 0)
        #expect(!bg.takePathProbe(fd: c))
        // Another connection's state stays.
        decide(bg, 102 * Self.s)
        bg.connectionClosed(fd: c &+ 1_000)
        #expect(bg.connectionStateCount == 1)
    }
}
