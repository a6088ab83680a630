import Emulation
import Foundation
import Testing
import ToyProtocol
@testable import Analysis
@testable import Lab

/// Fake analysed trials for the experiments' verdicts and key metrics, in the pattern of
/// `TroubleExperimentTests`: every verdict is checked with outcomes that must hold AND with outcomes
/// that must NOT hold, so a verdict that cannot fail fails here. (multiapp's verdict is tested with
/// its own rewrite.)
enum FakeTrial {
    static func app(_ name: String, role: AppRole, variant: ToyVariant = .intnw, p50: Double? = nil, p95: Double? = nil,
                    requests: Int = 10, replies: Int = 10, uplinkBytes: UInt64 = 0, activeSeconds: Double = 10,
                    chunkBytes: UInt64 = 0) -> AppResult {
        let latency = p50.map { LatencySummary(count: replies, meanMs: $0, stddevMs: 0, minMs: $0, p50Ms: $0,
                                               p95Ms: p95 ?? $0, p99Ms: p95 ?? $0, maxMs: p95 ?? $0) }
        let rate = activeSeconds > 0 ? Double(uplinkBytes) / activeSeconds : 0
        return AppResult(name: name, role: role, variant: variant, appId: nil, connections: [], messages: [:],
                         labelMismatches: 0, labeledForeground: 0, labeledBackground: 0,
                         fg: role == .fg ? FGResult(requests: requests, replies: replies, unanswered: requests - replies, latencyMs: latency) : nil,
                         bg: role == .bg ? BGResult(chunks: 0, completeChunks: 0, acks: 0, chunkPayloadBytes: chunkBytes) : nil,
                         throughput: ThroughputResult(uplinkBytes: uplinkBytes, downlinkBytes: 0, activeSeconds: activeSeconds,
                                                      windowSeconds: activeSeconds, uplinkBytesPerSecond: rate, downlinkBytesPerSecond: 0, totalBytesPerSecond: rate),
                         logCheck: nil)
    }

    static func result(_ apps: [AppResult], clientUplinkBytes: UInt64 = 0, name: String = "trial-1") -> TrialResult {
        TrialResult(name: name, originNanoseconds: 0, durationSeconds: 10, captures: [], connections: [], apps: apps,
                    interfaces: [InterfaceResult(capture: "client-cell0.pcap", interface: "cell0", side: "client",
                                                 uplinkBytes: clientUplinkBytes, downlinkBytes: 0, retransmittedBytes: 0,
                                                 meanUplinkBytesPerSecond: 0, meanDownlinkBytesPerSecond: 0, windowSeconds: 10)],
                    fairness: FairnessResult(bgThroughputJain: nil, fgLatencyJain: nil),
                    intnwConnections: 0, toyConnections: 0, accountingViolations: 0)
    }

    /// Marks FG app `name` of `outcome` as having a readable log in which it answered requests of
    /// `latenciesMs`, 2 s apart (what the analyzer fills in from a real log).
    static func logged(_ outcome: inout TrialOutcome, fg name: String, latenciesMs: [Double]) {
        guard var a = outcome.analysis, let i = a.result.apps.firstIndex(where: { $0.name == name }) else { return }
        a.appLatencies = latenciesMs.enumerated().map { k, ms in
            let send: UInt64 = 1_700_000_000_000_000_000 + UInt64(k) * 2_000_000_000
            return AppLatencySample(app: name, sequence: UInt64(k), sendNanoseconds: send, receiveNanoseconds: send + UInt64(ms * 1e6),
                                    wireLatencyNanoseconds: nil)
        }
        a.result.apps[i].logCheck = AppLogCheck(file: "\(name).jsonl", matchedRequests: 0, onlyInLog: latenciesMs.count, onlyOnWire: 0,
                                                loggedChunks: 0, loggedChunkBytes: 0, loggedUnanswered: 0, skippedLines: 0)
        outcome.analysis = a
    }

