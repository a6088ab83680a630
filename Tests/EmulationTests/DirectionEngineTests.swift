@testable import Emulation
import Testing

/// The user-space link model driven by a virtual clock (nanoseconds), no devices involved.
struct DirectionEngineTests {
    let ms: UInt64 = 1_000_000

    func engine(rate: Double?, delayMs: Double, loss: Double = 0, queueLimit: Int = 1 << 20,
                arena: Int = 1 << 20, seed: UInt64 = 7) -> DirectionEngine {
        let ring = PacketRing(arenaBytes: arena, descriptorCapacity: 1024, maxPacketBytes: 2048)
        return DirectionEngine(link: "wifi", direction: .uplink,
                               parameters: DirectionParameters(bytesPerSecond: rate, delayMicroseconds: delayMs * 1000, lossFraction: loss),
                               queueLimitBytes: queueLimit, ring: ring, seed: seed)
    }

    /// Admits a packet of `length` bytes whose first byte is `tag`.
    @discardableResult
    func send(_ e: inout DirectionEngine, length: Int, tag: UInt8 = 0, at now: UInt64) -> DirectionEngine.Verdict.Kind {
        let buf = e.ring.reserve()!
        buf[0] = tag
        return e.admit(buf, length: length, nowNs: now)
    }

    /// Runs serialize+deliver at `now`; returns the tags delivered.
    func step(_ e: inout DirectionEngine, at now: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        _ = e.serialize(nowNs: now)
        _ = e.deliver(nowNs: now) { bytes, _ in out.append(bytes[0]); return true }
        return out
    }

    @Test func unlimitedRateDelaysByPropagationOnly() {
        var e = engine(rate: nil, delayMs: 10)
        send(&e, length: 1500, tag: 1, at: 0)
        #expect(step(&e, at: 10 * ms - 1) == [])
        #expect(step(&e, at: 10 * ms) == [1])
        #expect(e.counters.packetsOut == 1 && e.counters.bytesOut == 1500)
    }

    @Test func serializationIsByteAccurate() {
        // 1000 B/s: a 100-byte packet takes exactly 100 ms on the wire.
        var e = engine(rate: 1000, delayMs: 5)
        for t in 1...3 { send(&e, length: 100, tag: UInt8(t), at: 0) }
        #expect(e.serialize(nowNs: 0) == 100 * ms, "head finishes serializing at 100 ms")
        #expect(step(&e, at: 105 * ms - 1) == [])
        #expect(step(&e, at: 105 * ms) == [1])
        #expect(step(&e, at: 205 * ms) == [2])
        #expect(step(&e, at: 305 * ms) == [3])
    }

    @Test func idleLinkDoesNotBankCredit() {
        var e = engine(rate: 1000, delayMs: 0)
        send(&e, length: 100, tag: 1, at: 0)
        #expect(step(&e, at: 100 * ms) == [1])
        // Arriving long after the link went idle: serialization starts at arrival, not earlier.
        send(&e, length: 100, tag: 2, at: 1000 * ms)
        #expect(step(&e, at: 1099 * ms) == [])
        #expect(step(&e, at: 1100 * ms) == [2])
    }

    @Test func dropTailQueueLimitsUnserializedBytes() {
        var e = engine(rate: 1000, delayMs: 0, queueLimit: 250)
        #expect(send(&e, length: 100, at: 0) == .queued)
        #expect(send(&e, length: 100, at: 0) == .queued)
        #expect(send(&e, length: 100, at: 0) == .queueDrop)
        #expect(e.counters.queueDrops == 1)
        // Once the head has serialized, there is room again.
        _ = step(&e, at: 100 * ms)
        #expect(send(&e, length: 100, at: 100 * ms) == .queued)
    }

    @Test func seededLossIsDeterministicAndNearItsRate() {
        func run(seed: UInt64) -> [Bool] {
            var e = engine(rate: nil, delayMs: 0, loss: 0.3, seed: seed)
            var fates: [Bool] = []
            for i in 0..<10_000 {
                let v = send(&e, length: 64, at: UInt64(i) * ms)
                fates.append(v == .queued)
                _ = step(&e, at: UInt64(i) * ms)
            }
            return fates
        }
        let a = run(seed: 42), b = run(seed: 42), c = run(seed: 43)
        #expect(a == b)
        #expect(a != c)
        let lossRate = Double(a.filter { !$0 }.count) / Double(a.count)
        #expect(abs(lossRate - 0.3) < 0.02, "loss rate \(lossRate)")
    }

