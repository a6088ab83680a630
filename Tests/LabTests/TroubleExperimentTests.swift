import Emulation
import Foundation
import Testing
import ToyProtocol
@testable import Lab

/// The `trouble` recipe without a testbed: what it plans, and what it measures from a trial's files.
@Suite final class TroubleExperimentTests {
    let e = TroubleExperiment()
    /// Fake trial directories of one test, removed with it.
    let root = NSTemporaryDirectory() + "trouble-exp-\(UUID().uuidString)"
    deinit { try? FileManager.default.removeItem(atPath: root) }

    @Test func plansEveryVariantWithTheSwitchAndTheDecisionLog() throws {
        var o = ExperimentOptions()
        o.trials = 2
        o.quick = true
        let plans = try e.plans(o)
        #expect(plans.count == TroubleExperiment.Variant.allCases.count * 2)
        for p in plans {
            let v = try #require(TroubleExperiment.Variant(rawValue: p.variant))
            #expect(p.environment["INTNW_TROUBLE"] == (v == .false3GNote ? "on,rttvar_k=0" : v.detection ? "on" : "off"))
            #expect(p.environment["INTNW_TROUBLE_LOG"] == "{trial}/trouble-%p.jsonl")
            #expect(p.apps.contains { $0.kind == .fgClient && $0.arguments.contains("0.2") })
            #expect(p.trace.durationSeconds >= p.durationSeconds)
            switch v {
            case .blackoutOn, .blackoutOff:
                #expect(p.notifyDelaySeconds == 5)
                #expect(!p.trace.isAvailable(link: 0, in: p.trace.slices[p.trace.sliceIndex(at: 20.5)]))
                #expect(p.trace.isAvailable(link: 0, in: p.trace.slices[p.trace.sliceIndex(at: 28.5)]))
            case .fadeOn, .fadeOff:
                let mid = p.trace.slices[p.trace.sliceIndex(at: 22.6)].conditions[0]
                #expect(mid.lossFraction > 0 && mid.hasBandwidth)
            case .falseWiFi:
                #expect(p.apps.count == 2 && p.trace.slices[0].conditions[0].rttMilliseconds == 50)
            case .false3G, .false3GNote:
                #expect(p.apps.count == 2 && p.notifyDelaySeconds == 0)
                let rtts = p.trace.slices.map { $0.conditions[1].rttMilliseconds }
                #expect(rtts.allSatisfy { $0 >= 100 && $0 <= 300 } && Set(rtts).count > 10)
            }
        }
        // Trials differ by seed, so the 3G traces differ too.
        let g = plans.filter { $0.variant == "false-3g" }
        #expect(g.count == 2 && g[0].trace != g[1].trace)
        #expect(ExperimentRegistry.named("trouble") != nil)
    }

    /// A fake trial directory (replay start, the FG app's log and a decision log), analyzed.
    func trial(_ variant: TroubleExperiment.Variant, requests: [(sent: Double, answered: Double?)],
               decisions: [(at: Double, outcome: String)]) throws -> TrialOutcome {
        let dir = root + "/\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let start = ReplayStartRecord(monotonicNs: 5_000_000_000, realtimeNs: 1_700_000_000_000_000_000)
        try start.write(to: dir)
        func ns(_ s: Double) -> UInt64 { start.realtimeNs + UInt64(s * 1e9) }
        var fg = ""
        for (i, r) in requests.enumerated() {
            if let a = r.answered {
                fg += FGRequestRecord(appID: 1, sequence: UInt64(i), sendNs: ns(r.sent), receiveNs: ns(a), requestBytes: 128, replyBytes: 64, variant: .intnw).jsonLine + "\n"
            } else {
                fg += FGUnansweredRecord(appID: 1, sequence: UInt64(i), sendNs: ns(r.sent), requestBytes: 128, variant: .intnw).jsonLine + "\n"
            }
        }
        try fg.write(toFile: "\(dir)/fg.jsonl", atomically: true, encoding: .utf8)
        let log = decisions.map { "{\"type\":\"trouble\",\"realtime_ns\":\(ns($0.at)),\"outcome\":\"\($0.outcome)\",\"kind\":\"wifi\"}" }
            .joined(separator: "\n") + "\n"
        try log.write(toFile: "\(dir)/trouble-42.jsonl", atomically: true, encoding: .utf8)
        var o = ExperimentOptions()
        o.quick = true
        let plan = try #require(try e.plans(o).first { $0.variant == variant.rawValue })
        return TrialOutcome(plan: plan, directory: dir, analysis: try AnalyzedTrial.analysis(directory: dir, apps: plan.apps),
                            problems: [], interrupted: false)
    }

