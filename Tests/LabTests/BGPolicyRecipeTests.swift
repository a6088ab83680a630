import Emulation
import Foundation
@testable import Analysis
@testable import Lab
import Testing
import ToyProtocol

@Suite("bgpolicy recipe")
struct BGPolicyRecipeTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func experiment() -> BGPolicyExperiment {
        var e = BGPolicyExperiment()
        e.vehicularTracePath = Self.repo.appendingPathComponent("traces/annarbor.trace").path
        return e
    }

    @Test("every policy in every layout on both conditions, plus FG alone; the policy reaches the apps as INTNW_BG_POLICY")
    func plans() throws {
        var o = ExperimentOptions()
        o.quick = true
        o.trials = 2
        let plans = try experiment().plans(o)
        let perCondition = 1 + 3 * BGPolicyExperiment.policies.count
        #expect(plans.count == 2 * perCondition * 2)
        // Trials of one variant share its name; variant names are unique per (condition, layout, policy).
        #expect(Set(plans.map(\.variant)).count == 2 * perCondition)
        #expect(plans.allSatisfy { !$0.variant.contains("/") && !$0.variant.contains(":") && !$0.variant.contains("=") })
        let alone = plans.filter { $0.variant == "cellular.fg-alone" }
        #expect(alone.count == 2 && alone.allSatisfy { $0.apps.map(\.kind) == [.fgClient] && $0.environment["INTNW_BG_POLICY"] == nil })
        let unsent = try #require(plans.first { $0.variant == "cellular.one-multisocket.anticipatory-empty-unsent" })
        #expect(unsent.environment["INTNW_BG_POLICY"] == "anticipatory:empty=unsent")
        #expect(unsent.apps.allSatisfy { $0.process == "fgbg" && $0.shareMultisocket })
        #expect(unsent.notifyDelaySeconds == 0)
        let twoApps = try #require(plans.first { $0.variant == "vehicular.two-apps.trickle" })
        #expect(twoApps.apps.allSatisfy { $0.process == nil } && twoApps.notifyDelaySeconds == 2)
        #expect(plans.map(\.trial).contains(2))
        // --bg-policy narrows the comparison to one policy (and the baseline).
        o.bgPolicy = "delay-target"
        #expect(try experiment().plans(o).count == 2 * (1 + 3) * 2)
    }

    @Test("the vehicular window starts at 0, keeps the trace's changes, and has WiFi for part of it")
    func window() throws {
        let e = experiment()
        let t = try e.trace(.vehicular, ExperimentOptions())
        #expect(t.durationSeconds == 90 && t.slices.first?.startSeconds == 0)
        #expect(t.slices.allSatisfy { $0.startSeconds >= 0 && $0.startSeconds < 90 })
        #expect(!t.isAvailable(link: 0, in: t.slices[0]))
        #expect(t.slices.contains { t.isAvailable(link: 0, in: $0) })
        let capacity = BGPolicyExperiment.uplinkCapacity(t, seconds: 90)
        #expect(capacity > 100_000)  // WiFi for most of the window
        let cell = Conditions.cellularOnly(seconds: 60)
        #expect(abs(BGPolicyExperiment.uplinkCapacity(cell, seconds: 60) - 64_000) < 1)
    }

    @Test("the estimates are reported for delay-target in two apps, with or without parameters, and for nothing else")
    func estimateVariants() {
        #expect(BGPolicyExperiment.isDelayTargetTwoApps("vehicular.two-apps.delay-target"))
        #expect(BGPolicyExperiment.isDelayTargetTwoApps("cellular.two-apps.delay-target-path-probe-rtts-20"))
        #expect(!BGPolicyExperiment.isDelayTargetTwoApps("cellular.one-multisocket.delay-target"))
        #expect(!BGPolicyExperiment.isDelayTargetTwoApps("cellular.two-apps.anticipatory"))
        #expect(!BGPolicyExperiment.isDelayTargetTwoApps("cellular.two-apps.delay-targetx"))
        #expect(!BGPolicyExperiment.isDelayTargetTwoApps("cellular.fg-alone"))
    }

    @Test("no outcomes: the verdict says what is missing and does not hold")
    func evaluateEmpty() {
        let v = experiment().evaluate([], options: ExperimentOptions())
        #expect(!v.held && v.lines.contains { $0.contains("no FG-alone baseline") })
        // `--variants` with only vehicular ones: cellular was not run, and the verdict says so
        // (not that a baseline is missing) and still does not hold.
        var o = ExperimentOptions()
        o.variants = ["vehicular.fg-alone", "vehicular.two-apps.delay-target"]
        let w = experiment().evaluate([], options: o)
        #expect(!w.held && w.lines.contains("cellular: not run (--variants); its part of the expectation is not judged"), "\(w.lines)")
        #expect(w.lines.contains("vehicular: no FG-alone baseline"), "\(w.lines)")
    }

    @Test("FG paired with FG alone by trace time: each request against the FG-alone request sent at the same tenth of a second of the replay, trial k with trial k; too few pairs is no answer")
    func pairedExcess() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isc-bgpolicy-pair-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let apps = [AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1)]
        let start: UInt64 = 1_796_550_895_161_668_397
        // Requests at 5.02, 7.02 (+3 ms of jitter) and 9.02 s of the replay; the first is left out.
        let lines = [(5.02, 300.0), (7.023, 210.0), (9.02, 1_300.0)].enumerated().map { k, r in
            let send = start + UInt64(r.0 * 1e9)
            return FGRequestRecord(appID: 1, sequence: UInt64(k + 1), sendNs: send, receiveNs: send + UInt64(r.1 * 1e6),
                                   requestBytes: 128, replyBytes: 64, variant: .intnw).jsonLine
        }
        try lines.joined(separator: "\n").write(to: dir.appendingPathComponent("fg.jsonl"), atomically: true, encoding: .utf8)
        let a = try AnalyzedTrial.analysis(directory: dir.path, apps: apps)
        #expect(BGPolicyExperiment.latenciesByTraceTime(a, app: "fg", replayStartRealtimeNs: start) == [70: 210, 90: 1_300])
        // Trial 1 pairs at both times, trial 2 at one of two: 3 pairs of 4 requests; the 1.3 s
        // spike both met adds nothing.
        let alone: [[Int: Double]] = [[70: 210, 90: 1_300], [70: 200, 90: 1_290]]
        let other: [[Int: Double]] = [[70: 240, 90: 1_310], [75: 900, 90: 1_350]]
        let e = try #require(BGPolicyExperiment.pairedExcess(alone: alone, other: other))
        #expect(e.pairs == 3 && e.requests == 4)
        #expect(e.p50Ms == 30 && e.p95Ms > 30 && e.p95Ms <= 60)
        // Both p95s over the paired moments only (FG alone's 70 in trial 2 has no partner).
        #expect(e.aloneP95Ms >= 1_290 && e.aloneP95Ms <= 1_300 && e.otherP95Ms >= 1_310 && e.otherP95Ms <= 1_350)
        #expect(e.p95Ratio > 1 && e.p95Ratio < 1.05)
        // The vehicular case: FG alone's p95 is the spike at 8.0 s; the other FG's first request (left
        // out) fell on it, so its p95 over the rest looks 0.3x alone's. Paired, both leave 8.0 s out.
        let late = try #require(BGPolicyExperiment.pairedExcess(alone: [[60: 207, 80: 1_306, 100: 209, 120: 209]],
                                                                 other: [[100: 215, 120: 260]]))
        #expect(late.pairs == 2 && late.aloneP95Ms == 209 && late.otherP95Ms == 260 && abs(late.p95Ratio - 260.0 / 209) < 1e-9)
        // Fewer than half of the requests pair (grids not tied to the replay): no answer.
        #expect(BGPolicyExperiment.pairedExcess(alone: [[70: 210]], other: [[71: 240, 91: 1_300, 110: 60]]) == nil)
        #expect(BGPolicyExperiment.pairedExcess(alone: [], other: []) == nil)
    }

    @Test("FG latencies come from the app's own JSON-lines log (as the analyzer read it) when it is there")
    func logReading() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("isc-bgpolicy-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let apps = [AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1, process: "fgbg"),
                    AppLaunch(name: "bg", kind: .bgClient, variant: .intnw, appId: 2, process: "fgbg")]
        let log = dir.appendingPathComponent("fgbg.jsonl")
        let lines = [
            FGRequestRecord(appID: 1, sequence: 1, sendNs: 1_000_000_000, receiveNs: 1_250_000_000, requestBytes: 128, replyBytes: 64, variant: .intnw).jsonLine,
            FGRequestRecord(appID: 1, sequence: 2, sendNs: 3_000_000_000, receiveNs: 3_200_000_000, requestBytes: 128, replyBytes: 64, variant: .intnw).jsonLine,
            FGUnansweredRecord(appID: 1, sequence: 4, sendNs: 4_000_000_000, requestBytes: 128, variant: .intnw).jsonLine,
            BGChunkRecord(appID: 2, sequence: 1, sendNs: 1, ackNs: 2, bytes: 262_144, variant: .intnw).jsonLine,
            FGRequestRecord(appID: 3, sequence: 1, sendNs: 0, receiveNs: 5, requestBytes: 128, replyBytes: 64, variant: .intnw).jsonLine,
            // Outside the contract: left out, not fatal.
            #"{"type":"fg","app":1,"seq":3,"send_ns":5000000000}"#,
            "not json",
        ]
        try lines.joined(separator: "\n").write(to: log, atomically: true, encoding: .utf8)
        let analysis = try AnalyzedTrial.analysis(directory: dir.path, apps: apps)
        let got = try #require(BGPolicyExperiment.loggedLatencies(analysis, app: "fg"))
        #expect(got == [1: 250, 2: 200])
        #expect(analysis.appLog("fg")?.skippedLines == 2)
        // No log: nil, so the experiment falls back to the wire.
        try FileManager.default.removeItem(at: log)
        #expect(BGPolicyExperiment.loggedLatencies(try AnalyzedTrial.analysis(directory: dir.path, apps: apps), app: "fg") == nil)
    }

    @Test("by network: WiFi's share while it is up, cellular's while alone, and cellular beside WiFi, from bytes per trace second")
    func networkShares() throws {
        let wifi = LinkConditions(downBytesPerSecond: 200, upBytesPerSecond: 100, rttMilliseconds: 20)
        let cell = LinkConditions(downBytesPerSecond: 80, upBytesPerSecond: 50, rttMilliseconds: 80)
        let gone = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)
        let cellAlone = LinkConditions(downBytesPerSecond: 60, upBytesPerSecond: 40, rttMilliseconds: 90)
        // 2 s with WiFi, 2 s of cellular alone.
        let trace = Trace(slices: [TraceSlice(startSeconds: 0, conditions: [wifi, cell]),
                                   TraceSlice(startSeconds: 2, conditions: [gone, cellAlone])],
                          durationSeconds: 4, source: "test")
        // WiFi carried 80 and 70 B; cellular 5 B beside WiFi (not counted as WiFi's), then 20 and 40.
        let s = try #require(BGPolicyExperiment.networkShares(trace: trace, seconds: 4, bytes: [[80, 70, 0, 0], [5, 0, 20, 40]]))
        #expect(s.wifiSeconds == 2 && s.cellularAloneSeconds == 2)
        #expect(s.wifiShare == 150.0 / 200)
        #expect(s.cellularAloneShare == 60.0 / 80)
        // Capacity counted: WiFi 200 + cellular beside it 100 + cellular alone 80.
        #expect(s.cellularBesideWiFi == 100.0 / 380)
        #expect(s.whole == 215.0 / 380)
        // No WiFi in the run: nothing to split.
        let cellularOnly = Trace(slices: [TraceSlice(startSeconds: 0, conditions: [gone, cell])], durationSeconds: 4, source: "test")
        #expect(BGPolicyExperiment.networkShares(trace: cellularOnly, seconds: 4, bytes: [[0, 0, 0, 0], [50, 50, 50, 50]]) == nil)
    }

    @Test("the trace window: only bins whose middle lies in trace seconds [0, duration) count, as BG shares of the window's capacity need")
    func traceWindow() {
        let s = ThroughputSeries(kind: .interface, name: "cell0", direction: "uplink", binWidthNanoseconds: 100_000_000,
                                 bytesPerBin: Array(repeating: 10, count: 20))
        let replay: UInt64 = 1_000_000_000_000
        // The capture starts 250 ms before the replay: bins 2 to 11 have their middles in [0, 1 s).
        #expect(TraceWindow.traceSeconds(bin: 2, of: s, originNs: replay - 250_000_000, replayStartRealtimeNs: replay) == 0)
        #expect(TraceWindow.bytes(s, originNs: replay - 250_000_000, replayStartRealtimeNs: replay, seconds: 1) == 100)
        // The whole 2 s of capture against a 1.5 s window: 15 bins of 20 (after the replay start 1.75 s remain).
        #expect(TraceWindow.bytes(s, originNs: replay - 250_000_000, replayStartRealtimeNs: replay, seconds: 1.5) == 150)
    }
}
