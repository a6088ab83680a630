import Testing
@testable import Emulation

@Suite struct TraceFailuresTests {
    static let wifi = LinkConditions(downBytesPerSecond: 1_000_000, upBytesPerSecond: 500_000, rttMilliseconds: 40)
    static let cell = LinkConditions(downBytesPerSecond: 128_000, upBytesPerSecond: 64_000, rttMilliseconds: 200)
    static let base = Trace.constant(wifi: wifi, cellular: cell, durationSeconds: 60)

    /// The trace survives the canonical text format (so it is valid: increasing starts, sane values).
    func roundTrips(_ t: Trace) throws {
        let text = TraceWriter.text(of: t)
        let back = try TraceParser.parse(text, source: "round-trip")
        #expect(back.slices.count == t.slices.count)
        #expect(back.durationSeconds == t.durationSeconds)
    }

    func wifiAt(_ t: Trace, _ s: Double) -> LinkConditions { t.slices[t.sliceIndex(at: s)].conditions[0] }

    func carrierEvents(_ t: Trace, delay: Double) -> [String] {
        let r = TraceReplayer(trace: t, linkNames: ["wifi", "cellular"], shaper: ReplayTimelineTests.NullShaper(),
                              notifyDelaySeconds: delay, logger: .init(label: "t"))
        return r.timeline().filter { $0.event != .slice }.map { "\($0.event.rawValue)@\($0.seconds)" }
    }

    @Test func blackoutDropsWiFiOnlyInItsWindow() throws {
        let t = try Self.base.withBlackout(atSeconds: 30, durationSeconds: 10)
        #expect(t.slices.map(\.startSeconds) == [0, 30, 40])
        #expect(wifiAt(t, 29.9) == Self.wifi)
        #expect(!t.isAvailable(link: 0, in: t.slices[t.sliceIndex(at: 30)]))
        #expect(!t.isAvailable(link: 0, in: t.slices[t.sliceIndex(at: 39.9)]))
        #expect(wifiAt(t, 40) == Self.wifi)
        // Cellular is untouched everywhere.
        #expect(t.slices.allSatisfy { $0.conditions[1] == Self.cell })
        #expect(t.source.contains("blackout wifi@30+10"))
        try roundTrips(t)
        // The replayer turns it into a late carrier-down and an immediate carrier-up.
        #expect(carrierEvents(t, delay: 5) == ["carrierDown@35.0", "carrierUp@40.0"])
        // Shorter than the notification delay: the OS never hears of it.
        #expect(carrierEvents(try Self.base.withBlackout(atSeconds: 30, durationSeconds: 3), delay: 5) == [])
    }

    @Test func blackoutKeepsExistingSlicesAndClipsAtTheEnd() throws {
        var t = Self.base
        t.slices.append(TraceSlice(startSeconds: 35, conditions: [LinkConditions(downBytesPerSecond: 2_000_000, upBytesPerSecond: 900_000, rttMilliseconds: 20), Self.cell]))
        let b = try t.withBlackout(atSeconds: 33, durationSeconds: 100)
        #expect(b.slices.map(\.startSeconds) == [0, 33, 35])
        #expect(b.durationSeconds == 60)
        #expect(!b.isAvailable(link: 0, in: b.slices[1]) && !b.isAvailable(link: 0, in: b.slices[2]))
        #expect(carrierEvents(b, delay: 2) == ["carrierDown@35.0"])
        try roundTrips(b)
    }

