import Foundation
import Testing

/// Trials as batch jobs, end to end: a quick multiapp plan run through the real GNU `parallel` binary
/// (`-j 1`: one trial at a time keeps the load down while the rest of the suite runs)
/// and merged gives the same variants, apps, metrics and verdict computation as the in-process run; a
/// missing trial is reported, rerunning its spec fills it in; two jobs of one spec started at the same
/// moment both succeed under distinct prefixes and leave no namespace, claim or process behind.
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct ClusterNetnsTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let lab = repo.appendingPathComponent(".build/debug/intnw-lab").path
    static let parallel = ["/usr/bin/parallel", "/usr/local/bin/parallel"].first { FileManager.default.isExecutableFile(atPath: $0) }

    static func start(_ argv: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        p.currentDirectoryURL = repo
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        _ = FileManager.default.createFile(atPath: log + ".err", contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = FileHandle(forWritingAtPath: log + ".err")
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return p
    }

    static func run(_ argv: [String], log: String) throws -> (status: Int32, out: String) {
        let p = try start(argv, log: log)
        p.waitUntilExit()
        let out = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "") + ((try? String(contentsOfFile: log + ".err", encoding: .utf8)) ?? "")
        return (p.terminationStatus, out)
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
            if cmd.contains("trial run") && cmd.contains("tclp") { left.append("process \(pid): \(cmd)") }
        }
        return left
    }

    @Test("quick multiapp through GNU parallel merges like the in-process run; a missing trial is reported and a rerun fills it; two jobs at once")
    func parallelPlanMatchesInProcessRun() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let parallel = try #require(Self.parallel, "GNU parallel is not installed: make setup")
        let root = NSTemporaryDirectory() + "intnw-cluster-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }

        // In process: plan + run + merge in one command.
        let local = try Self.run([Self.lab, "experiment", "multiapp", "--quick", "--prefix", "tclin", "--runs", "\(root)/runs"], log: "\(root)/local.log")
        try #require(local.status == 0, "in-process run failed:\n\(local.out.suffix(3000))")
        let localDir = "\(root)/runs/multiapp/latest"

        // As jobs: plan, GNU parallel, merge.
        let plan = try Self.run([Self.lab, "experiment", "multiapp", "--quick", "--plan-only", "--prefix", "tclp", "--out", "\(root)/P"], log: "\(root)/plan.log")
        try #require(plan.status == 0, "\(plan.out)")
        let specs = try FileManager.default.contentsOfDirectory(atPath: "\(root)/P").filter { $0.hasSuffix(".json") }.sorted()
        // One spec per trial the manifest lists (the recipe decides how many); the gap below needs two-apps.
        let manifest = try Self.json("\(root)/P/plan.manifest")
        let planned = try #require(manifest["trials"] as? [[String: Any]])
        #expect(specs == planned.compactMap { $0["file"] as? String }.sorted() && specs.count >= 3, "\(specs) vs \(planned)")
        try #require(specs.contains("two-apps.trial-1.json"), "\(specs)")
        let plannedApps = try specs.map { try ((Self.json("\(root)/P/\($0)")["plan"] as? [String: Any])?["apps"] as? [Any])?.count ?? 0 }.reduce(0, +)
        let jobs = try Self.run([parallel, "-j", "1", "--halt", "never", Self.lab, "trial", "run", "{}", "--out", "\(root)/R/{/.}", ":::"]
                                + specs.map { "\(root)/P/\($0)" }, log: "\(root)/parallel.log")
        try #require(jobs.status == 0, "parallel: exit \(jobs.status)\n\(jobs.out.suffix(3000))")
        let merged = try Self.run([Self.lab, "analyze", "--merge"] + specs.map { "\(root)/R/\(($0 as NSString).deletingPathExtension)" }
                                  + ["--out", "\(root)/M"], log: "\(root)/merge.log")
        try #require(merged.status == 0, "merge failed:\n\(merged.out.suffix(3000))")

        // Same variants, apps and metrics.
        let a = try Self.json("\(localDir)/results.json"), b = try Self.json("\(root)/M/results.json")
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
        // What each line judges ("two-apps trial 1", "FG alone"), without its numbers.
        func subjects(_ lines: [String]) -> [String] { lines.map { String($0.prefix { $0 != ":" && $0 != "(" }).trimmingCharacters(in: .whitespaces) } }
        #expect(subjects(vLocal.lines) == subjects(vJobs.lines) && !vLocal.lines.isEmpty, "\(vLocal.lines) vs \(vJobs.lines)")
        #expect(!vLocal.lines.contains { $0.hasPrefix("left out") } && !vJobs.lines.contains { $0.hasPrefix("left out") }, "\(vLocal.lines) vs \(vJobs.lines)")
        // Computed the same way: merging the in-process run's own trial directories reproduces its verdict
        // and results exactly.
        let again = try Self.run([Self.lab, "analyze", "--merge", localDir, "--out", "\(root)/L2"], log: "\(root)/remerge.log")
        #expect(again.status == 0, "\(again.out)")
        let vAgain = try Self.verdict("\(root)/L2")
        #expect(vAgain.held == vLocal.held && vAgain.lines == vLocal.lines, "\(vAgain) vs \(vLocal)")
        #expect(NSDictionary(dictionary: try Self.json("\(root)/L2/results.json")).isEqual(to: a), "re-merged results.json differs from the run's")

        // A missing trial is reported, not averaged around.
        try FileManager.default.removeItem(atPath: "\(root)/R/two-apps.trial-1")
        let gap = try Self.run([Self.lab, "analyze", "--merge", "\(root)/R", "--out", "\(root)/M2"], log: "\(root)/gap.log")
        #expect(gap.status == 1, "merge with a missing trial must fail: \(gap.out)")
        let vGap = try Self.verdict("\(root)/M2")
        #expect(!vGap.held && vGap.lines.contains { $0.hasPrefix("left out two-apps.trial-1: missing") }, "\(vGap.lines)")
        #expect(try (Self.json("\(root)/M2/results.json")["trials"] as? [Any])?.count == specs.count - 1)

        // Two jobs of one spec at the same moment: the rerun that fills the gap, and a second copy.
        let spec = "\(root)/P/two-apps.trial-1.json"
        let p1 = try Self.start([Self.lab, "trial", "run", spec, "--out", "\(root)/R/two-apps.trial-1"], log: "\(root)/j1.log")
        let p2 = try Self.start([Self.lab, "trial", "run", spec, "--out", "\(root)/X/two-apps.trial-1"], log: "\(root)/j2.log")
        p1.waitUntilExit()
        p2.waitUntilExit()
        let logs = [1, 2].map { ((try? String(contentsOfFile: "\(root)/j\($0).log", encoding: .utf8)) ?? "") + ((try? String(contentsOfFile: "\(root)/j\($0).log.err", encoding: .utf8)) ?? "") }
        #expect(p1.terminationStatus == 0 && p2.terminationStatus == 0, "both jobs must succeed:\n\(logs[0].suffix(1500))\n---\n\(logs[1].suffix(1500))")
        let prefixes = try ["R", "X"].map { try Self.json("\(root)/\($0)/two-apps.trial-1/trial.json")["prefix"] as? String ?? "" }
        #expect(prefixes[0] != prefixes[1] && prefixes.allSatisfy { $0.hasPrefix("tclp") }, "prefixes \(prefixes)")
        #expect(Self.leftovers("tclp").isEmpty && Self.leftovers("tclin").isEmpty, "left behind: \(Self.leftovers("tclp") + Self.leftovers("tclin"))")

        let full = try Self.run([Self.lab, "analyze", "--merge", "\(root)/R", "--out", "\(root)/M3"], log: "\(root)/full.log")
        #expect(full.status == 0, "\(full.out)")
        let vFull = try Self.verdict("\(root)/M3")
        #expect(!vFull.lines.contains { $0.hasPrefix("left out") } && subjects(vFull.lines) == subjects(vJobs.lines), "\(vFull.lines)")
    }
}
