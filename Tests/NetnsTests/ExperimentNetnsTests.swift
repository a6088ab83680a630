import Foundation
import Lab
import Testing

/// The short forms of `multiapp` and of `regress` that CI runs, and trials as batch jobs, in one test
/// because they need the same experiment: one in-process quick multiapp run (`regress --only multiapp
/// --trials 1`: testbed, apps, captures, analysis, report, and the regression check against the
/// committed baseline) is also the reference the jobs run is compared with. (These were two suites,
/// `ExperimentNetnsTests` and `ClusterNetnsTests`, that ran the same 4-trial experiment twice more:
/// 14 trials in about 6.5 minutes; now 11, two of them at once, in about 4.)
///
/// - In process: `regress` passes against the baseline; the run directory holds everything a reader needs.
/// - As jobs: the same plan through the real GNU `parallel` (`-j 1`) and `analyze --merge` has the same
///   trials, apps, variants and app metric fields and judges the same subjects; re-merging the in-process
///   run's trial directories reproduces it exactly.
/// - Two jobs of one spec started together run under distinct claimed prefixes and leave nothing behind.
/// - A missing trial fails the merge and is named; rerunning its spec fills it in. The rerun has the BG
///   policy forced to `permissive`: a broken scheduler, so the filled-in run is also the regression
///   check's negative control (exit 3 on the one-multisocket FG row, nothing else regressed, nothing
///   missing).
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct ExperimentNetnsTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let lab = repo.appendingPathComponent(".build/debug/intnw-lab").path
    static let parallel = ["/usr/bin/parallel", "/usr/local/bin/parallel"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static func start(_ argv: [String], log: String, environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        p.currentDirectoryURL = repo
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        _ = FileManager.default.createFile(atPath: log + ".err", contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = FileHandle(forWritingAtPath: log + ".err")
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return p
    }

    static func output(_ log: String) -> (stdout: String, stderr: String) {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "", (try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? "")
    }

    static func run(_ argv: [String], log: String, environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = try start(argv, log: log, environment: environment)
        p.waitUntilExit()
        let (out, err) = output(log)
        return (p.terminationStatus, out, err)
    }

    static func json(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(path) is not a JSON object")
    }

    /// Every key path of a JSON value (array elements under `[]`): the results' shape without the numbers.
    static func keyPaths(_ v: Any, _ prefix: String = "") -> Set<String> {
        var out: Set<String> = [prefix]
        if let d = v as? [String: Any] {
            for (k, x) in d { out.formUnion(keyPaths(x, prefix + "." + k)) }
        } else if let a = v as? [Any] {
            for x in a { out.formUnion(keyPaths(x, prefix + "[]")) }
        }
        return out
    }

    /// (trial name, app name, variant, role) of every app in a results.json.
    static func apps(_ results: [String: Any]) -> Set<String> {
        var out: Set<String> = []
        for t in results["trials"] as? [[String: Any]] ?? [] {
            for a in t["apps"] as? [[String: Any]] ?? [] {
                out.insert("\(t["name"] ?? "?") \(a["name"] ?? "?") \(a["variant"] ?? "?") \(a["role"] ?? "?")")
            }
        }
        return out
    }

    static func verdict(_ dir: String) throws -> (held: Bool, lines: [String]) {
        let v = try #require(try json("\(dir)/experiment.json")["verdict"] as? [String: Any])
        return (v["held"] as? Bool ?? false, v["lines"] as? [String] ?? [])
    }

    static func leftovers(_ stem: String) -> [String] {
        var left: [String] = []
        for ns in (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? [] where ns.hasPrefix(stem) { left.append("netns \(ns)") }
        for c in (try? FileManager.default.contentsOfDirectory(atPath: "/run/intnw-lab/claims")) ?? [] where c.hasPrefix(stem) { left.append("claim \(c)") }
        for c in (try? FileManager.default.contentsOfDirectory(atPath: "/run/intnw-lab")) ?? [] where c.hasPrefix(stem) { left.append("state \(c)") }
        for c in (try? FileManager.default.contentsOfDirectory(atPath: "/run/intnw-lab/prefixes")) ?? [] where c.hasPrefix(stem) { left.append("prefix \(c)") }
        for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int32(pid) != nil {
            let cmd = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0.map { $0 == 0 ? 32 : $0 }, as: UTF8.self) } ?? ""
            if (cmd.contains("trial run") || cmd.contains("regress")) && cmd.contains(stem) { left.append("process \(pid): \(cmd)") }
        }
        return left
    }

    /// Pairs of trials (by directory) whose runs overlapped in time, from their `trial.json`.
    static func overlapping(_ dirs: [String]) throws -> [(String, String)] {
        let records = try dirs.map { ($0, try TrialJobRecord.load(directory: $0)) }
        var pairs: [(String, String)] = []
        for (i, a) in records.enumerated() {
            for b in records[(i + 1)...] {
                let aEnd = a.1.finishedAt ?? .distantFuture, bEnd = b.1.finishedAt ?? .distantFuture
                if a.1.startedAt < bEnd && b.1.startedAt < aEnd { pairs.append((a.0, b.0)) }
            }
        }
        return pairs
    }

    static func prefix(_ dir: String) throws -> String { try TrialJobRecord.load(directory: dir).prefix ?? "" }

    @Test("quick multiapp: regress passes in process; the plan through GNU parallel merges like it; two jobs of one spec at once; a missing trial is named; its spec rerun with a broken scheduler fills it and fails the regression check on the right metric")
    func quickMultiappRegressAndJobs() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let parallel = try #require(Self.parallel, "GNU parallel is not installed: make setup")
        let root = NSTemporaryDirectory() + "intnw-experiment-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }

        // MARK: In process: regress --only multiapp (one quick multiapp run) against the baseline.
        let ok = try Self.run([Self.lab, "regress", "--only", "multiapp", "--trials", "1", "--prefix", "tmulti", "--runs", "\(root)/runs"],
                              log: "\(root)/regress.log")
        #expect(ok.status == 0, "regress failed:\n\(ok.stdout)\n\(ok.stderr.suffix(2000))")
        #expect(ok.stdout.contains("multiapp.one-multisocket.fg_p95_ms"), "table lists the metrics: \(ok.stdout)")
        #expect(ok.stderr.contains("[multiapp "), "progress on stderr")
        // The run directory has everything a reader needs.
        let regressDir = "\(root)/runs/regress"
        let stamp = try #require(try FileManager.default.contentsOfDirectory(atPath: regressDir).first)
        let localDir = "\(regressDir)/\(stamp)/multiapp/latest"
        for file in ["experiment.json", "results.json", "summary.md", "report.html", "latency.csv",
                     "two-apps/trial-1/client-wifi0.pcap", "two-apps/trial-1/client-cell0.pcap",
                     "two-apps/trial-1/server-wifi0.pcap", "two-apps/trial-1/server-cell0.pcap", "two-apps/trial-1/apps.json",
                     "fg-alone/trial-1/apps.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(localDir)/\(file)"), "missing \(file)")
        }
        let plots = (try? FileManager.default.contentsOfDirectory(atPath: "\(localDir)/plots")) ?? []
        #expect(plots.contains { $0.contains("latency_over_time") }, "FG latency over time plotted: \(plots)")
        // Both latencies and the verdict's numbers are in the summary.
        let summary = (try? String(contentsOfFile: "\(localDir)/summary.md", encoding: .utf8)) ?? ""
        #expect(summary.contains("app-perceived p95 ms") && summary.contains("wire p95 ms"))
        #expect(summary.contains("FG alone (") && summary.contains("premise (link loaded, BG flowing)"))
        let a = try Self.json("\(localDir)/results.json")
        let trials = try #require(a["trials"] as? [[String: Any]])
        #expect(trials.count == 4)
        // Sum of apps <= interface bytes in every bin of every trial.
        for t in trials { #expect(t["accountingViolations"] as? Int == 0, "\(t["name"] ?? "?")") }
        // No app or interface above the trace's capacity in any 1 s bin (checked, not skipped).
        for t in trials { #expect(t["capacityViolations"] as? Int == 0, "\(t["name"] ?? "?"): capacity violations \(t["capacityViolations"] ?? "not checked")") }
        // The same, a second way: the independent checker (python3, tshark and the Lua dissector, no
        // code shared with the analyzer) recomputes every 1 s bin of every trial from the pcaps.
        let checked = try Self.run(["/usr/bin/env", "python3", Self.repo.appendingPathComponent("tools/check-run.py").path, localDir],
                                   log: "\(root)/check-run.log")
        print("check-run: \(checked.stdout)")
        #expect(checked.status == 0 && checked.stdout.contains("4 trials") && checked.stdout.contains("violations: 0")
                && !checked.stdout.contains("not checked"),
                "tools/check-run.py on the quick multiapp run: exit \(checked.status)\n\(checked.stdout)\(checked.stderr)")
        // The variants of the run, as <variant>/trial-1 directories (the layout `regress --from-runs` reads).
        let variants = try FileManager.default.contentsOfDirectory(atPath: localDir)
            .filter { FileManager.default.fileExists(atPath: "\(localDir)/\($0)/trial-1/trial.json") }.sorted()
        #expect(variants == ["fg-alone", "one-multisocket", "two-apps", "two-multisockets"], "\(variants)")

        // MARK: As jobs: plan, GNU parallel, merge.
        let plan = try Self.run([Self.lab, "experiment", "multiapp", "--quick", "--plan-only", "--prefix", "tclp", "--out", "\(root)/P"], log: "\(root)/plan.log")
        try #require(plan.status == 0, "\(plan.stdout)\(plan.stderr)")
        let specs = try FileManager.default.contentsOfDirectory(atPath: "\(root)/P").filter { $0.hasSuffix(".json") }.sorted()
        // One spec per trial the manifest lists (the recipe decides how many), one per variant of the
        // in-process run; the gap below needs one-multisocket.
        let manifest = try Self.json("\(root)/P/plan.manifest")
        let planned = try #require(manifest["trials"] as? [[String: Any]])
        #expect(specs == planned.compactMap { $0["file"] as? String }.sorted() && specs == variants.map { "\($0).trial-1.json" }, "\(specs) vs \(planned)")
        let gapName = "one-multisocket.trial-1"
        try #require(specs.contains("\(gapName).json"), "\(specs)")
        let plannedApps = try specs.map { try ((Self.json("\(root)/P/\($0)")["plan"] as? [String: Any])?["apps"] as? [Any])?.count ?? 0 }.reduce(0, +)
        // One trial at a time (`-j 1`): two at once on this loaded 2-core machine pushed the emulator's
        // p99 lateness past the 2 ms fidelity bound (3.3 and 11 ms measured), which invalidates the trials.
        let jobs = try Self.run([parallel, "-j", "1", "--halt", "never", Self.lab, "trial", "run", "{}", "--out", "\(root)/R/{/.}", ":::"]
                                + specs.map { "\(root)/P/\($0)" }, log: "\(root)/parallel.log")
        try #require(jobs.status == 0, "parallel: exit \(jobs.status)\n\(jobs.stdout.suffix(1500))\(jobs.stderr.suffix(1500))")
        let jobDirs = specs.map { "\(root)/R/\(($0 as NSString).deletingPathExtension)" }
        let merged = try Self.run([Self.lab, "analyze", "--merge"] + jobDirs + ["--out", "\(root)/M"], log: "\(root)/merge.log")
        try #require(merged.status == 0, "merge failed:\n\(merged.stdout.suffix(1500))\(merged.stderr.suffix(1500))")

        // Same variants, apps and metrics as the in-process run.
        let b = try Self.json("\(root)/M/results.json")
        // The merged run's trials are the job directories: the independent checker finds them there.
        let checkedJobs = try Self.run(["/usr/bin/env", "python3", Self.repo.appendingPathComponent("tools/check-run.py").path,
                                        "--trials", "\(root)/R", "\(root)/M"], log: "\(root)/check-run-merged.log")
        #expect(checkedJobs.status == 0 && checkedJobs.stdout.contains("\(specs.count) trials") && checkedJobs.stdout.contains("violations: 0")
                && !checkedJobs.stdout.contains("not checked"),
                "tools/check-run.py on the merged jobs: exit \(checkedJobs.status)\n\(checkedJobs.stdout)\(checkedJobs.stderr)")
        #expect(Self.apps(a) == Self.apps(b) && Self.apps(a).count == plannedApps, "apps (\(plannedApps) planned): \(Self.apps(a)) vs \(Self.apps(b))")
        #expect((a["trials"] as? [Any])?.count == specs.count && (b["trials"] as? [Any])?.count == specs.count)
        // The apps' metric fields (maps keyed by what was seen, like frame-type counts, are data, not shape).
        // Elements of per-request lists are there only when the list is not empty: also data.
        func metricFields(_ v: Any) -> Set<String> {
            Self.keyPaths(v).filter { $0.hasPrefix("[].apps") && $0.components(separatedBy: "[]").count <= 3 }
        }
        let shapeA = metricFields(a["trials"] as Any), shapeB = metricFields(b["trials"] as Any)
        #expect(shapeA == shapeB, "metrics differ: only local \(shapeA.subtracting(shapeB).sorted()), only merged \(shapeB.subtracting(shapeA).sorted())")
        #expect(shapeA.contains { $0.contains("latency") }, "results carry FG latency: \(shapeA.sorted().prefix(20))")
        for f in ["summary.md", "report.html", "experiment.json", "latency.csv"] {
            #expect(FileManager.default.fileExists(atPath: "\(root)/M/\(f)"), "merge wrote no \(f)")
        }
        // The verdict judges the same trials the same way: one line per trial, same subjects.
        let vLocal = try Self.verdict(localDir), vJobs = try Self.verdict("\(root)/M")
        // What each line judges ("two-apps trial 1", "FG alone"), without its numbers. A trial the
        // fidelity guard invalidated (a host stall) is run again; the merge then notes the earlier
        // run ("<id> given 2 times: used the latest ..."), a note, not a judgement.
        func subjects(_ lines: [String]) -> [String] {
            lines.filter { !$0.contains(" times: used the latest, ") }
                .map { String($0.prefix { $0 != ":" && $0 != "(" }).trimmingCharacters(in: .whitespaces) }
        }
        for line in (vLocal.lines + vJobs.lines) where line.contains(" times: used the latest, ") { print("rerun after a host stall: \(line)") }
        #expect(subjects(vLocal.lines) == subjects(vJobs.lines) && !vLocal.lines.isEmpty, "\(vLocal.lines) vs \(vJobs.lines)")
        #expect(!vLocal.lines.contains { $0.hasPrefix("left out") } && !vJobs.lines.contains { $0.hasPrefix("left out") }, "\(vLocal.lines) vs \(vJobs.lines)")
        // Computed the same way: merging the in-process run's own trial directories reproduces its verdict
        // and results exactly.
        let again = try Self.run([Self.lab, "analyze", "--merge", localDir, "--out", "\(root)/L2"], log: "\(root)/remerge.log")
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
        let vAgain = try Self.verdict("\(root)/L2")
        #expect(vAgain.held == vLocal.held && vAgain.lines == vLocal.lines, "\(vAgain) vs \(vLocal)")
        #expect(NSDictionary(dictionary: try Self.json("\(root)/L2/results.json")).isEqual(to: a), "re-merged results.json differs from the run's")

        // MARK: A missing trial is reported, not averaged around.
        try FileManager.default.removeItem(atPath: "\(root)/R/\(gapName)")
        for kept in try FileManager.default.contentsOfDirectory(atPath: "\(root)/R") where kept.hasPrefix("\(gapName).invalid-attempt-") {
            try FileManager.default.removeItem(atPath: "\(root)/R/\(kept)")
        }
        let gap = try Self.run([Self.lab, "analyze", "--merge", "\(root)/R", "--out", "\(root)/M2"], log: "\(root)/gap.log")
        #expect(gap.status == 1, "merge with a missing trial must fail: \(gap.stdout)\(gap.stderr)")
        let vGap = try Self.verdict("\(root)/M2")
        #expect(!vGap.held && vGap.lines.contains { $0.hasPrefix("left out \(gapName): missing") }, "\(vGap.lines)")
        #expect(try (Self.json("\(root)/M2/results.json")["trials"] as? [Any])?.count == specs.count - 1)

        // MARK: Two jobs of one spec at the same moment (the lightest, fg-alone: one app). What this
        // checks is the prefix claim and the cleanup, not the measurement: two trials at once on this
        // loaded 2-core machine can push the emulator past its fidelity bound (5.7 ms p99 measured), and
        // such a trial still ran to its end, so a job may end "failed" for that reason alone.
        let twin = "\(root)/P/fg-alone.trial-1.json"
        // No rerun (--retry-invalid 0): a rerun would start after the other job and not overlap it.
        let p1 = try Self.start([Self.lab, "trial", "run", twin, "--out", "\(root)/X1/fg-alone.trial-1", "--retry-invalid", "0"], log: "\(root)/j1.log")
        let p2 = try Self.start([Self.lab, "trial", "run", twin, "--out", "\(root)/X2/fg-alone.trial-1", "--retry-invalid", "0"], log: "\(root)/j2.log")
        p1.waitUntilExit()
        p2.waitUntilExit()
        let pair = ["\(root)/X1/fg-alone.trial-1", "\(root)/X2/fg-alone.trial-1"]
        for (k, (p, dir)) in zip([p1, p2], pair).enumerated() {
            let log = Self.output("\(root)/j\(k + 1).log")
            let r = try TrialJobRecord.load(directory: dir)
            let fidelityOnly = r.status == .failed && r.fidelity?.valid == false && !r.problems.isEmpty
                && r.problems.allSatisfy { $0.hasPrefix("invalid: the emulation fell behind") }
            #expect((p.terminationStatus == 0 && r.status == .completed) || (p.terminationStatus != 0 && fidelityOnly),
                    "job \(k + 1) must run to its end: exit \(p.terminationStatus), \(r.status), \(r.problems)\n\((log.stdout + log.stderr).suffix(1500))")
        }
        let prefixes = try pair.map { try Self.prefix($0) }
        #expect(prefixes[0] != prefixes[1] && prefixes.allSatisfy { $0.hasPrefix("tclp") }, "prefixes \(prefixes)")
        #expect(try Self.overlapping(pair).count == 1, "the two jobs of one spec did not run at the same time")
        #expect(Self.leftovers("tclp").isEmpty && Self.leftovers("tmulti").isEmpty, "left behind: \(Self.leftovers("tclp") + Self.leftovers("tmulti"))")

        // MARK: Rerunning the missing trial's spec fills the gap, with a broken scheduler:
        // INTNW_BG_POLICY=permissive reaches the apps (as `regress --bg-policy` sets it) without changing
        // the spec. Alone, so its measurement counts (it must pass the fidelity bound).
        let spec = "\(root)/P/\(gapName).json"
        let refill = try Self.run([Self.lab, "trial", "run", spec, "--out", "\(root)/R/\(gapName)"], log: "\(root)/refill.log",
                                  environment: ["INTNW_BG_POLICY": "permissive"])
        #expect(refill.status == 0, "the rerun must succeed:\n\((refill.stdout + refill.stderr).suffix(1500))")
        #expect(try Self.prefix("\(root)/R/\(gapName)").hasPrefix("tclp"))
        #expect(Self.leftovers("tclp").isEmpty, "left behind: \(Self.leftovers("tclp"))")

        let full = try Self.run([Self.lab, "analyze", "--merge", "\(root)/R", "--out", "\(root)/M3"], log: "\(root)/full.log")
        #expect(full.status == 0, "\(full.stdout)\(full.stderr)")
        let vFull = try Self.verdict("\(root)/M3")
        #expect(!vFull.lines.contains { $0.hasPrefix("left out") } && subjects(vFull.lines) == subjects(vJobs.lines), "\(vFull.lines)")
        // The recipe's verdict sees the broken scheduler too: FG queued behind BG chunks is not held.
        #expect(!vFull.held && !vFull.lines.contains { $0.hasPrefix("one-multisocket trial 1: HELD") }, "\(vFull.lines)")

        // MARK: Negative control of the regression check: the in-process run with its one-multisocket trial
        // replaced by the permissive one. Catches: a check that "fails" for any other reason (a crash, a
        // missing metric, a run error: exit 1) or on an unrelated metric (the other three variants are the
        // run that passed above, so only one-multisocket rows may regress). Permissive lets BG chunks fill
        // the shared multisocket's socket buffer (256 KB, about 4 s of the 64 KB/s uplink), so FG requests
        // on that multisocket starve: exit 3 with the one-multisocket FG answered row regressed. (Its FG
        // p95 is taken over the few answered requests, so it need not regress.)
        for v in variants {
            try FileManager.default.createDirectory(atPath: "\(root)/N/\(v)", withIntermediateDirectories: true)
            let target = v == "one-multisocket" ? "\(root)/R/\(gapName)" : "\(localDir)/\(v)/trial-1"
            try FileManager.default.createSymbolicLink(atPath: "\(root)/N/\(v)/trial-1", withDestinationPath: target)
        }
        let neg = try Self.run([Self.lab, "regress", "--only", "multiapp", "--trials", "1", "--prefix", "tmulti", "--runs", "\(root)/runs",
                                "--from-runs", "\(root)/N"], log: "\(root)/negative.log")
        #expect(neg.status == 3, "a permissive scheduler must fail the regression check with exit 3 (regressed), got \(neg.status):\n\(neg.stdout)\n\(neg.stderr.suffix(2000))")
        let metric = "multiapp.one-multisocket.fg_answered"
        for line in neg.stdout.split(separator: "\n") where line.contains("REGRESS") { print("negative control: \(line)") }
        let lines = neg.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let row = lines.first { $0.hasPrefix(metric + " ") }
        #expect(row?.hasSuffix("REGRESSED") == true, "the one-multisocket FG answered row must regress: \(row ?? "no row")\n\(neg.stdout)")
        #expect(!lines.contains { $0.hasPrefix("multiapp.") && $0.hasSuffix("missing") }, "every metric measured: \(neg.stdout)")
        #expect(!lines.contains { $0.hasPrefix("multiapp.") && $0.hasSuffix("REGRESSED") && !$0.hasPrefix("multiapp.one-multisocket.") },
                "only the broken layout regresses: \(neg.stdout)")
        #expect(lines.contains { $0.hasPrefix("REGRESSION: ") && $0.contains(metric) }, "summary line names the metric: \(neg.stdout)")
    }
}