    @Test func fadeDegradesStepByStepThenGoesOut() throws {
        let t = try Self.base.withFade(startSeconds: 30, fadeSeconds: 5, outSeconds: 10)
        // 0.25 s steps inside the fade, then the outage, then WiFi is back.
        let starts = t.slices.map(\.startSeconds)
        #expect(starts.first == 0 && starts.contains(30) && starts.contains(35) && starts.contains(45))
        #expect(starts.filter { $0 >= 30 && $0 < 35 }.count == 20)
        var lastLoss = 0.0, lastRate = Double.infinity, lastRTT = 0.0
        for s in stride(from: 30.0, to: 35.0, by: 0.25) {
            let c = wifiAt(t, s + 0.01)
            #expect(c.hasBandwidth)
            #expect(c.lossFraction > lastLoss && c.upBytesPerSecond < lastRate && c.rttMilliseconds > lastRTT)
            (lastLoss, lastRate, lastRTT) = (c.lossFraction, c.upBytesPerSecond, c.rttMilliseconds)
        }
        // Final step reaches the profile's end values.
        let final = wifiAt(t, 34.9)
        #expect(abs(final.lossFraction - 0.5) < 1e-9)
        #expect(abs(final.upBytesPerSecond - 50_000) < 1e-6)
        #expect(abs(final.rttMilliseconds - 80) < 1e-9)
        #expect(!t.isAvailable(link: 0, in: t.slices[t.sliceIndex(at: 35)]))
        #expect(!t.isAvailable(link: 0, in: t.slices[t.sliceIndex(at: 44.9)]))
        #expect(wifiAt(t, 45) == Self.wifi)
        #expect(t.slices.allSatisfy { $0.conditions[1] == Self.cell })
        try roundTrips(t)
        // Out of range from 35 s: the carrier goes down a notification delay later.
        #expect(carrierEvents(t, delay: 2) == ["carrierDown@37.0", "carrierUp@45.0"])
    }

    @Test func fadeWithoutOutTimeStaysOutToTheEnd() throws {
        let t = try Self.base.withFade(startSeconds: 10, fadeSeconds: 1,
                                       profile: FadeProfile(stepSeconds: 0.1, finalLossFraction: 0.9))
        #expect(t.slices.filter { $0.startSeconds >= 10 && $0.startSeconds < 11 }.count == 10)
        #expect(abs(wifiAt(t, 10.95).lossFraction - 0.9) < 1e-9)
        #expect(!t.isAvailable(link: 0, in: t.slices.last!))
        #expect(carrierEvents(t, delay: 2) == ["carrierDown@13.0"])
    }

    @Test func parsesTheCommandLineSyntax() throws {
        #expect(try LinkFailure.parse("blackout@30+10") == .blackout(atSeconds: 30, durationSeconds: 10))
        #expect(try LinkFailure.parse("fade@30+5") == .fade(startSeconds: 30, fadeSeconds: 5, outSeconds: nil))
        #expect(try LinkFailure.parse("Fade@2.5+1.5+20") == .fade(startSeconds: 2.5, fadeSeconds: 1.5, outSeconds: 20))
        for bad in ["blackout", "blackout@30", "blackout@30+0", "blackout@x+1", "blackout@-1+2", "fade@1+2+3+4",
                    "storm@1+2", "blackout@30+10@2", "fade@1+nan", "fade@1+2+0"] {
            #expect(throws: TraceFailureError.self, "\(bad)") { try LinkFailure.parse(bad) }
        }
        let applied = try LinkFailure.parse("blackout@5+1").apply(to: Self.base)
        #expect(applied.slices.map(\.startSeconds) == [0, 5, 6])
    }

    @Test func rejectsWhatCannotBeApplied() {
        #expect(throws: TraceFailureError.unknownLink("lte", available: ["wifi", "cellular"])) {
            try Self.base.withBlackout(link: "lte", atSeconds: 1, durationSeconds: 1)
        }
        #expect(throws: TraceFailureError.outsideTrace(startSeconds: 60, durationSeconds: 60)) {
            try Self.base.withBlackout(atSeconds: 60, durationSeconds: 1)
        }
        #expect(throws: TraceFailureError.self) { try Self.base.withFade(startSeconds: 1, fadeSeconds: 1, profile: FadeProfile(stepSeconds: 0)) }
        #expect(throws: TraceFailureError.self) { try Self.base.withFade(startSeconds: 1, fadeSeconds: 1, profile: FadeProfile(finalRateFraction: 0)) }
        // Error text is one line naming the problem.
        #expect("\(TraceFailureError.badSpec("x", "expected KIND@START+DURATION"))" == "failure 'x': expected KIND@START+DURATION")
    }

    @Test func failingCellularIsAllowed() throws {
        let t = try Self.base.withBlackout(link: "cellular", atSeconds: 1, durationSeconds: 2)
        #expect(t.slices[1].conditions[1].upBytesPerSecond == 0)
        #expect(t.slices[1].conditions[0] == Self.wifi)
    }
}