    static func outcome(_ plan: TrialPlan, _ apps: [AppResult], clientUplinkBytes: UInt64 = 0, directory: String = "/nonexistent") -> TrialOutcome {
        TrialOutcome(plan: plan, directory: directory,
                     analysis: TrialAnalysis(result: result(apps, clientUplinkBytes: clientUplinkBytes), latencies: [], series: [], warnings: []),
                     problems: [], interrupted: false)
    }
}

@Suite struct FairnessVerdictTests {
    let e = FairnessExperiment()

    /// One trial of `setup` with n = 1: the app's FG median and BG throughput (bytes over 10 s).
    func trial(_ setup: FairnessExperiment.Setup, fgMs: Double, bgBytesPerSecond: Double) throws -> TrialOutcome {
        var o = ExperimentOptions()
        o.maxApps = 1
        o.quick = true
        let plan = try #require(try e.plans(o).first { $0.variant == "\(setup.rawValue)-n1" })
        let variant: ToyVariant = setup == .intnw ? .intnw : .plain
        let process = "app1-\(variant.rawValue)"
        return FakeTrial.outcome(plan, [
            FakeTrial.app("\(process).fg", role: .fg, variant: variant, p50: fgMs),
            FakeTrial.app("\(process).bg", role: .bg, variant: variant, uplinkBytes: UInt64(bgBytesPerSecond * 10), activeSeconds: 10),
        ])
    }

    @Test func holdsWhenIntNWTracksPlainAndThePlainAppIsNotDegraded() throws {
        let outcomes = [try trial(.plain, fgMs: 100, bgBytesPerSecond: 300_000),
                        try trial(.intnw, fgMs: 140, bgBytesPerSecond: 250_000),
                        try trial(.mixed, fgMs: 120, bgBytesPerSecond: 290_000)]
        let v = e.evaluate(outcomes, options: ExperimentOptions())
        #expect(v.held, "\(v.lines)")
        #expect(v.lines == ["n=1: IntNW FG 140 ms vs plain 100 ms, BG 250.0 vs 300.0 KB/s per app: tracks; plain app among IntNW FG 120 ms (alone-kind 100), BG 290.0 KB/s (300.0): not degraded"])
    }

    /// Catches: a fairness verdict that holds whatever IntNW does (goal 2) or whatever happens to the
    /// plain app among IntNW apps (goal 3), or with a setup missing.
    @Test func notHeldWhenIntNWIsSlowerStarvedOrGreedyOrThePlainAppSuffers() throws {
        let plain = try trial(.plain, fgMs: 100, bgBytesPerSecond: 300_000)
        let mixed = try trial(.mixed, fgMs: 100, bgBytesPerSecond: 300_000)
        for (fg, bg) in [(151.0, 300_000.0), (100, 200_000), (100, 451_000)] {
            let v = e.evaluate([plain, try trial(.intnw, fgMs: fg, bgBytesPerSecond: bg), mixed], options: ExperimentOptions())
            #expect(!v.held, "IntNW FG \(fg) ms, BG \(bg) B/s against plain 100 ms, 300000 B/s: \(v.lines)")
            #expect(v.lines.first?.contains("differs") == true)
        }
        let intnw = try trial(.intnw, fgMs: 100, bgBytesPerSecond: 300_000)
        for (fg, bg) in [(151.0, 300_000.0), (100, 200_000)] {
            let v = e.evaluate([plain, intnw, try trial(.mixed, fgMs: fg, bgBytesPerSecond: bg)], options: ExperimentOptions())
            #expect(!v.held, "plain app among IntNW: FG \(fg) ms, BG \(bg) B/s: \(v.lines)")
            #expect(v.lines.first?.contains("degraded") == true)
        }
        #expect(!e.evaluate([plain, intnw], options: ExperimentOptions()).held, "no mixed setup")
        #expect(!e.evaluate([], options: ExperimentOptions()).held, "no trials")
    }