    @Test func measuresDetectionFailoverAndRecovery() throws {
        // Requests every 0.2 s over WiFi (40 ms); the one sent at 19.99 s is answered over cellular at
        // 20.62 s; cellular (250 ms) until WiFi returns at 28 s; WiFi again from 28.2 s.
        var reqs: [(Double, Double?)] = stride(from: 18.0, to: 19.9, by: 0.2).map { ($0, $0 + 0.04) }
        reqs.append((19.99, 20.62))
        reqs += stride(from: 20.8, to: 28.0, by: 0.4).map { ($0, $0 + 0.25) }
        reqs += [(28.0, 28.25), (28.2, 28.24), (28.4, 28.44)]
        let t = try trial(.blackoutOn, requests: reqs,
                          decisions: [(5, "healthy"), (20.39, "declared"), (20.44, "still_troubled")])
        let m = TroubleExperiment.measure(t)
        #expect(m.problems.isEmpty)
        #expect(abs(m.detectSeconds! - 0.39) < 1e-6)
        #expect(abs(m.failoverSeconds! - 0.62) < 1e-6)
        #expect(abs(m.recoverySeconds! - 0.24) < 1e-6)
        #expect(m.declarations == 1 && m.checks == 2)
        let v = e.evaluate([t], options: ExperimentOptions())
        #expect(v.held, "\(v.lines)")

        // Without detection the same request waits for the carrier (5 s): the off-variant's claim holds,
        // and an on-variant with that timing would not.
        let slow: [(Double, Double?)] = [(19.8, 19.84), (19.99, 25.3), (25.4, 25.65)]
        let off = try trial(.blackoutOff, requests: slow, decisions: [])
        #expect(e.evaluate([off], options: ExperimentOptions()).held)
        let bad = try trial(.blackoutOn, requests: slow, decisions: [(20.4, "declared")])
        #expect(!e.evaluate([bad], options: ExperimentOptions()).held)
    }

    @Test("a line of fg.jsonl outside the app-log contract is a named problem, not a crash or a silent gap")
    func malformedFGLogIsAProblem() throws {
        var t = try trial(.false3G, requests: [(1, 1.3)], decisions: [(2, "healthy")])
        let path = "\(t.directory)/fg.jsonl"
        let good = try String(contentsOfFile: path, encoding: .utf8)
        try (good + #"{"type":"fg","app":1,"seq":2,"send_ns":"soon"}"# + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        t.analysis = try AnalyzedTrial.analysis(directory: t.directory, apps: t.plan.apps)
        let m = TroubleExperiment.measure(t)
        #expect(m.requests.count == 1)
        #expect(m.problems.count == 1)
        #expect(m.problems.first?.hasPrefix("fg.jsonl: 1 lines outside the app-log contract (line 2: ") == true, "\(m.problems)")
        #expect(!e.evaluate([t], options: ExperimentOptions()).held)
    }

    @Test func measuresFalseTroubleRates() throws {
        let t = try trial(.false3G, requests: [(1, 1.3)],
                          decisions: [(2, "healthy"), (3, "healthy"), (4, "declared"), (4.05, "cleared"), (5, "idle")])
        let m = TroubleExperiment.measure(t)
        #expect(m.declarations == 1 && m.checks == 3)
        #expect(abs(m.perMinute - 1.0 / (t.plan.durationSeconds / 60)) < 1e-9)
        let clean = try trial(.falseWiFi, requests: [(1, 1.05)], decisions: [(2, "healthy")])
        #expect(e.evaluate([clean], options: ExperimentOptions()).held)
        let noisy = try trial(.falseWiFi, requests: [(1, 1.05)], decisions: [(2, "declared")])
        #expect(!e.evaluate([noisy], options: ExperimentOptions()).held)
    }

    @Test func missingFilesAreAProblemNotACrash() throws {
        var o = ExperimentOptions()
        o.quick = true
        let plan = try #require(try e.plans(o).first)
        let t = TrialOutcome(plan: plan, directory: "/nonexistent/trial", analysis: nil, problems: [], interrupted: false)
        #expect(!TroubleExperiment.measure(t).problems.isEmpty)
        #expect(!e.evaluate([t], options: o).held)
    }

    @Test func failOptionExplainsBadSyntax() throws {
        try #require(FileManager.default.isExecutableFile(atPath: CLITests.lab), "build intnw-lab first (make test does)")
        let r = try CLITests.run(["net", "up", "--fail", "storm@1+2"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--fail") && r.stderr.contains("unknown failure 'storm'"))
        let help = try CLITests.run(["net", "up", "--help"])
        #expect(help.stdout.contains("blackout@START+DURATION") && help.stdout.contains("fade@START+FADE"))
    }
}
