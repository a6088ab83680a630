import Analysis
import Emulation
import Foundation
import Lab
import Logging
import Testing

/// Issue 6 acceptance: FG and BG apps (IntNW and plain variants) on the testbed, captured and analysed;
/// the latencies measured from the wire agree with the apps' own logs, and the bytes the wire shows are
/// the bytes the apps say they had acknowledged.
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct AnalysisPipelineNetnsTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("wire-derived FG latency matches the app logs (median within 1 ms); BG bytes match")
    func wireAgreesWithLogs() async throws {
        let bin = Self.repo.appendingPathComponent(".build/debug").path
        try #require(FileManager.default.isExecutableFile(atPath: bin + "/intnw-app"), "build first (make test does)")
        let root = NSTemporaryDirectory() + "pipeline-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let run = try RunDirectory.create(experiment: "pipeline", root: root)
        var trace = Trace.constant(wifi: LinkConditions(downBytesPerSecond: 1_250_000, upBytesPerSecond: 625_000, rttMilliseconds: 40),
                                   cellular: LinkConditions(downBytesPerSecond: 128_000, upBytesPerSecond: 64_000, rttMilliseconds: 200),
                                   durationSeconds: 600)
        trace.source = "pipeline test"
        var plan = TrialPlan(experiment: "pipeline", variant: "both", trial: 1, trace: trace, durationSeconds: 10, apps: [
            AppLaunch(name: "fg-plain", kind: .fgClient, variant: .plain, appId: 1, arguments: ["--interval", "0.25"]),
            AppLaunch(name: "bg-plain", kind: .bgClient, variant: .plain, appId: 2, arguments: ["--chunk-bytes", "65536", "--depth", "2"]),
            AppLaunch(name: "fg-intnw", kind: .fgClient, variant: .intnw, appId: 3, arguments: ["--interval", "0.25"]),
            AppLaunch(name: "bg-intnw", kind: .bgClient, variant: .intnw, appId: 4, arguments: ["--chunk-bytes", "65536", "--depth", "2"]),
        ])
        plan.prefix = "tpipe"
        var logger = Logger(label: "test.pipeline")
        logger.logLevel = .warning
        let runner = TrialRunner(binDirectory: bin, logger: logger, interruption: Interruption())
        let outcome = try await runner.run(plan, in: run, progress: Progress(experiment: "pipeline", expectedSeconds: 25, quiet: true))
        #expect(outcome.problems.isEmpty, "\(outcome.problems)")
        let a = try Analyzer.analyze(try TrialInput.runDirectory(outcome.directory))
        for name in ["fg-plain", "fg-intnw"] {
            let app = try #require(a.result.apps.first { $0.name == name }, "\(name) not found on the wire")
            let check = try #require(app.logCheck, "\(name): no log cross-check")
            #expect(check.matchedRequests >= 20, "\(name): \(check.matchedRequests) requests matched")
            #expect(check.onlyInLog == 0, "\(name): \(check.onlyInLog) logged requests not seen on the wire")
            let d = try #require(check.medianAbsDifferenceMs)
            #expect(d <= 1.0, "\(name): wire vs log median difference \(d) ms")
            #expect((app.fg?.latencyMs?.p50Ms ?? 0) >= 40, "latency at least one RTT")
        }
        for name in ["bg-plain", "bg-intnw"] {
            let app = try #require(a.result.apps.first { $0.name == name }, "\(name) not found on the wire")
            let check = try #require(app.logCheck)
            let bg = try #require(app.bg)
            #expect(check.loggedChunks > 0)
            // Every chunk the app logged as acknowledged crossed the wire whole (the wire may also show
            // chunks still in flight when the app stopped).
            #expect(bg.completeChunks >= check.loggedChunks, "\(name): wire \(bg.completeChunks) complete chunks, log \(check.loggedChunks)")
            #expect(UInt64(bg.chunks) * 65_536 >= check.loggedChunkBytes)
            // An ack can reach the wire after the app stopped reading (duration over, depth 2 in flight):
            // the wire may show up to `depth` more acks than the log, never fewer.
            #expect(bg.acks >= check.loggedChunks && bg.acks <= check.loggedChunks + 2,
                    "\(name): \(bg.acks) acks on the wire, \(check.loggedChunks) in the log")
        }
    }
}