    @Test func outageDropsArrivalsAndPacketsInFlight() {
        var e = engine(rate: nil, delayMs: 50)
        send(&e, length: 100, tag: 1, at: 0)
        _ = step(&e, at: 0)
        var p = e.parameters
        p.available = false
        e.update(p, queueLimitBytes: 1 << 20)
        #expect(send(&e, length: 100, tag: 2, at: 10 * ms) == .outageDrop)
        // The packet already on the wire is due at 50 ms, inside the outage: it never arrives.
        #expect(step(&e, at: 60 * ms) == [])
        #expect(e.counters.outageDrops == 2)
        p.available = true
        e.update(p, queueLimitBytes: 1 << 20)
        send(&e, length: 100, tag: 3, at: 100 * ms)
        #expect(step(&e, at: 150 * ms) == [3])
    }

    @Test func shrinkingDelayNeverReorders() {
        var e = engine(rate: nil, delayMs: 100)
        send(&e, length: 100, tag: 1, at: 0)
        _ = step(&e, at: 0)
        var p = e.parameters
        p.delayMicroseconds = 10_000
        e.update(p, queueLimitBytes: 1 << 20)
        send(&e, length: 100, tag: 2, at: 1 * ms)
        #expect(step(&e, at: 50 * ms) == [], "packet 2 must wait behind packet 1")
        #expect(step(&e, at: 100 * ms) == [1, 2])
    }

    @Test func rateChangeAppliesToQueuedPackets() {
        var e = engine(rate: 1000, delayMs: 0)
        send(&e, length: 100, tag: 1, at: 0)
        send(&e, length: 100, tag: 2, at: 0)
        #expect(step(&e, at: 100 * ms) == [1])
        var p = e.parameters
        p.bytesPerSecond = 10_000
        e.update(p, queueLimitBytes: 1 << 20)
        // Packet 2 starts serializing at 100 ms at the new rate: 10 ms.
        #expect(step(&e, at: 110 * ms) == [2])
    }

    /// A packet held back by a very slow rate is not released "in the past" when the rate rises: it
    /// finishes serializing no earlier than the change, then takes its propagation delay.
    @Test func rateRiseDoesNotReleaseAPacketBeforeTheChange() {
        var e = engine(rate: 1000, delayMs: 50)
        send(&e, length: 1500, tag: 1, at: 0)  // 1.5 s at 1000 B/s
        #expect(step(&e, at: 1000 * ms) == [])
        var p = e.parameters
        p.bytesPerSecond = 1_000_000
        e.update(p, queueLimitBytes: 1 << 20, nowNs: 1000 * ms)
        #expect(step(&e, at: 1010 * ms) == [], "released before the change + its 50 ms delay")
        #expect(step(&e, at: 1051 * ms) == [1])
        #expect(e.lateness.percentileMicroseconds(0.99) <= 1000)
    }

    @Test func arenaWrapsWithoutCorruptingPackets() {
        // A small arena forces many wrap-arounds; every packet must come out intact and in order.
        var e = engine(rate: nil, delayMs: 1, arena: 8 * 2048)
        var next: UInt8 = 0
        var expected: UInt8 = 0
        var delivered = 0
        for round in 0..<2000 {
            let now = UInt64(round) * ms
            while let buf = e.ring.reserve(), e.ring.count < 5 {
                let len = 1 + Int(next) * 7 % 1900
                for i in 0..<len { buf[i] = next &+ UInt8(truncatingIfNeeded: i) }
                _ = e.admit(buf, length: len, nowNs: now)
                next &+= 1
            }
            _ = e.serialize(nowNs: now)
            _ = e.deliver(nowNs: now) { bytes, _ in
                let len = 1 + Int(expected) * 7 % 1900
                #expect(bytes.count == len)
                #expect(bytes.indices.allSatisfy { bytes[$0] == expected &+ UInt8(truncatingIfNeeded: $0) })
                expected &+= 1
                delivered += 1
                return true
            }
        }
        #expect(delivered >= 4000, "enough traffic to wrap the 16 KiB arena hundreds of times")
    }

