import Testing
import Foundation
@testable import IntNW

/// A controllable clock and network for policy decisions: every test states "now", the last
/// foreground activity and the kernel's queue counts, and checks the decision.
struct PolicyBench {
    var rttMilliseconds = 200.0
    var bandwidthBytesPerSecond = 64_000.0
    var kind = NetworkKind.cellular
    /// A fixed origin so times read as seconds since "boot".
    static let t0: UInt64 = 1_000_000_000_000

    func status() -> NetworkStatus {
        NetworkStatus(networkID: 2, kind: kind, interfaceName: "cell0", usable: true, troubled: false,
                      estimate: NetworkEstimate(rttMilliseconds: rttMilliseconds, bandwidthBytesPerSecond: bandwidthBytesPerSecond,
                                                source: .measured),
                      bytesSent: 0, bytesReceived: 0, lastForegroundActivityNs: 0)
    }

    /// Context at `now` seconds with the last FG activity at `lastFG` seconds (nil: never).
    func context(now: Double, lastFG: Double?, unsent: Int = 0, unacked: Int = 0, srttMs: Double = 0,
                 minRTTMs: Double = 0) -> BackgroundContext {
        BackgroundContext(network: status(), nowNs: Self.at(now), lastForegroundActivityNs: lastFG.map(Self.at) ?? 0,
                          kernelUnsentBytes: unsent, kernelUnackedBytes: max(unacked, unsent),
                          kernelSmoothedRTTMicroseconds: UInt32(srttMs * 1000), kernelMinRTTMicroseconds: UInt32(minRTTMs * 1000))
    }

    static func at(_ seconds: Double) -> UInt64 { t0 + UInt64((seconds * 1e9).rounded()) }
}

@Suite("Background policies")
struct BackgroundPolicyTests {
    let bench = PolicyBench()

    @Test("anticipatory waits until the link has been FG-idle for more than 4 x RTT, then wakes exactly then")
    func anticipatoryIdleWait() {
        let p = AnticipatoryBackgroundPolicy()
        // RTT 200 ms: the wait is 800 ms after the last FG activity at t = 10 s.
        for now in [10.0, 10.2, 10.799, 10.8] {
            let v = p.verdict(bench.context(now: now, lastFG: 10))
            #expect(v == .hold(.foregroundRecent, untilNs: PolicyBench.at(10.8) + 1), "at \(now) s")
        }
        #expect(p.verdict(bench.context(now: 10.801, lastFG: 10)).reason == nil)
        // The wait follows the RTT estimate.
        var fast = bench
        fast.rttMilliseconds = 50
        #expect(p.verdict(fast.context(now: 10.199, lastFG: 10)).reason == .foregroundRecent)
        #expect(p.verdict(fast.context(now: 10.201, lastFG: 10)).reason == nil)
    }

    @Test("anticipatory chunk: bandwidth/16 per whole idle period of 4 x RTT, floor 64 bytes, capped at one second's worth")
    func anticipatoryChunkRamp() {
        let p = AnticipatoryBackgroundPolicy()
        // 64,000 B/s: the smallest chunk is 4,000 B (62.5 ms worth); 0.8 s periods.
        let expected: [(Double, Int)] = [(0.81, 4_000), (1.59, 4_000), (1.61, 8_000), (2.41, 12_000), (8.1, 40_000),
                                         (12.81, 64_000), (100, 64_000)]
        for (idle, bytes) in expected {
            #expect(p.verdict(bench.context(now: 20 + idle, lastFG: 20)) == .send(maxBytes: bytes), "idle \(idle) s")
        }
        // Never any foreground: the largest chunk at once.
        #expect(p.verdict(bench.context(now: 5, lastFG: nil)) == .send(maxBytes: 64_000))
        // A very slow link: bandwidth/16 = 31 B, so the 64-byte floor applies; the cap (500 B) still holds.
        var slow = bench
        slow.bandwidthBytesPerSecond = 500
        #expect(p.verdict(slow.context(now: 20.81, lastFG: 20)) == .send(maxBytes: 64))
        #expect(p.verdict(slow.context(now: 20 + 0.8 * 3 + 0.01, lastFG: 20)) == .send(maxBytes: 192))
        #expect(p.verdict(slow.context(now: 80, lastFG: 20)) == .send(maxBytes: 500))
    }

    @Test("anticipatory sends only into an empty enough socket: below one chunk unACKed by default; unsent-only and nothing-unACKed when configured")
    func anticipatorySocketEmpty() {
        let p = AnticipatoryBackgroundPolicy()
        #expect(p.parameters.emptySocketTest == .belowOneChunk)
        // Idle 1 s: the chunk is 4,000 B; less than that unACKed lets the next one go.
        #expect(p.verdict(bench.context(now: 21, lastFG: 20, unacked: 3_999)) == .send(maxBytes: 4_000))
        #expect(p.verdict(bench.context(now: 21, lastFG: 20, unacked: 4_000)) == .hold(.socketBusy, untilNs: PolicyBench.at(21) + 10_000_000))
        #expect(p.verdict(bench.context(now: 21, lastFG: 20, unsent: 4_000)).reason == .socketBusy)
        func with(_ t: AnticipatoryBackgroundPolicy.EmptySocketTest) -> AnticipatoryBackgroundPolicy {
            var params = AnticipatoryBackgroundPolicy.Parameters()
            params.emptySocketTest = t
            return AnticipatoryBackgroundPolicy(parameters: params)
        }
        // the original policy description's reading: only unsent bytes count, whatever is in flight.
        let unsent = with(.noUnsentBytes)
        #expect(unsent.verdict(bench.context(now: 30, lastFG: 20, unsent: 1)).reason == .socketBusy)
        #expect(unsent.verdict(bench.context(now: 30, lastFG: 20, unsent: 0, unacked: 50_000)).reason == nil)
        // The strict reading: nothing unACKed at all.
        let strict = with(.nothingUnacknowledged)
        #expect(strict.verdict(bench.context(now: 30, lastFG: 20, unsent: 0, unacked: 1)).reason == .socketBusy)
        #expect(strict.verdict(bench.context(now: 30, lastFG: 20, unsent: 0, unacked: 0)).reason == nil)
    }

