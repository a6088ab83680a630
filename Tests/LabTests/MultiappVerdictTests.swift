import Emulation
import Foundation
import Testing
@testable import Analysis
@testable import Lab

/// The multiapp verdict and key metrics on fake trial outcomes: it holds only when every clause of
/// the expectation holds, and says by how much it missed otherwise.
@Suite struct MultiappVerdictTests {
    let e = MultiappExperiment()
    static let bin: UInt64 = 100_000_000

    /// A fake trial: FG requests every second from 5 s, with the given app-perceived latencies (nil:
    /// unanswered), wire latency `wireMs` each; BG sending `bgBefore` B/s before 5 s and `bgAfter` B/s
    /// from then on; FG 200 B per request.
    static func outcome(_ variant: String, trial: Int = 1, fgMs: [Double?], wireMs: Double = 210,
                        bgBefore: Double = 60_000, bgAfter: Double = 50_000) -> TrialOutcome {
        let plan = TrialPlan(experiment: "multiapp", variant: variant, trial: trial,
                             trace: Trace.constant(wifi: LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0),
                                                   cellular: LinkConditions(downBytesPerSecond: 128_000, upBytesPerSecond: 64_000, rttMilliseconds: 200),
                                                   durationSeconds: 30),
                             durationSeconds: 20, apps: [])
        let origin: UInt64 = 1_700_000_000_000_000_000
        var samples: [AppLatencySample] = []
        for (i, l) in fgMs.enumerated() {
            let send = origin + UInt64(5 + i) * 1_000_000_000
            samples.append(AppLatencySample(app: "fg", sequence: UInt64(i), sendNanoseconds: send,
                                            receiveNanoseconds: l.map { send + UInt64($0 * 1e6) },
                                            wireLatencyNanoseconds: l == nil ? nil : UInt64(wireMs * 1e6)))
        }
        let bins = 200
        var bg = [UInt64](repeating: 0, count: bins), fg = [UInt64](repeating: 0, count: bins)
        if variant != MultiappExperiment.fgAlone {
            for i in 0 ..< bins { bg[i] = UInt64((i < 50 ? bgBefore : bgAfter) * 0.1) }
        }
        for i in fgMs.indices where 50 + 10 * i < bins { fg[50 + 10 * i] = 200 }
        let result = TrialResult(name: "\(variant)/trial-\(trial)", variant: variant, originNanoseconds: origin, durationSeconds: 20,
                                 captures: [], connections: [], apps: [], interfaces: [],
                                 fairness: FairnessResult(), intnwConnections: 1, toyConnections: 0, accountingViolations: 0)
        let series = [ThroughputSeries(kind: .app, name: "bg", direction: "uplink", binWidthNanoseconds: bin, bytesPerBin: bg),
                      ThroughputSeries(kind: .app, name: "fg", direction: "uplink", binWidthNanoseconds: bin, bytesPerBin: fg)]
        let a = TrialAnalysis(result: result, latencies: [], appLatencies: samples, series: series, warnings: [])
        return TrialOutcome(plan: plan, directory: "/nonexistent", analysis: a, problems: [], interrupted: false)
    }

    /// FG alone: 200 ms, p95 220 ms.
    static let alone = outcome(MultiappExperiment.fgAlone, fgMs: [200, 200, 210, 200, 190, 200, 220, 200, 205, 200, 200, 195, 200, 210, 200])
    /// A good layout trial: first request 1500 ms, back at the 2nd, then ≤ 230 ms.
    static let good: [Double?] = [1500, 240, 210, 205, 220, 200, 210, 215, 200, 205, 210, 200, 215, 210, 205]

    func verdict(_ layouts: [String: [Double?]], bgBefore: Double = 60_000, bgAfter: Double = 50_000) -> Verdict {
        var outcomes = [Self.alone]
        for l in MultiappExperiment.Layout.allCases {
            outcomes.append(Self.outcome(l.rawValue, fgMs: layouts[l.rawValue] ?? Self.good, bgBefore: bgBefore, bgAfter: bgAfter))
        }
        return e.evaluate(outcomes, options: ExperimentOptions())
    }

    @Test func holdsWhenEveryClauseHolds() {
        let v = verdict([:])
        #expect(v.held, "\(v.lines)")
        #expect(v.lines.first?.contains("p50 200 ms") == true)
        #expect(v.lines.filter { $0.contains(": HELD: ") }.count == 3)
    }

    @Test func notHeldWhenTheFirstRequestIsNotSlow() {
        // The run: 217 ms first request against ~206 ms steady; a permissive scheduler passes this.
        var fg = Self.good
        fg[0] = 217
        let v = verdict(["one-multisocket": fg])
        #expect(!v.held)
        let line = v.lines.first { $0.hasPrefix("one-multisocket") } ?? ""
        #expect(line.contains("first FG request 217 ms") && line.contains("needs ≥ 1.5 × 200 ms = 300 ms: NO"), "\(line)")
    }

    @Test func notHeldWhenFGDoesNotRecoverWithinThreeRequests() {
        let fg: [Double?] = [1500, 900, 600, 400, 220, 200, 210, 200, 205, 200, 200, 200, 200, 200, 200]
        let v = verdict(["two-apps": fg])
        #expect(!v.held)
        #expect(v.lines.contains { $0.hasPrefix("two-apps") && $0.contains("not back within 250 ms") })
    }

    @Test func notHeldWhenFGStaysSlowOrGoesUnanswered() {
        // A permissive scheduler: FG p50 ~290 ms under load.
        let slow: [Double?] = [1500, 240] + [Double?](repeating: 295, count: 13)
        let v = verdict(["two-multisockets": slow])
        #expect(!v.held)
        #expect(v.lines.contains { $0.hasPrefix("two-multisockets") && $0.contains("then FG p95 295 ms") && $0.contains("= 275 ms: NO") })
        // Unanswered requests count as infinitely slow, never dropped.
        var lost = Self.good
        lost[5] = nil
        let u = verdict(["two-apps": lost])
        #expect(!u.held)
        #expect(u.lines.contains { $0.hasPrefix("two-apps") && $0.contains("(1 unanswered)") })
    }

    @Test func notHeldWhenBGStarves() {
        // BG at 2 kB/s while FG runs (3% of the spare uplink), as in the run.
        let v = verdict([:], bgAfter: 2000)
        #expect(!v.held)
        #expect(v.lines.contains { $0.contains("BG 2.0 kB/s on the wire while FG ran") && $0.contains("→ 3%, needs ≥ 50%: NO") })
    }

    @Test func notHeldWhenThePremiseFails() {
        let v = verdict([:], bgBefore: 10_000)
        #expect(!v.held)
        #expect(v.lines.contains { $0.contains("premise (link loaded, BG flowing): BG 10.0 kB/s") && $0.contains("NOT MET") })
    }

    @Test func notHeldWithoutAnFGAloneReference() {
        let outcomes = MultiappExperiment.Layout.allCases.map { Self.outcome($0.rawValue, fgMs: Self.good) }
        let v = e.evaluate(outcomes, options: ExperimentOptions())
        #expect(!v.held)
        #expect(v.lines.first?.contains("no FG-alone reference") == true)
    }

    @Test func recipeIncludesFGAlone() throws {
        var o = ExperimentOptions()
        o.quick = true
        o.trials = 2
        let plans = try e.plans(o)
        #expect(plans.count == 8)
        let alone = plans.filter { $0.variant == MultiappExperiment.fgAlone }
        #expect(alone.count == 2 && alone.allSatisfy { $0.apps.map(\.name) == ["fg"] })
    }

    @Test func keyMetricsPoolRequestsAndMeasureBGWhileFGRuns() throws {
        var outcomes = [Self.alone]
        outcomes.append(Self.outcome("two-apps", trial: 1, fgMs: Self.good, bgAfter: 40_000))
        outcomes.append(Self.outcome("two-apps", trial: 2, fgMs: Self.good, bgAfter: 20_000))
        let m = e.keyMetrics(outcomes)
        func value(_ n: String) -> Double? { m.first { $0.name == n }?.value }
        // After the first request: 2 × 14 samples of the good pattern; p95 (nearest rank 27 of 28)
        // is the second largest, 240.
        #expect(value("multiapp.two-apps.fg_p95_ms") == 240)
        #expect(value("multiapp.two-apps.fg_wire_p50_ms") == 210)
        #expect(value("multiapp.two-apps.fg_answered") == 15)
        #expect(abs((value("multiapp.two-apps.bg_bytes_per_s") ?? 0) - 30_000) < 1)
        #expect(m.allSatisfy { !$0.name.contains("fg-alone") }, "FG alone is the reference, not a regression metric")
        #expect(value("multiapp.one-multisocket.fg_p95_ms") == nil, "no trial, no metric")
    }

    @Test func comparativeFiguresShowEveryVariant() throws {
        let dir = NSTemporaryDirectory() + "multiapp-plots-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var outcomes = [Self.alone]
        var lost = Self.good
        lost[3] = nil
        for l in MultiappExperiment.Layout.allCases { outcomes.append(Self.outcome(l.rawValue, fgMs: l == .oneMultisocket ? lost : Self.good)) }
        let files = try e.experimentPlots(outcomes, directory: dir)
        #expect(files == ["plots/multiapp_fg_latency_all.svg", "plots/multiapp_bg_throughput_all.svg"])
        let fg = try String(contentsOfFile: "\(dir)/\(files[0])", encoding: .utf8)
        for v in ["two-apps", "two-multisockets", "one-multisocket", "fg-alone"] { #expect(fg.contains(v), "\(v) missing") }
        #expect(fg.contains("app-perceived"))
        let bg = try String(contentsOfFile: "\(dir)/\(files[1])", encoding: .utf8)
        #expect(bg.contains("log") && !bg.contains("fg-alone"))
    }
}
