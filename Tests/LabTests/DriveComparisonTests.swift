import Emulation
import Foundation
@testable import Lab
import Testing
import ToyProtocol

/// The drive comparison: its strategies (Linux MPTCP included), app-log figures, table and a verdict
/// that fails when IntNW is not better.
@Suite("drive comparison")
struct DriveComparisonTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func experiment() -> DriveExperiment {
        var e = DriveExperiment()
        e.tracePath = Self.repo.appendingPathComponent("traces/annarbor.trace").path
        return e
    }

    @Test("six strategies; the MPTCP ones run plain apps over MPTCP sockets with the path manager set up")
    func plans() throws {
        var o = ExperimentOptions()
        o.quick = true
        o.trials = 3
        let plans = try experiment().plans(o)
        let variants = Set(plans.map(\.variant))
        if MPTCPMode.kernelSupport == nil {
            #expect(variants == Set(DriveExperiment.Strategy.allCases.map(\.rawValue)))
        } else {
            #expect(!variants.contains("mptcp-backup"))
        }
        #expect(plans.count == variants.count * 3)
        for p in plans {
            let mptcp = p.variant.hasPrefix("mptcp-")
            #expect(p.mptcp == (p.variant == "mptcp-backup" ? .backup : p.variant == "mptcp-subflow" ? .subflow : nil))
            #expect((p.environment["INTNW_PLAIN_MPTCP"] == "1") == mptcp)
            #expect(p.apps.allSatisfy { $0.variant == (mptcp ? .plain : .intnw) })
            #expect(p.apps.allSatisfy { !mptcp || !$0.arguments.contains("--restrict") })
        }
    }

    @Test("path manager commands: limits on both sides, WiFi a subflow endpoint, cellular backup or subflow")
    func mptcpCommands() {
        let t = Topology(spec: TopologySpec(prefix: "x"))
        let backup = t.mptcpCommands(.backup), subflow = t.mptcpCommands(.subflow)
        #expect(backup.client.contains("mptcp endpoint add 198.18.2.2 id 2 dev cell0 subflow backup"))
        #expect(backup.client.contains("mptcp endpoint add 198.18.1.2 id 1 dev wifi0 subflow"))
        #expect(subflow.client.contains("mptcp endpoint add 198.18.2.2 id 2 dev cell0 subflow"))
        #expect(!subflow.client.contains { $0.hasSuffix("backup") })
        #expect(backup.server == ["mptcp limits set subflows 2 add_addr_accepted 2"])
        // The endpoint follows the link's carrier: WiFi's is deleted when it goes and added back (same
        // line as at setup) when it returns.
        #expect(t.mptcpEndpointCommand(link: "wifi", up: false, mode: .backup) == "mptcp endpoint delete id 1")
        #expect(t.mptcpEndpointCommand(link: "wifi", up: true, mode: .backup) == "mptcp endpoint add 198.18.1.2 id 1 dev wifi0 subflow")
        #expect(t.mptcpEndpointCommand(link: "cellular", up: true, mode: .backup) == "mptcp endpoint add 198.18.2.2 id 2 dev cell0 subflow backup")
        #expect(t.mptcpEndpointCommand(link: "nope", up: true, mode: .backup) == nil)
    }

    /// A trial with app logs, analyzed: FG latencies (ms) answered out of `sent`, BG chunk bytes.
    static func trial(_ variant: String, fg: [Double], sent: Int, bgBytes: [Int], seconds: Double = 10) throws -> TrialOutcome {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("drive-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var f = fg.enumerated().map { i, ms -> String in
            let send = 1_700_000_000_000_000_000 + UInt64(i) * 1_000_000_000
            return FGRequestRecord(appID: 1, sequence: UInt64(i), sendNs: send, receiveNs: send + UInt64(ms * 1e6), requestBytes: 128,
                                   replyBytes: 64, variant: .intnw).jsonLine
        }
        f.append(FGSummary(appID: 1, variant: .intnw, requestsSent: UInt64(sent), requestsAnswered: UInt64(fg.count), unexpectedReplies: 0,
                           p50Milliseconds: nil, p95Milliseconds: nil, meanMilliseconds: nil, maxMilliseconds: nil).jsonLine)
        try (f.joined(separator: "\n") + "\n").write(toFile: "\(dir)/fg.jsonl", atomically: true, encoding: .utf8)
        let b = bgBytes.enumerated().map { BGChunkRecord(appID: 2, sequence: UInt64($0.offset), sendNs: 1, ackNs: 2, bytes: $0.element, variant: .intnw).jsonLine }
        try (b.joined(separator: "\n") + "\n").write(toFile: "\(dir)/bg.jsonl", atomically: true, encoding: .utf8)
        var plan = TrialPlan(experiment: "drive", variant: variant, trial: 1, trace: Trace.constant(wifi: nil, cellular: TraceGenerator.labCellular, durationSeconds: 1),
                             durationSeconds: seconds, apps: [AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1),
                                                              AppLaunch(name: "bg", kind: .bgClient, variant: .intnw, appId: 2)])
        plan.trial = 1
        let analysis = try AnalyzedTrial.analysis(directory: dir, apps: plan.apps)
        return TrialOutcome(plan: plan, directory: dir, analysis: analysis, problems: [], interrupted: false)
    }

    @Test("figures come from the app logs as analyzed: percentiles, mean, answered share, BG bytes per second")
    func figures() throws {
        let t = try Self.trial("intnw", fg: [10, 20, 30, 40, 1000], sent: 10, bgBytes: [65536, 65536], seconds: 4)
        let analysis = try #require(t.analysis)
        let f = try #require(DriveExperiment.figures(analysis, seconds: 4))
        #expect(f.fgP50 == 30)
        #expect(f.fgP95 == 1000)
        #expect(f.fgMean == 220)
        #expect(f.fgRequests == 10)
        #expect(f.bgBytesPerSecond == 32768)
    }

    @Test("the verdict holds when IntNW is 2x better at p95 with enough BG, and fails otherwise")
    func verdictCanFail() throws {
        let strategies = DriveExperiment.strategies().run
        func outcomes(intnwP95: Double, intnwBG: Int) throws -> [TrialOutcome] {
            try strategies.flatMap { s -> [TrialOutcome] in
                try (1...3).map { k in
                    let mine = s == .intnw
                    let slow: Double = mine ? intnwP95 : 800
                    var o = try Self.trial(s.rawValue, fg: Array(repeating: 50, count: 9) + [slow], sent: 10,
                                           bgBytes: [mine ? intnwBG : 100_000])
                    o.plan.trial = k
                    return o
                }
            }
        }
        let good = experiment().evaluate(try outcomes(intnwP95: 300, intnwBG: 90_000), options: ExperimentOptions())
        #expect(good.held, "\(good.lines.joined(separator: "\n"))")
        #expect(good.lines.contains { $0.contains("vs wifi-preferred: FG p95 2.67x lower") })
        let slowFG = experiment().evaluate(try outcomes(intnwP95: 500, intnwBG: 90_000), options: ExperimentOptions())
        #expect(!slowFG.held)
        let littleBG = experiment().evaluate(try outcomes(intnwP95: 300, intnwBG: 70_000), options: ExperimentOptions())
        #expect(!littleBG.held)
        #expect(littleBG.lines.contains { $0.contains("check: IntNW BG") && $0.hasSuffix("NO") })
        #expect(!experiment().evaluate([], options: ExperimentOptions()).held)
    }

    @Test("a trial whose apps failed is no data point: fidelity.json says invalid, the merge and the verdict name it and leave it out")
    func failedAppsAreNoDataPoint() throws {
        // fidelity.json: the emulation kept up (no lateness over the limits) but the apps failed.
        let f = TrialFidelity.judged(emulatorP99: nil, packets: 0, replayerP99: 368, replayerEvents: 12, cpuBusy: 1,
                                     appFailures: ["fg failed (exited(1))", "bg failed (exited(1))"])
        #expect(!f.valid && f.invalidReason == "invalid: apps failed: fg failed (exited(1)), bg failed (exited(1))")
        #expect(f.emulationInvalidReason == nil && f.appFailures?.count == 2)
        let late = TrialFidelity.judged(emulatorP99: 5000, packets: 9, replayerP99: 10, replayerEvents: 3, cpuBusy: 0.5,
                                        appFailures: ["fg failed (exited(1))"])
        #expect(!late.valid && late.emulationInvalidReason == "invalid: the emulation fell behind (emulator lateness p99 5000 µs > 2000 µs); CPUs 50% busy")
        #expect(late.invalidReason?.hasSuffix("; apps failed: fg failed (exited(1))") == true)
        let fine = TrialFidelity.judged(emulatorP99: 100, packets: 9, replayerP99: 10, replayerEvents: 3, cpuBusy: 0.5, appFailures: [])
        #expect(fine.valid && fine.invalidReason == nil && fine.appFailures == nil)

        // The merge of a drive plan leaves a failed MPTCP trial out and names it; the verdict cannot hold.
        var o = ExperimentOptions()
        o.durationSeconds = 10
        o.variants = ["intnw", "mptcp-backup"]
        o.trials = 1
        let specs = try TrialPlanner.specs(experiment(), options: o, prefix: .auto(stem: "tdrvx"), versions: TrialSpecTests.versions).1
        let dir = TrialSpecTests.scratch("drive-failed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bad = try #require(specs.first { $0.plan.variant == "mptcp-backup" })
        _ = try TrialSpecTests.writeRecord(bad, status: .failed, problems: ["fg failed (exited(1)); see fg.err"], in: dir)
        let r = try ExperimentMerger().merge([dir], into: "\(dir)/merged")
        #expect(!r.verdict.held && r.outcomes.isEmpty)
        #expect(r.verdict.lines.contains("left out mptcp-backup.trial-1: failed on node7: fg failed (exited(1)); see fg.err"), "\(r.verdict.lines)")

        // A trial analysed without the apps' logs is named by the verdict and not counted in the means.
        var noLogs = try Self.trial("wifi-preferred", fg: [10], sent: 1, bgBytes: [1])
        noLogs.analysis = nil
        noLogs.plan.trial = 2
        let good = try Self.trial("wifi-preferred", fg: [100, 100], sent: 2, bgBytes: [1000])
        let v = experiment().evaluate([good, noLogs], options: ExperimentOptions())
        #expect(v.lines.contains("left out wifi-preferred trial 2: not analysed"), "\(v.lines)")
        #expect(DriveExperiment.summary([good, noLogs], .wifiPreferred)?.trials == 1)
    }

    @Test("key metrics are IntNW's means over trials, other strategies ignored")
    func keyMetrics() throws {
        var a = try Self.trial("intnw", fg: [100, 100, 100, 100, 100, 100, 100, 100, 100, 300], sent: 10, bgBytes: [40_000], seconds: 10)
        a.plan.trial = 1
        var b = try Self.trial("intnw", fg: Array(repeating: 100, count: 9) + [500], sent: 10, bgBytes: [60_000], seconds: 10)
        b.plan.trial = 2
        let c = try Self.trial("cellular-only", fg: [1], sent: 1, bgBytes: [1])
        #expect(experiment().keyMetrics([a, b, c]) == [KeyMetric(name: "drive.intnw.bg_Bps", value: 5_000, unit: "B/s", better: .higher),
                                                      KeyMetric(name: "drive.intnw.fg_p95_ms", value: 400, unit: "ms", better: .lower)])
        #expect(experiment().keyMetrics([c]).isEmpty)
    }
}