    @Test("anticipatory constants are parameters: a 2 x RTT wait and 1/8 s chunks")
    func anticipatoryParameters() {
        var params = AnticipatoryBackgroundPolicy.Parameters()
        params.idleRTTMultiple = 2
        params.minimumChunkSeconds = 0.125
        params.maximumChunkSeconds = 0.25
        let p = AnticipatoryBackgroundPolicy(parameters: params)
        #expect(p.verdict(bench.context(now: 10.39, lastFG: 10)).reason == .foregroundRecent)
        #expect(p.verdict(bench.context(now: 10.41, lastFG: 10)) == .send(maxBytes: 8_000))
        #expect(p.verdict(bench.context(now: 10.81, lastFG: 10)) == .send(maxBytes: 16_000))
        #expect(p.verdict(bench.context(now: 15, lastFG: 10)) == .send(maxBytes: 16_000))
    }

    @Test("trickle: 50 ms worth while the kernel queue is below one chunk; one second's worth after 5 s without FG")
    func trickle() {
        let p = TrickleBackgroundPolicy()
        // FG 1 s ago: chunk = 64,000 x 0.05 = 3,200 B; no idle wait at all.
        #expect(p.verdict(bench.context(now: 11, lastFG: 10)) == .send(maxBytes: 3_200))
        #expect(p.verdict(bench.context(now: 10.001, lastFG: 10)) == .send(maxBytes: 3_200))
        // The kernel queue counts every byte not yet acknowledged, sent or not.
        #expect(p.verdict(bench.context(now: 11, lastFG: 10, unacked: 3_199)) == .send(maxBytes: 3_200))
        #expect(p.verdict(bench.context(now: 11, lastFG: 10, unacked: 3_200)) == .hold(.socketBusy, untilNs: PolicyBench.at(11) + 10_000_000))
        #expect(p.verdict(bench.context(now: 11, lastFG: 10, unsent: 5_000)).reason == .socketBusy)
        // The switch at 5 s of FG silence.
        #expect(p.verdict(bench.context(now: 14.999, lastFG: 10)) == .send(maxBytes: 3_200))
        #expect(p.verdict(bench.context(now: 15.0, lastFG: 10)) == .send(maxBytes: 64_000))
        #expect(p.verdict(bench.context(now: 15.0, lastFG: 10, unacked: 50_000)) == .send(maxBytes: 64_000))
        #expect(p.verdict(bench.context(now: 15.0, lastFG: 10, unacked: 64_000)).reason == .socketBusy)
        #expect(p.verdict(bench.context(now: 3, lastFG: nil)) == .send(maxBytes: 64_000))
        // Tiny bandwidth: the 64-byte floor.
        var slow = bench
        slow.bandwidthBytesPerSecond = 100
        #expect(p.verdict(slow.context(now: 11, lastFG: 10)) == .send(maxBytes: 64))
    }

    @Test("exclusive never uses cellular (no timed retry: a new network is what changes the answer); other kinds are free")
    func exclusive() {
        let p = ExclusiveBackgroundPolicy()
        #expect(p.verdict(bench.context(now: 100, lastFG: nil)) == .hold(.excludedNetwork, untilNs: nil))
        var wifi = bench
        wifi.kind = .wifi
        #expect(p.verdict(wifi.context(now: 100, lastFG: 99.9)) == .send(maxBytes: Int.max))
        #expect(p.honorsForegroundBarrier)
    }

    @Test("permissive always sends and ignores the multi-app barrier")
    func permissive() {
        let p = PermissiveBackgroundPolicy()
        #expect(p.verdict(bench.context(now: 10, lastFG: 10, unsent: 100_000)) == .send(maxBytes: Int.max))
        #expect(!p.honorsForegroundBarrier)
        #expect(p.decide(bench.context(now: 10, lastFG: 10)) == .send(maxBytes: Int.max))
    }