    @Test func pointsAverageAppsAndComputeJain() throws {
        var o = ExperimentOptions()
        o.maxApps = 2
        let plan = try #require(try e.plans(o).first { $0.variant == "plain-n2" })
        let t = FakeTrial.outcome(plan, [
            FakeTrial.app("app1-plain.fg", role: .fg, variant: .plain, p50: 100),
            FakeTrial.app("app1-plain.bg", role: .bg, variant: .plain, uplinkBytes: 1_000, activeSeconds: 10),
            FakeTrial.app("app2-plain.fg", role: .fg, variant: .plain, p50: 300),
            FakeTrial.app("app2-plain.bg", role: .bg, variant: .plain, uplinkBytes: 3_000, activeSeconds: 10),
        ])
        let p = try #require(FairnessExperiment.point(t))
        #expect(p.n == 2 && p.setup == .plain)
        #expect(p.fgMedianMs == 200 && p.bgPerAppBytesPerSecond == 200)
        // Jain over 100 and 300 B/s: 400² / (2 × (100² + 300²)) = 0.8.
        #expect(abs((p.jain ?? 0) - 0.8) < 1e-12)
        #expect(p.plainAppFgMs == 100 && p.plainAppBgBytesPerSecond == 100)
        #expect(e.keyMetrics([t]).isEmpty, "fairness is not in the regression set")
    }
}

// The drive verdict (recipe v2: app-log figures, Linux MPTCP strategies, numeric factors) is tested in
// DriveComparisonTests.swift, including that it fails for slower FG, too little BG and no results.

@Suite final class BGPolicyVerdictTests {
    let e = BGPolicyExperiment()
    typealias Layout = MultiappExperiment.Layout

    var options: ExperimentOptions {
        var o = ExperimentOptions()
        o.quick = true
        return o
    }

    /// A trial of `variant`: the FG app logs `fgMs` latencies (the first is dropped by the experiment),
    /// and the client sends `bgBytesPerSecond` over the plan's duration besides the FG app's bytes.
    func trial(_ variant: String, fgMs: [Double], bgBytesPerSecond: Double) throws -> TrialOutcome {
        let plan = try #require(try e.plans(options).first { $0.variant == variant }, "no plan \(variant)")
        let fgApp = try #require(plan.apps.first { $0.kind == .fgClient })
        let fgBytes: UInt64 = 1_000
        var o = FakeTrial.outcome(plan, [FakeTrial.app(fgApp.name, role: .fg, p50: fgMs.first, uplinkBytes: fgBytes)],
                                  clientUplinkBytes: fgBytes + UInt64(bgBytesPerSecond * plan.durationSeconds))
        FakeTrial.logged(&o, fg: fgApp.name, latenciesMs: [1000] + fgMs)
        return o
    }

    /// FG alone at 200-300 ms on both conditions, anticipatory within 2x and moving `bg` B/s in every
    /// layout, permissive at `permissiveFactor` × anticipatory's p95 in one multisocket.
    func outcomes(anticipatoryFactor: Double = 1.5, bg: Double = 20_000, permissiveFactor: Double = 4,
                  skip: Layout? = nil) throws -> [TrialOutcome] {
        let alone = (1...20).map { 200 + Double($0) * 5 }  // p95 (nearest rank, 19 of 20) = 295 ms
        var out: [TrialOutcome] = []
        for c in BGPolicyExperiment.Condition.allCases {
            out.append(try trial(BGPolicyExperiment.variant(c, nil, nil), fgMs: alone, bgBytesPerSecond: 0))
            for layout in Layout.allCases where layout != skip {
                out.append(try trial(BGPolicyExperiment.variant(c, layout, "anticipatory"),
                                     fgMs: alone.map { $0 * anticipatoryFactor }, bgBytesPerSecond: bg))
            }
        }
        out.append(try trial(BGPolicyExperiment.variant(.cellular, .oneMultisocket, "permissive"),
                             fgMs: alone.map { $0 * anticipatoryFactor * permissiveFactor }, bgBytesPerSecond: 60_000))
        return out
    }

    @Test func holdsWithAnticipatoryWithin2xMoving10PercentAndPermissive3xWorse() throws {
        let v = e.evaluate(try outcomes(), options: options)
        #expect(v.held, "\(v.lines)")
        #expect(v.lines.contains("cellular one-multisocket: permissive FG p95 is 4.0x anticipatory's"))
        #expect(v.lines.contains { $0.hasPrefix("cellular: FG alone p50 250 ms, p95 295 ms; uplink capacity 64000 B/s") }, "\(v.lines)")
    }