    @Test func latencyHistogramPercentiles() {
        var h = LatenessHistogram()
        for us in 0..<100 { h.record(nanoseconds: UInt64(us) * 1000) }
        #expect(h.percentileMicroseconds(0.5) == 49)
        #expect(h.percentileMicroseconds(0.99) == 98)
        #expect(h.total == 100)
    }

    @Test("the host timer check sleeps each interval and reads its lateness (a behaviour check: no timing bound)")
    func hostTimerCheckSleeps() {
        let start = ContinuousClock.now
        let r = HostTimerCheck.measure(wakeUps: 20, intervalNanoseconds: 2_000_000)
        let elapsed = ContinuousClock.now - start
        #expect(r.wakeUps == 20 && r.intervalNanoseconds == 2_000_000 && r.openSummary.hasPrefix("20 sleeps of 2 ms woke up to "))
        #expect(elapsed >= .milliseconds(40), "20 sleeps of 2 ms took \(elapsed)")
        #expect(r.p99Microseconds >= 0 && r.p99Microseconds <= r.maxMicroseconds + 1)
    }
}

struct ReplayTimelineTests {
    final class NullShaper: Shaper {
        let kind = ShaperKind.userspace
        func attach(topology: TopologySpec) throws {}
        func apply(link: String, direction: LinkDirection, parameters: DirectionParameters) throws {}
        func setCarrier(link: String, up: Bool) throws {}
        func counters() -> [DirectionCounters] { [] }
        func detach() {}
    }

    func trace(_ wifi: [Bool]) -> Trace {
        let on = LinkConditions(downBytesPerSecond: 1000, upBytesPerSecond: 1000, rttMilliseconds: 10)
        let off = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)
        let cell = LinkConditions(downBytesPerSecond: 100, upBytesPerSecond: 100, rttMilliseconds: 100)
        return Trace(slices: wifi.enumerated().map { TraceSlice(startSeconds: Double($0.offset), conditions: [$0.element ? on : off, cell]) },
                     durationSeconds: Double(wifi.count), source: "test")
    }

    func events(_ t: Trace, delay: Double, duration: Double? = nil) -> [String] {
        let r = TraceReplayer(trace: t, linkNames: ["wifi", "cellular"], shaper: NullShaper(),
                              notifyDelaySeconds: delay, durationSeconds: duration, logger: .init(label: "t"))
        return r.timeline().filter { $0.event != .slice }.map { "\($0.event.rawValue)@\($0.seconds)" }
    }

    @Test func carrierFollowsNotificationDelay() {
        // WiFi gone for 3 s with a 2 s notification delay: carrier down at 3 s, up when WiFi returns at 4 s.
        #expect(events(trace([true, false, false, false, true]), delay: 2) == ["carrierDown@3.0", "carrierUp@4.0"])
    }

    @Test func shortOutageNeverReachesTheOS() {
        #expect(events(trace([true, false, true, false, true]), delay: 2) == [])
    }

    @Test func outageAtTheEndStaysDown() {
        #expect(events(trace([true, true, false, false, false]), delay: 1) == ["carrierDown@3.0"])
    }

    @Test func loopingTraceRepeatsEvents() {
        #expect(events(trace([true, false, false]), delay: 0.5, duration: 6) ==
                ["carrierDown@1.5", "carrierUp@3.0", "carrierDown@4.5"])
    }

    @Test func sliceParametersCarryWholeSet() {
        let t = trace([false])
        let r = TraceReplayer(trace: t, linkNames: ["wifi", "cellular"], shaper: NullShaper(),
                              notifyDelaySeconds: 2, logger: .init(label: "t"))
        let p = r.parameters(for: t.slices[0])
        #expect(p.count == 4)
        #expect(p.filter { $0.link == "wifi" }.allSatisfy { !$0.params.available })
        let cellUp = p.first { $0.link == "cellular" && $0.direction == .uplink }!.params
        #expect(cellUp.available && cellUp.bytesPerSecond == 1000 && cellUp.delayMicroseconds == 50_000)
    }
}