    @Test("delay-target duty (fault injection): BG admitted only until one base RTT before the period's share ends")
    func delayTargetDuty() throws {
        let p = try #require(try BackgroundPolicies.parse("delay-target:duty=0.5,duty-period-s=2,pace=0") as? DelayTargetBackgroundPolicy)
        // The bench's origin is a whole number of 2 s periods: `now` 0-1 s is the share, 1-2 s is not;
        // base RTT 200 ms, so BG is admitted from 0 to 0.8 s. Window: 64,000 x (0.2 + 0.022625 + 0.010) = 14,888 B.
        #expect(p.verdict(bench.context(now: 0, lastFG: nil, srttMs: 200, minRTTMs: 200)) == .send(maxBytes: 14_888))
        #expect(p.verdict(bench.context(now: 0.79, lastFG: nil, unacked: 4_888, srttMs: 200, minRTTMs: 200)) == .send(maxBytes: 10_000))
        // Held, looking again every 10 ms (the delivery-rate estimate samples at each decision).
        #expect(p.verdict(bench.context(now: 0.81, lastFG: nil, srttMs: 200, minRTTMs: 200)) == .hold(.dutyCycle, untilNs: PolicyBench.at(0.82)))
        #expect(p.verdict(bench.context(now: 1.5, lastFG: nil, srttMs: 200, minRTTMs: 200)) == .hold(.dutyCycle, untilNs: PolicyBench.at(1.51)))
        #expect(p.verdict(bench.context(now: 1.995, lastFG: nil, srttMs: 200, minRTTMs: 200)) == .hold(.dutyCycle, untilNs: PolicyBench.at(2)))
        #expect(p.verdict(bench.context(now: 2.25, lastFG: nil, srttMs: 200, minRTTMs: 200)) == .send(maxBytes: 14_888))
        // The window still bounds what is in flight inside the share.
        #expect(p.verdict(bench.context(now: 0.5, lastFG: nil, unacked: 14_500, srttMs: 200, minRTTMs: 200))
                == .hold(.queueingDelay, untilNs: PolicyBench.at(0.5) + 10_000_000))
        // Off by default; bad values are one-line errors.
        let plain = try #require(try BackgroundPolicies.parse("delay-target:pace=0") as? DelayTargetBackgroundPolicy)
        #expect(plain.verdict(bench.context(now: 1.5, lastFG: nil, srttMs: 200, minRTTMs: 200)) == .send(maxBytes: 14_888))
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:duty=1.5") }
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:duty=0") }
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:duty-period-s=0.01") }
    }

    @Test("delay-target: BG in flight up to bandwidth x (min RTT + 25 ms) x a scale the measured queueing delay steers per RTT")
    func delayTarget() throws {
        // The steering, with the target and probing range of the first version (25 ms, up to 16x):
        let p = try #require(try BackgroundPolicies.parse("delay-target:target-ms=25,max-scale=16,pace=0") as? DelayTargetBackgroundPolicy)
        // 64,000 B/s, min RTT 200 ms: the model window is 64,000 x (0.2 + 0.022625 + 0.025) = 15,848 B. A full
        // segment's RTT includes its own serialization (1448 B at 64,000 B/s: 22.6 ms), which is
        // not queueing: the measured delay is smoothed RTT - min RTT - that.
        let ser = 1448.0 / 64
        var now = 1.0
        #expect(p.verdict(bench.context(now: now, lastFG: 10, srttMs: 220 + ser, minRTTMs: 200)) == .send(maxBytes: 15_848))
        // It does not care about recent FG (no idle wait); it bounds what is not yet acknowledged.
        #expect(p.verdict(bench.context(now: now, lastFG: 0.999, unacked: 10_000, srttMs: 220 + ser, minRTTMs: 200)) == .send(maxBytes: 5_848))
        #expect(p.verdict(bench.context(now: now, lastFG: 0.999, unacked: 14_500, srttMs: 220 + ser, minRTTMs: 200))
                == .hold(.queueingDelay, untilNs: PolicyBench.at(now) + 10_000_000))
        // That hold made it window-limited; with little queueing (5 ms < target/2) it probes above
        // the model, +0.25 per min RTT: 19,810 B.
        now += 0.2
        #expect(p.verdict(bench.context(now: now, lastFG: nil, unacked: 14_000, srttMs: 205 + ser, minRTTMs: 200)) == .send(maxBytes: 5_810))
        #expect(p.currentScale == 1.25)
        now += 0.1  // not a whole RTT later: no change
        _ = p.verdict(bench.context(now: now, lastFG: nil, unacked: 20_000, srttMs: 205 + ser, minRTTMs: 200))
        #expect(p.currentScale == 1.25)
        now += 0.1
        _ = p.verdict(bench.context(now: now, lastFG: nil, unacked: 20_000, srttMs: 205 + ser, minRTTMs: 200))
        #expect(p.currentScale == 1.5)
        // Little queueing but BG did not want more: no probing.
        now += 0.2
        _ = p.verdict(bench.context(now: now, lastFG: nil, srttMs: 205 + ser, minRTTMs: 200))
        #expect(p.currentScale == 1.5)
        // Above the target: back towards the model (x 0.75, not below 1).
        now += 0.2
        _ = p.verdict(bench.context(now: now, lastFG: nil, srttMs: 240 + ser, minRTTMs: 200))
        #expect(p.currentScale == 1.125)
        now += 0.2
        _ = p.verdict(bench.context(now: now, lastFG: nil, srttMs: 240 + ser, minRTTMs: 200))
        #expect(p.currentScale == 1)
        // Above the 100 ms ceiling: halved per RTT down to 1/16, never below the minimum window.
        now += 0.2
        #expect(p.verdict(bench.context(now: now, lastFG: nil, srttMs: 350 + ser, minRTTMs: 200)) == .send(maxBytes: 7_924))
        for _ in 0..<10 {
            now += 0.2
            _ = p.verdict(bench.context(now: now, lastFG: nil, srttMs: 1_200 + ser, minRTTMs: 200))
        }
        #expect(p.currentScale == 1.0 / 16)
        #expect(p.verdict(bench.context(now: now, lastFG: nil, srttMs: 1_200 + ser, minRTTMs: 200)) == .send(maxBytes: 2_896))
        // Between half the target and the target: regrows to the model, not beyond.
        for _ in 0..<6 {
            now += 0.2
            _ = p.verdict(bench.context(now: now, lastFG: nil, unacked: 50_000, srttMs: 220 + ser, minRTTMs: 200))
        }
        #expect(p.currentScale == 1)
        // The defaults (pacing aside): a 10 ms target and no probing above the model window.
        let d = try #require(try BackgroundPolicies.parse("delay-target:pace=0") as? DelayTargetBackgroundPolicy)
        var t = 1.0
        #expect(d.verdict(bench.context(now: t, lastFG: nil, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 14_888))
        for _ in 0..<5 {
            t += 0.2
            _ = d.verdict(bench.context(now: t, lastFG: nil, unacked: 20_000, srttMs: 201 + ser, minRTTMs: 200))
        }
        #expect(d.currentScale == 1)
        // The target is a parameter; without kernel RTTs the estimate's RTT is the base.
        var params = DelayTargetBackgroundPolicy.Parameters()
        params.targetQueueingDelayMilliseconds = 50
        params.pacingGain = 0
        let q = DelayTargetBackgroundPolicy(parameters: params)
        #expect(q.verdict(bench.context(now: 1, lastFG: nil)) == .send(maxBytes: 17_448))
        // Each multisocket gets its own scale.
        let fresh = p.makeInstance() as! DelayTargetBackgroundPolicy
        #expect(fresh.currentScale == 1 && fresh !== p)
    }

    @Test("delay-target pacing: one segment per grant, the next only once the previous had time to cross the link at 1.25 x the estimate")
    func delayTargetPacing() throws {
        let p = DelayTargetBackgroundPolicy()
        #expect(p.parameters.pacingGain == 1.25)
        let ser = 1448.0 / 64
        /// A pacing hold until `at` seconds (to the microsecond: the times come from floating point).
        func pacedUntil(_ v: BackgroundVerdict, _ at: Double) -> Bool {
            guard v.reason == .pacing, case .wait(let until?) = v.decision else { return false }
            return until.distance(to: PolicyBench.at(at)).magnitude < 1_000
        }
        // 64,000 B/s: 5 ms of bandwidth is 320 B, so the quantum is one segment's payload (1,416 B),
        // which takes 1,416 / 80,000 s = 17.7 ms at 1.25 x the estimate. The first grant starts
        // with half a quantum's credit (8.85 ms).
        #expect(p.verdict(bench.context(now: 1, lastFG: nil, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 1_416))
        // Window room for ten segments (an ACK for a pair of segments, or the barrier lifting):
        // still one segment at a time, not a burst into the bottleneck queue.
        #expect(pacedUntil(p.verdict(bench.context(now: 1.001, lastFG: nil, unacked: 1_416, srttMs: 201 + ser, minRTTMs: 200)), 1.00885))
        #expect(p.verdict(bench.context(now: 1.00885, lastFG: nil, unacked: 1_416, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 1_416))
        #expect(pacedUntil(p.verdict(bench.context(now: 1.01, lastFG: nil, unacked: 2_832, srttMs: 201 + ser, minRTTMs: 200)), 1.02655))
        // A decision 23.45 ms late keeps only half a quantum's time as credit: the next one is due
        // 8.85 ms after it, not at once (no pair of segments).
        #expect(p.verdict(bench.context(now: 1.05, lastFG: nil, unacked: 2_832, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 1_416))
        #expect(pacedUntil(p.verdict(bench.context(now: 1.0501, lastFG: nil, unacked: 4_248, srttMs: 201 + ser, minRTTMs: 200)), 1.05885))
        // The window still binds first (a full window is a queueing-delay hold, not pacing).
        #expect(p.verdict(bench.context(now: 1.5, lastFG: nil, unacked: 14_000, srttMs: 201 + ser, minRTTMs: 200)).reason == .queueingDelay)
        // On a fast link the quantum is 5 ms of bandwidth: at 1 MB/s, 5,000 B every 4 ms.
        var wifi = bench
        wifi.bandwidthBytesPerSecond = 1_000_000
        wifi.kind = .wifi
        let w = DelayTargetBackgroundPolicy()
        #expect(w.verdict(wifi.context(now: 1, lastFG: nil, srttMs: 21, minRTTMs: 20)) == .send(maxBytes: 5_000))
        #expect(pacedUntil(w.verdict(wifi.context(now: 1.001, lastFG: nil, unacked: 5_000, srttMs: 21, minRTTMs: 20)), 1.002))
        #expect(w.verdict(wifi.context(now: 1.002, lastFG: nil, unacked: 5_000, srttMs: 21, minRTTMs: 20)) == .send(maxBytes: 5_000))
        #expect(pacedUntil(w.verdict(wifi.context(now: 1.003, lastFG: nil, unacked: 10_000, srttMs: 21, minRTTMs: 20)), 1.006))
        // Parameters: pace=0 turns it off (the whole room at once), the quantum is a parameter.
        let off = try #require(try BackgroundPolicies.parse("delay-target:pace=0") as? DelayTargetBackgroundPolicy)
        #expect(off.verdict(bench.context(now: 1, lastFG: nil, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 14_888))
        let big = try #require(try BackgroundPolicies.parse("delay-target:pace=2,pace-quantum-ms=50") as? DelayTargetBackgroundPolicy)
        #expect(big.verdict(bench.context(now: 1, lastFG: nil, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 3_200))
        #expect(pacedUntil(big.verdict(bench.context(now: 1.001, lastFG: nil, unacked: 3_200, srttMs: 201 + ser, minRTTMs: 200)), 1.0125))
        // An estimate far below the link (a prior, a link that just came back) paces at most one
        // segment per 100 ms, and a wait set by a low estimate shortens when the estimate rises.
        var slow = bench
        slow.bandwidthBytesPerSecond = 1_000
        let s = DelayTargetBackgroundPolicy()
        #expect(s.verdict(slow.context(now: 1, lastFG: nil, srttMs: 201, minRTTMs: 200)) == .send(maxBytes: 1_416))
        #expect(pacedUntil(s.verdict(slow.context(now: 1.01, lastFG: nil, unacked: 1_416, srttMs: 201, minRTTMs: 200)), 1.05))
        #expect(pacedUntil(s.verdict(bench.context(now: 1.011, lastFG: nil, unacked: 1_416, srttMs: 201 + ser, minRTTMs: 200)), 1.011 + 0.0177))
        // The pacing charges what the grant carried: a 100-byte BG message granted a whole quantum
        // holds the next grant for 1.25 ms, not 17.7 ms (an application's small BG acknowledgements
        // would otherwise go one per quantum, or one per 100 ms under a far-too-low estimate).
        let u = DelayTargetBackgroundPolicy()
        #expect(u.verdict(bench.context(now: 1, lastFG: nil, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 1_416))
        u.backgroundUsed(100)
        #expect(u.verdict(bench.context(now: 1.001, lastFG: nil, unacked: 100, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 1_416))
        u.backgroundUsed(1_416)
        // That one is charged in full, from where the 100 bytes' interval ended (0.99240 s, inside
        // the half-quantum credit): 0.99240 + 0.0177.
        #expect(pacedUntil(u.verdict(bench.context(now: 1.002, lastFG: nil, unacked: 1_516, srttMs: 201 + ser, minRTTMs: 200)), 1.0101))
        // A report with no grant pending (a hold came in between) changes nothing.
        u.backgroundUsed(0)
        #expect(pacedUntil(u.verdict(bench.context(now: 1.004, lastFG: nil, unacked: 1_516, srttMs: 201 + ser, minRTTMs: 200)), 1.0101))
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:pace=0.5") }
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:pace-quantum-ms=0") }
    }

    @Test("delay-target holds BG while the congestion window is full and the kernel has more than one pacing quantum unsent (BBR's ProbeRTT), then paces the refill")
    func delayTargetKernelBacklog() throws {
        let p = DelayTargetBackgroundPolicy()
        #expect(p.parameters.holdKernelBacklog)
        let ser = 1448.0 / 64
        func limited(_ c: BackgroundContext) -> BackgroundContext {
            var c = c
            c.kernelCongestionWindowLimited = true
            return c
        }
        // 64,000 B/s, 200 ms: a 14,888-byte window, a 1,416-byte quantum. Four segments in flight
        // (5,792 B, a congestion window cut to ProbeRTT's, all of it in use) and 1,500 B unsent:
        // the window has room for 7,596 B more, but they would wait in the kernel and leave
        // together when the congestion window reopens.
        let cut = limited(bench.context(now: 1, lastFG: nil, unsent: 1_500, unacked: 7_292, srttMs: 201 + ser, minRTTMs: 200))
        let held = p.verdict(cut)
        #expect(held.reason == .kernelBacklog)
        guard case .wait(let until?) = held.decision else { Issue.record("no re-check time"); return }
        #expect(until == PolicyBench.at(1.01))
        // Not a sign about the link: no probing of the estimate.
        #expect(p.linkEvidence(cut, verdict: held) == .none)
        // One quantum unsent (the latest grant) is normal, also with the congestion window full.
        #expect(p.verdict(limited(bench.context(now: 1.01, lastFG: nil, unsent: 1_416, unacked: 7_208, srttMs: 201 + ser, minRTTMs: 200)))
                == .send(maxBytes: 1_416))
        // Once the kernel has sent its backlog the refill goes one quantum per pacing interval.
        #expect(p.verdict(bench.context(now: 1.011, lastFG: nil, unacked: 8_624, srttMs: 201 + ser, minRTTMs: 200)).reason == .pacing)
        // Unsent bytes with room in the congestion window wait for the kernel's pacing or its
        // small-queues limit, not for acknowledgements: no hold.
        let q = DelayTargetBackgroundPolicy()
        #expect(q.verdict(bench.context(now: 1, lastFG: nil, unsent: 6_000, unacked: 7_292, srttMs: 201 + ser, minRTTMs: 200)) == .send(maxBytes: 1_416))
        // On a 1 MB/s link the allowance is what the link carries until the next re-check (10 ms:
        // 10,000 B, more than the 5,000-byte quantum): 10,000 B unsent go on, 10,001 B hold.
        var wifi = bench
        wifi.bandwidthBytesPerSecond = 1_000_000
        wifi.kind = .wifi
        #expect(DelayTargetBackgroundPolicy().verdict(limited(wifi.context(now: 1, lastFG: nil, unsent: 10_000, srttMs: 21, minRTTMs: 20)))
                == .send(maxBytes: 5_000))
        #expect(DelayTargetBackgroundPolicy().verdict(limited(wifi.context(now: 1, lastFG: nil, unsent: 10_001, srttMs: 21, minRTTMs: 20))).reason
                == .kernelBacklog)
        // kernel-backlog=ignore: grants go into the backlog (the comparison without the hold).
        let ignore = try #require(try BackgroundPolicies.parse("delay-target:kernel-backlog=ignore") as? DelayTargetBackgroundPolicy)
        #expect(ignore.verdict(cut) == .send(maxBytes: 1_416))
        #expect(throws: IntNWError.invalidArgument("delay-target kernel-backlog=maybe: expected hold or ignore")) {
            try BackgroundPolicies.parse("delay-target:kernel-backlog=maybe")
        }
    }

    @Test("delay-target's link evidence: headroom when its window holds BG below the target (below half of it with probe-below=0.5), queueing at the target, nothing when probing is off")
    func delayTargetLinkEvidence() throws {
        let p = DelayTargetBackgroundPolicy()
        let ser = 1448.0 / 64_000 * 1000  // one full segment at 64 KB/s, ms
        // A full window (the model window is 14,888 B) and 2 ms of queueing: headroom.
        let full = bench.context(now: 1, lastFG: nil, unacked: 14_000, srttMs: 202 + ser, minRTTMs: 200)
        let held = p.verdict(full)
        #expect(held.reason == .queueingDelay)
        // With it, the step one more segment makes of that window (probes never smaller).
        guard case .headroom(let gain, let step, let fill) = p.linkEvidence(full, verdict: held) else {
            Issue.record("no headroom for a full window without queueing")
            return
        }
        #expect(gain == 1.25 && abs(step - (1 + 1448.0 / 14_888)) < 1e-6)
        // The default probes from the delivery rate measured (a fill share of 1); probe-from=window
        // from what the window allowed: the share a window less one segment shows.
        #expect(fill == 1 && p.parameters.probeFromWindow == false)
        let fromWindow = try #require(try BackgroundPolicies.parse("delay-target:probe-from=window") as? DelayTargetBackgroundPolicy)
        guard case .headroom(_, let windowStep, let windowFill) = fromWindow.linkEvidence(full, verdict: fromWindow.verdict(full)) else {
            Issue.record("probe-from=window: no headroom")
            return
        }
        #expect(abs(windowStep - step) < 1e-9 && abs(windowFill - (1 - 1448.0 / 14_888)) < 1e-6)
        let measured = try #require(try BackgroundPolicies.parse("delay-target:probe-from=measured") as? DelayTargetBackgroundPolicy)
        #expect(measured.parameters == DelayTargetBackgroundPolicy.Parameters())
        #expect(throws: IntNWError.invalidArgument("delay-target probe-from=both: expected measured or window")) {
            try BackgroundPolicies.parse("delay-target:probe-from=both")
        }
        // The same window with 7 ms of queueing: headroom still (under the 10 ms target); with
        // 10 ms: queueing, whatever the verdict.
        let between = bench.context(now: 1, lastFG: nil, unacked: 14_000, srttMs: 207 + ser, minRTTMs: 200)
        #expect(p.linkEvidence(between, verdict: held) != LinkEvidence.none)
        let queued = bench.context(now: 1, lastFG: nil, unacked: 0, srttMs: 210 + ser, minRTTMs: 200)
        #expect(p.linkEvidence(queued, verdict: .send(maxBytes: 1_416)) == .queueing)
        // Room in the window (the grant is paced or sent): no headroom, the delivery rate shows the link.
        let room = bench.context(now: 1, lastFG: nil, unacked: 0, srttMs: 201 + ser, minRTTMs: 200)
        #expect(p.linkEvidence(room, verdict: .send(maxBytes: 1_416)) == LinkEvidence.none)
        #expect(p.linkEvidence(room, verdict: .hold(.pacing, untilNs: nil)) == LinkEvidence.none)
        // probe=0 turns it off; probe=2 is the gain; out-of-range gains are refused.
        let off = try #require(try BackgroundPolicies.parse("delay-target:probe=0") as? DelayTargetBackgroundPolicy)
        #expect(off.linkEvidence(full, verdict: held) == LinkEvidence.none)
        let two = try #require(try BackgroundPolicies.parse("delay-target:probe=2") as? DelayTargetBackgroundPolicy)
        guard case .headroom(let twoGain, let twoStep, _) = two.linkEvidence(full, verdict: held) else {
            Issue.record("probe=2: no headroom")
            return
        }
        #expect(twoGain == 2 && abs(twoStep - step) < 1e-9)
        // A slow link's window of two segments (the minimum): one more is half as much again.
        var slowBench = bench
        slowBench.bandwidthBytesPerSecond = 8_000
        slowBench.rttMilliseconds = 60
        let slow = slowBench.context(now: 1, lastFG: nil, unacked: 2_896, srttMs: 60 + 1448.0 / 8_000 * 1000, minRTTMs: 60)
        let slowHeld = p.verdict(slow)
        #expect(slowHeld.reason == .queueingDelay)
        guard case .headroom(_, let slowStep, _) = p.linkEvidence(slow, verdict: slowHeld) else {
            Issue.record("no headroom for the minimum window")
            return
        }
        #expect(abs(slowStep - 1.5) < 1e-9)
        // probe-below=0.5 (the default until 7 Dec): 7 ms is neither headroom nor queueing; 10 ms
        // stays queueing.
        let half = try #require(try BackgroundPolicies.parse("delay-target:probe-below=0.5") as? DelayTargetBackgroundPolicy)
        #expect(half.linkEvidence(between, verdict: held) == LinkEvidence.none)
        #expect(half.linkEvidence(full, verdict: held) != LinkEvidence.none)
        #expect(half.linkEvidence(queued, verdict: .send(maxBytes: 1_416)) == .queueing)
        for bad in ["probe=1", "probe=0.5", "probe=5", "probe=x", "probe-below=0", "probe-below=1.5", "probe-below=nan"] {
            #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:\(bad)") }
        }
    }

    @Test("delay-target's window-slack: the model window grows by exactly that many full segments (the default adds none); bad values are refused")
    func delayTargetWindowSlack() throws {
        let ser = 1448.0 / 64_000 * 1000
        let c = bench.context(now: 1, lastFG: nil, unacked: 14_000, srttMs: 202 + ser, minRTTMs: 200)
        let plain = DelayTargetBackgroundPolicy()
        #expect(plain.parameters.windowSlackSegments == 0)
        let one = try #require(try BackgroundPolicies.parse("delay-target:window-slack=1") as? DelayTargetBackgroundPolicy)
        let half = try #require(try BackgroundPolicies.parse("delay-target:window-slack=0.5") as? DelayTargetBackgroundPolicy)
        #expect(abs(one.modelWindowBytes(c) - plain.modelWindowBytes(c) - 1_448) < 1e-6)
        #expect(abs(half.modelWindowBytes(c) - plain.modelWindowBytes(c) - 724) < 1e-6)
        for bad in ["window-slack=-1", "window-slack=5", "window-slack=x", "window-slack=nan"] {
            #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("delay-target:\(bad)") }
        }
    }

    @Test("delay-target's barrier: FG elsewhere holds BG until it has been acknowledged (barrier=acked, as the note's policies) or sent (barrier=sent)")
    func delayTargetBarrier() throws {
        // The default is the wire barrier (the policy applies it; below), not the scheduler's acked one.
        #expect(DelayTargetBackgroundPolicy().parameters.barrier == .wire && !DelayTargetBackgroundPolicy().honorsForegroundBarrier)
        let p = try #require(try BackgroundPolicies.parse("delay-target:barrier=sent,pace=0") as? DelayTargetBackgroundPolicy)
        #expect(p.parameters.barrier == .sent && !p.honorsForegroundBarrier)
        func ctx(_ now: Double, lastFG: Double?, elsewhere: Int) -> BackgroundContext {
            var c = bench.context(now: now, lastFG: lastFG, srttMs: 201 + 1448.0 / 64, minRTTMs: 200)
            c.foregroundElsewhere = elsewhere
            return c
        }
        let recheck = PolicyBench.at(10) + 10_000_000
        // FG elsewhere first seen at 10 s; its last activity (a reply at 9.5 s) predates it: not sent yet.
        #expect(p.verdict(ctx(10, lastFG: 9.5, elsewhere: 1)) == .hold(.foregroundElsewhere, untilNs: recheck))
        #expect(p.verdict(ctx(10.005, lastFG: 9.5, elsewhere: 1)).reason == .foregroundElsewhere)
        // Sent at 10.006 s: BG may go (behind it at the bottleneck), within the window.
        #expect(p.verdict(ctx(10.007, lastFG: 10.006, elsewhere: 1)) == .send(maxBytes: 14_888))
        // Activity up to 20 ms before the barrier was first seen counts (decisions notice it late) ...
        let q = p.makeInstance() as! DelayTargetBackgroundPolicy
        #expect(q.verdict(ctx(10, lastFG: 9.981, elsewhere: 1)).reason == nil)
        // ... 21 ms before does not.
        let r = p.makeInstance() as! DelayTargetBackgroundPolicy
        #expect(r.verdict(ctx(10, lastFG: 9.979, elsewhere: 1)).reason == .foregroundElsewhere)
        // The barrier ends; the next FG elsewhere starts a new one (the old send does not count).
        #expect(p.verdict(ctx(10.3, lastFG: 10.25, elsewhere: 0)).reason == nil)
        #expect(p.verdict(ctx(11, lastFG: 10.25, elsewhere: 1)).reason == .foregroundElsewhere)
        #expect(p.verdict(ctx(11.01, lastFG: 11.002, elsewhere: 1)).reason == nil)
        // barrier=acked: the scheduler holds BG for the whole time FG is outstanding elsewhere.
        let a = try #require(try BackgroundPolicies.parse("delay-target:barrier=acked") as? DelayTargetBackgroundPolicy)
        #expect(a.parameters.barrier == .acked && a.honorsForegroundBarrier)
        #expect(throws: IntNWError.invalidArgument("delay-target barrier=never: expected acked, wire or sent")) {
            try BackgroundPolicies.parse("delay-target:barrier=never")
        }
        // The note's policies keep the barrier.
        for n in [BackgroundPolicyName.exclusive, .anticipatory, .trickle] {
            #expect((n.makePolicy() as? any ExplainedBackgroundPolicy)?.honorsForegroundBarrier == true, "\(n)")
        }
    }

    @Test("delay-target barrier=wire: FG elsewhere holds BG exactly while some of it is not yet sent by its kernel, whatever the FG timestamps say")
    func delayTargetWireBarrier() throws {
        let p = try #require(try BackgroundPolicies.parse("delay-target:barrier=wire,pace=0") as? DelayTargetBackgroundPolicy)
        // The policy applies it (the scheduler's acked barrier would hold BG until the FG's ACK).
        #expect(p.parameters.barrier == .wire && !p.honorsForegroundBarrier)
        func ctx(_ now: Double, lastFG: Double?, elsewhere: Int, unsent: Int, unacked: Int = 0) -> BackgroundContext {
            var c = bench.context(now: now, lastFG: lastFG, unacked: unacked, srttMs: 201 + 1448.0 / 64, minRTTMs: 200)
            c.foregroundElsewhere = elsewhere
            c.foregroundElsewhereUnsent = unsent
            return c
        }
        let recheck = PolicyBench.at(10) + 10_000_000
        // FG elsewhere, not yet sent, although its sender already stamped the last-FG time (what
        // barrier=sent goes by): held. Catches releasing BG while FG bytes are still in a socket.
        #expect(p.verdict(ctx(10, lastFG: 10, elsewhere: 1, unsent: 1)) == .hold(.foregroundElsewhere, untilNs: recheck))
        // Two holders, one of them sent: still held.
        #expect(p.verdict(ctx(10, lastFG: 10, elsewhere: 2, unsent: 1)).reason == .foregroundElsewhere)
        // Everything sent, though unacknowledged: BG may go at once, within the window. Catches the
        // acked barrier's round trip of idling (and a stale last-FG time from before the barrier,
        // which barrier=sent would wait on, does not matter here).
        #expect(p.verdict(ctx(10.001, lastFG: 9.5, elsewhere: 1, unsent: 0)) == .send(maxBytes: 14_888))
        // The window still bounds it: the wire barrier does not open the budget.
        #expect(p.verdict(ctx(10.002, lastFG: 9.5, elsewhere: 1, unsent: 0, unacked: 14_000)).reason == .queueingDelay)
        // A context that claims unsent FG without FG outstanding (cannot happen; still held, the safe way).
        #expect(p.verdict(ctx(10.003, lastFG: 9.5, elsewhere: 0, unsent: 1)).reason == .foregroundElsewhere)
        // The other barriers ignore the unsent count: acked is the scheduler's, sent goes by time.
        let s = try #require(try BackgroundPolicies.parse("delay-target:barrier=sent,pace=0") as? DelayTargetBackgroundPolicy)
        #expect(s.verdict(ctx(10, lastFG: 9.995, elsewhere: 1, unsent: 1)).reason == nil)
    }

    @Test("policy names: parse, environment default, unknown names rejected with the list")
    func names() throws {
        for n in BackgroundPolicyName.allCases {
            #expect(try BackgroundPolicyName.parse(n.rawValue) == n)
            let made = n.makePolicy() as? any ExplainedBackgroundPolicy
            #expect(made?.name == n.rawValue)
        }
        #expect(try BackgroundPolicyName.parse(" Anticipatory ") == .anticipatory)
        // Parameters after the name.
        let a = try #require(try BackgroundPolicies.parse("anticipatory:empty=unacked,idle-rtts=2") as? AnticipatoryBackgroundPolicy)
        #expect(a.parameters.emptySocketTest == .nothingUnacknowledged && a.parameters.idleRTTMultiple == 2)
        let d = try #require(try BackgroundPolicies.parse("delay-target:target-ms=50") as? DelayTargetBackgroundPolicy)
        #expect(d.parameters.targetQueueingDelayMilliseconds == 50)
        let t = try #require(try BackgroundPolicies.parse("trickle:chunk-s=0.1,idle-after-s=2") as? TrickleBackgroundPolicy)
        #expect(t.parameters.chunkSeconds == 0.1 && t.parameters.idleAfterSeconds == 2)
        #expect(throws: IntNWError.invalidArgument("'speed=2' is not a parameter of trickle (valid: chunk-s, idle-after-s, idle-chunk-s)")) {
            try BackgroundPolicies.parse("trickle:speed=2")
        }
        #expect(throws: IntNWError.invalidArgument("anticipatory empty=never: expected unsent, unacked or below-chunk")) {
            try BackgroundPolicies.parse("anticipatory:empty=never")
        }
        #expect(throws: IntNWError.invalidArgument("delay-target target-ms=-5: expected a positive number")) {
            try BackgroundPolicies.parse("delay-target:target-ms=-5")
        }
        #expect(throws: IntNWError.self) { try BackgroundPolicies.parse("permissive:x=1") }
        #expect(throws: IntNWError.invalidArgument("background policy 'fast' is not one of exclusive, permissive, anticipatory, trickle, delay-target")) {
            try BackgroundPolicyName.parse("fast")
        }
    }
}
