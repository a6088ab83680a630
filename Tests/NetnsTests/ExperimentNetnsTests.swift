import Foundation
import Testing

/// The short forms of `multiapp` and of `regress` that CI runs: the harness end to end (testbed, apps,
/// captures, analysis, report) and the regression check against the committed baseline, including that
/// a deliberately broken scheduler (BG policy forced to `permissive`) fails it. One trial per variant
/// (the smoke form; `make regress` runs three).
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct ExperimentNetnsTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let lab = repo.appendingPathComponent(".build/debug/intnw-lab").path

    static func run(_ args: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: lab)
        p.arguments = args
        p.currentDirectoryURL = repo
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let outFile = NSTemporaryDirectory() + "exp-\(getpid())-\(UUID().uuidString).out"
        let errFile = outFile + ".err"
        FileManager.default.createFile(atPath: outFile, contents: nil)
        FileManager.default.createFile(atPath: errFile, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: outFile)
        p.standardError = FileHandle(forWritingAtPath: errFile)
        try p.run()
        p.waitUntilExit()
        let out = (try? String(contentsOfFile: outFile, encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
        return (p.terminationStatus, out, err)
    }

    @Test("regress --only multiapp: quick multiapp runs end to end and matches the baseline; a forced permissive policy regresses")
    func quickMultiappAndRegress() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let runs = NSTemporaryDirectory() + "intnw-runs-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: runs) }
        let ok = try Self.run(["regress", "--only", "multiapp", "--trials", "1", "--prefix", "tmulti", "--runs", runs])
        #expect(ok.status == 0, "regress failed:\n\(ok.stdout)\n\(ok.stderr.suffix(2000))")
        #expect(ok.stdout.contains("multiapp.one-multisocket.fg_p95_ms"), "table lists the metrics: \(ok.stdout)")
        #expect(ok.stderr.contains("[multiapp "), "progress on stderr")
        // The run directory has everything a reader needs.
        let regressDir = "\(runs)/regress"
        let stamp = try #require(try FileManager.default.contentsOfDirectory(atPath: regressDir).first)
        let latest = "\(regressDir)/\(stamp)/multiapp/latest"
        for file in ["experiment.json", "results.json", "summary.md", "report.html", "latency.csv",
                     "two-apps/trial-1/client-wifi0.pcap", "two-apps/trial-1/client-cell0.pcap",
                     "two-apps/trial-1/server-wifi0.pcap", "two-apps/trial-1/server-cell0.pcap", "two-apps/trial-1/apps.json",
                     "fg-alone/trial-1/apps.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(latest)/\(file)"), "missing \(file)")
        }
        let plots = (try? FileManager.default.contentsOfDirectory(atPath: "\(latest)/plots")) ?? []
        #expect(plots.contains { $0.contains("latency_over_time") }, "FG latency over time plotted: \(plots)")

        // Both latencies and the verdict's numbers are in the summary.
        let summary = (try? String(contentsOfFile: "\(latest)/summary.md", encoding: .utf8)) ?? ""
        #expect(summary.contains("app-perceived p95 ms") && summary.contains("wire p95 ms"))
        #expect(summary.contains("FG alone (") && summary.contains("premise (link loaded, BG flowing)"))
        // Sum of apps <= interface bytes in every bin of every trial.
        let results = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(latest)/results.json"))) as? [String: Any]
        let trials = try #require(results?["trials"] as? [[String: Any]])
        #expect(trials.count == 4)
        for t in trials { #expect(t["accountingViolations"] as? Int == 0, "\(t["name"] ?? "?")") }
        // No app or interface above the trace's capacity in any 1 s bin (checked, not skipped).
        for t in trials { #expect(t["capacityViolations"] as? Int == 0, "\(t["name"] ?? "?"): capacity violations \(t["capacityViolations"] ?? "not checked")") }

        let broken = try Self.run(["regress", "--only", "multiapp", "--trials", "1", "--prefix", "tmulti", "--runs", runs],
                                  environment: ["INTNW_BG_POLICY": "permissive"])
        // Negative control. Catches: a check that "fails" for any other reason (a crash, a missing metric,
        // a run error: exit 1) or on an unrelated metric. Permissive lets BG chunks fill the shared
        // multisocket's socket buffer (256 KB, about 4 s of the 64 KB/s uplink), so FG requests on that
        // multisocket starve: the regression must be exit 3 with the one-multisocket FG answered row.
        // (Its FG p95 is taken over the few answered requests, so it need not regress.)
        #expect(broken.status == 3, "a permissive scheduler must fail the regression check with exit 3 (regressed), got \(broken.status):\n\(broken.stdout)\n\(broken.stderr.suffix(2000))")
        let metric = "multiapp.one-multisocket.fg_answered"
        let lines = broken.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let row = lines.first { $0.hasPrefix(metric + " ") }
        #expect(row?.hasSuffix("REGRESSED") == true, "the one-multisocket FG answered row must regress: \(row ?? "no row")\n\(broken.stdout)")
        #expect(!lines.contains { $0.hasPrefix("multiapp.") && $0.hasSuffix("missing") }, "every metric measured: \(broken.stdout)")
        #expect(lines.contains { $0.hasPrefix("REGRESSION: ") && $0.contains(metric) }, "summary line names the metric: \(broken.stdout)")
    }
}