    /// Catches: a bgpolicy verdict that holds when anticipatory lets FG p95 exceed 2x FG alone, when BG
    /// moves under 10% of the 64000 B/s uplink (6400 B/s), when permissive is less than 3x worse (the
    /// negative control would prove nothing), or when a layout's anticipatory run is missing.
    @Test func notHeldWhenFGSuffersBGStallsPermissiveIsNotWorseOrALayoutIsMissing() throws {
        let slow = e.evaluate(try outcomes(anticipatoryFactor: 2.1), options: options)
        #expect(!slow.held, "anticipatory p95 2.1x alone: \(slow.lines)")
        let starved = e.evaluate(try outcomes(bg: 6_300), options: options)
        #expect(!starved.held, "BG 6300 B/s: \(starved.lines)")
        let noControl = e.evaluate(try outcomes(permissiveFactor: 2.9), options: options)
        #expect(!noControl.held, "permissive only 2.9x: \(noControl.lines)")
        #expect(noControl.lines.contains { $0.hasSuffix("(expected at least 3x)") })
        let missing = e.evaluate(try outcomes(skip: .twoApps), options: options)
        #expect(!missing.held, "no two-apps anticipatory run: \(missing.lines)")
    }

    @Test func keyMetricsNameEachLayout() throws {
        let m = e.keyMetrics(try outcomes())
        for layout in Layout.allCases {
            let p95 = m.first { $0.name == "bgpolicy.cellular.\(layout.rawValue).anticipatory.fg_p95_ms" }
            #expect(p95?.value == 295 * 1.5 && p95?.better == .lower, "\(m.map(\.name))")
        }
        #expect(m.allSatisfy { $0.name.hasPrefix("bgpolicy.cellular.") })
    }
}

@Suite struct ExperimentTableTests {
    /// Catches: table rows that mix up apps or variants, average the wrong numbers or drop a variant.
    @Test func rowsAreMeansPerVariantAndApp() throws {
        let trace = Trace.constant(wifi: Conditions.wifi, cellular: Conditions.cellular, durationSeconds: 100)
        func plan(_ variant: String, _ trial: Int) -> TrialPlan {
            TrialPlan(experiment: "x", variant: variant, trial: trial, trace: trace, durationSeconds: 10, apps: [])
        }
        let outcomes = [
            FakeTrial.outcome(plan("a", 1), [FakeTrial.app("fg", role: .fg, p50: 100, p95: 200, requests: 10, replies: 9),
                                             FakeTrial.app("bg", role: .bg, uplinkBytes: 100_000, activeSeconds: 10)]),
            FakeTrial.outcome(plan("a", 2), [FakeTrial.app("fg", role: .fg, p50: 300, p95: 400, requests: 10, replies: 10),
                                             FakeTrial.app("bg", role: .bg, uplinkBytes: 300_000, activeSeconds: 10)]),
            TrialOutcome(plan: plan("b", 1), directory: "/x", analysis: nil, problems: ["failed"], interrupted: false),
        ]
        let r = ExperimentRunner.Result(directory: "/x", outcomes: outcomes, verdict: Verdict(held: true, lines: []), results: nil, interrupted: false)
        let rows = ExperimentTable.render(r).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.count == 4)
        #expect(rows[0] == ["variant", "trials", "app", "FG", "app", "p50", "ms", "FG", "app", "p95", "ms", "FG", "wire", "p50", "ms",
                            "FG", "wire", "p95", "ms", "FG", "answered", "(wire)", "BG", "up", "kB/s"])
        // Wire FG p50 mean of 100 and 300, p95 of 200 and 400 (no app logs: no app-perceived figures);
        // BG (10 + 30 kB/s) / 2 = 20 kB/s.
        #expect(rows[1] == ["a", "2", "fg", "-", "-", "200", "300", "9/10,10/10", "-"])
        #expect(rows[2] == ["a", "2", "bg", "-", "-", "-", "-", "-", "20"])
        #expect(rows[3] == ["b", "1", "-", "-", "-", "-", "-", "-", "-"])
    }
}
