#if canImport(Glibc)
import Glibc
#endif
import Emulation
import Foundation
import Testing
@testable import Lab

/// Trials as jobs without namespaces: specs are self-contained and checked, prefix claims exclude each
/// other and leave nothing behind, and a merge lists every trial it cannot use instead of averaging
/// around it.
@Suite struct TrialSpecTests {
    static let versions = VersionRecord(gitCommit: "test", gitDirty: false, swift: "swift", kernel: "linux", host: "h")

    static func quickMultiapp() throws -> (PlanManifest, [TrialSpec]) {
        var o = ExperimentOptions()
        o.quick = true
        o.trials = 2
        return try TrialPlanner.specs(MultiappExperiment(), options: o, prefix: .auto(stem: "tplanx"), versions: versions)
    }

    static func scratch(_ name: String) -> String {
        let d = NSTemporaryDirectory() + "trialspec-\(getpid())-\(name)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    @Test("FG apps get the trace replay's start as their request grid's origin; BG apps alone do not")
    func appArgumentsCarryTheGridOrigin() {
        let fg = AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1)
        let bg = AppLaunch(name: "bg", kind: .bgClient, variant: .intnw, appId: 2)
        func origin(_ argv: [String]) -> String? {
            argv.firstIndex(of: "--grid-origin-ns").map { argv[$0 + 1] }
        }
        let o: UInt64 = 53_310_508_471_038
        #expect(origin(TrialRunner.arguments(for: [fg], server: "s", dir: "/d", durationSeconds: 40, gridOriginNs: o)) == String(o))
        #expect(origin(TrialRunner.arguments(for: [bg], server: "s", dir: "/d", durationSeconds: 40, gridOriginNs: o)) == nil)
        var f = fg, b = bg
        f.process = "fgbg"
        b.process = "fgbg"
        let both = TrialRunner.arguments(for: [f, b], server: "s", dir: "/d", durationSeconds: 40, gridOriginNs: o)
        #expect(both.first == "fg-bg-client" && origin(both) == String(o))
        #expect(origin(TrialRunner.arguments(for: [fg], server: "s", dir: "/d", durationSeconds: 40)) == nil)
    }

    @Test("a plan is one spec per trial; the files read back equal to what was planned")
    func planRoundTrip() throws {
        let (manifest, specs) = try Self.quickMultiapp()
        let plans = try MultiappExperiment().plans({ var o = ExperimentOptions(); o.quick = true; o.trials = 2; return o }())
        #expect(specs.count == plans.count && specs.count == 8)
        #expect(manifest.trials.map(\.id) == specs.map(\.id))
        #expect(Set(specs.map(\.planId)).count == 1 && specs[0].planId == manifest.planId)
        #expect(specs[0].planTrials == ["two-apps.trial-1", "two-apps.trial-2", "two-multisockets.trial-1",
                                        "two-multisockets.trial-2", "one-multisocket.trial-1", "one-multisocket.trial-2",
                                        "fg-alone.trial-1", "fg-alone.trial-2"])
        // Seeds follow the recipe: trial k uses seed + k - 1.
        #expect(specs.map(\.plan.seed) == [1, 2, 1, 2, 1, 2, 1, 2])
        let dir = Self.scratch("plan")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TrialPlanner.write(manifest, specs: specs, to: dir)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".json") }.sorted()
        #expect(files == specs.map { "\($0.id).json" }.sorted(), "only specs match *.json (the manifest is plan.manifest)")
        for (s, p) in zip(specs, plans) {
            let back = try TrialSpec.load("\(dir)/\(s.id).json")
            #expect(back.plan.apps == p.apps && back.plan.trace == p.trace && back.plan.environment == p.environment)
            #expect(back.plan.durationSeconds == p.durationSeconds && back.plan.notifyDelaySeconds == p.notifyDelaySeconds)
            #expect(back.options.quick && back.recipeVersion == MultiappExperiment().version)
        }
        let list = try String(contentsOfFile: "\(dir)/\(TrialPlanner.listFile)", encoding: .utf8).split(separator: "\n")
        #expect(list.count == specs.count && list.allSatisfy { $0.hasPrefix("/") && $0.hasSuffix(".json") })
        // The same plan made twice has the same id; another seed gives another.
        var o = ExperimentOptions()
        o.quick = true
        o.trials = 2
        #expect(try TrialPlanner.specs(MultiappExperiment(), options: o, prefix: .auto(stem: "tplanx"), versions: Self.versions).0.planId == manifest.planId)
        o.seed = 7
        #expect(try TrialPlanner.specs(MultiappExperiment(), options: o, prefix: .auto(stem: "tplanx"), versions: Self.versions).0.planId != manifest.planId)
    }

    @Test("every experiment's specs survive the trip through JSON: the trace still matches its hash")
    func everyExperimentRoundTrips() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        var bgpolicy = BGPolicyExperiment(), drive = DriveExperiment()
        bgpolicy.vehicularTracePath = "\(repo)/traces/annarbor.trace"
        drive.tracePath = "\(repo)/traces/annarbor.trace"
        var o = ExperimentOptions()
        o.quick = true
        o.maxApps = 2
        let all: [any Experiment] = ExperimentRegistry.all.map { $0.name == "bgpolicy" ? bgpolicy : $0.name == "drive" ? drive : $0 }
        for e in all {
            let (_, specs) = try TrialPlanner.specs(e, options: o, prefix: .auto(stem: "tplanx"), versions: Self.versions)
            for s in specs {
                let back = try JSONDecoder().decode(TrialSpec.self, from: JSONEncoder().encode(s))
                try back.validate()
                #expect(back.plan.trace == s.plan.trace && back.plan.apps == s.plan.apps, "\(e.name) \(s.id)")
            }
        }
    }

    @Test("an altered or broken spec is refused with one line naming the problem")
    func badSpecs() throws {
        let (_, specs) = try Self.quickMultiapp()
        let dir = Self.scratch("bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let enc = JSONEncoder()
        var tampered = specs[0]
        tampered.plan.trace.slices[0].conditions[1].rttMilliseconds += 1
        try enc.encode(tampered).write(to: URL(fileURLWithPath: "\(dir)/tampered.json"))
        #expect(throws: TrialSpecError.self) { try TrialSpec.load("\(dir)/tampered.json") }
        do { _ = try TrialSpec.load("\(dir)/tampered.json") } catch { #expect("\(error)".contains("hash")) }

        var renamed = specs[0]
        renamed.id = "../escape"
        try enc.encode(renamed).write(to: URL(fileURLWithPath: "\(dir)/renamed.json"))
        #expect(throws: TrialSpecError.self) { try TrialSpec.load("\(dir)/renamed.json") }

        try Data("{\"format\": 1}".utf8).write(to: URL(fileURLWithPath: "\(dir)/junk.json"))
        do { _ = try TrialSpec.load("\(dir)/junk.json"); Issue.record("junk accepted") } catch {
            #expect("\(error)".contains("junk.json") && !"\(error)".contains("\n"), "\(error)")
        }
        #expect(throws: TrialSpecError.self) { try TrialSpec.load("\(dir)/absent.json") }
    }

    @Test("prefix claims: auto picks distinct free prefixes, fixed refuses a held one, release leaves no file")
    func claims() throws {
        guard geteuid() == 0 else { return }  // /run/intnw-lab needs root; CI runs as root
        let policy = PrefixPolicy.auto(stem: "tuclm")
        let a = try PrefixClaim.acquire(policy)
        let b = try PrefixClaim.acquire(policy)
        #expect(a.prefix != b.prefix && a.prefix.hasPrefix("tuclm") && b.prefix.hasPrefix("tuclm"))
        #expect(throws: (any Error).self) { try PrefixClaim.acquire(PrefixPolicy(mode: .fixed, value: a.prefix)) }
        let path = "\(PrefixClaim.directory)/\(a.prefix).lock"
        #expect(FileManager.default.fileExists(atPath: path))
        a.release()
        #expect(!FileManager.default.fileExists(atPath: path))
        let c = try PrefixClaim.acquire(PrefixPolicy(mode: .fixed, value: a.prefix))
        #expect(c.prefix == a.prefix)
        c.release()
        b.release()
        let left = (try? FileManager.default.contentsOfDirectory(atPath: PrefixClaim.directory)) ?? []
        #expect(!left.contains { $0.hasPrefix("tuclm") }, "claims left behind: \(left)")
        #expect(throws: TrialSpecError.self) { try PrefixClaim.acquire(PrefixPolicy(mode: .auto, value: "9bad")) }
    }

    static func writeRecord(_ spec: TrialSpec, status: TrialJobRecord.Status, problems: [String], in dir: String) throws -> String {
        let d = "\(dir)/\(spec.id)"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        try TrialJobRecord(spec: spec, status: status, prefix: "tx1", host: "node7", startedAt: Date(),
                           finishedAt: status == .running ? nil : Date(), problems: problems).write(directory: d)
        return d
    }

    @Test("merge: failed, unfinished, unreadable and missing trials are each listed and the verdict does not hold")
    func mergeReportsEveryGap() throws {
        let (_, specs) = try Self.quickMultiapp()
        let dir = Self.scratch("merge")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Self.writeRecord(specs[0], status: .failed, problems: ["fg exited early (exit 1)"], in: dir)
        _ = try Self.writeRecord(specs[1], status: .running, problems: [], in: dir)
        let broken = "\(dir)/\(specs[2].id)"
        try FileManager.default.createDirectory(atPath: broken, withIntermediateDirectories: true)
        try Data("not json".utf8).write(to: URL(fileURLWithPath: "\(broken)/trial.json"))
        // specs[3...] never ran.
        let out = "\(dir)/merged"
        let r = try ExperimentMerger().merge([dir], into: out)
        #expect(!r.verdict.held)
        #expect(r.outcomes.isEmpty)
        #expect(r.excluded.map(\.id) == specs.map(\.id), "every planned trial accounted for: \(r.excluded)")
        let text = r.verdict.lines.joined(separator: "\n")
        #expect(text.contains("left out two-apps.trial-1: failed on node7: fg exited early"))
        #expect(text.contains("left out two-apps.trial-2: did not finish"))
        #expect(text.contains("left out two-multisockets.trial-1: \(broken)") && text.contains("not a trial record"))
        #expect(text.contains("left out one-multisocket.trial-2: missing"))
        #expect(text.contains("incomplete: 0 of 8 planned trials"))
        let record = try JSONDecoder().decode(ExperimentRecord.self, from: Data(contentsOf: URL(fileURLWithPath: "\(out)/experiment.json")))
        #expect(record.excluded?.count == 8 && record.verdict?.held == false && record.planId == specs[0].planId)
        let summary = try String(contentsOfFile: "\(out)/summary.md", encoding: .utf8)
        #expect(summary.contains("NOT HELD") && summary.contains("left out one-multisocket.trial-2"))
    }

    @Test("merge notes trials that ran under different kernels or TCP congestion control")
    func mergeNotesDifferentHosts() throws {
        let (_, specs) = try Self.quickMultiapp()
        let dir = Self.scratch("hosts")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (i, s) in specs.prefix(2).enumerated() {
            let d = "\(dir)/\(s.id)"
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            var r = TrialJobRecord(spec: s, status: .completed, prefix: "tx\(i)", host: "node\(i)", startedAt: Date(),
                                   finishedAt: Date(), problems: [])
            r.versions = VersionRecord(gitCommit: "abc", gitDirty: false, swift: "s", kernel: i == 0 ? "Linux 6.1" : "Linux 6.8", host: "node\(i)")
            r.tcpCongestionControl = i == 0 ? "cubic" : "bbr"
            try r.write(directory: d)
        }
        let r = try ExperimentMerger().merge([dir], into: "\(dir)/merged")
        let text = r.verdict.lines.joined(separator: "\n")
        #expect(text.contains("different kernels: Linux 6.1 (two-apps.trial-1); Linux 6.8 (two-apps.trial-2)"), "\(text)")
        #expect(text.contains("different TCP congestion control: bbr (two-apps.trial-2); cubic (two-apps.trial-1)"), "\(text)")
        #expect(!text.contains("different builds"))
        #expect(!r.verdict.held && r.excluded.count == 6)
    }

    @Test("merge tells builds apart by the executables' hashes: the same binary under an edited checkout is one build (the checkout noted apart); another binary is another build")
    func mergeNotesBuildsByBinary() throws {
        let (_, specs) = try Self.quickMultiapp()
        func merged(_ name: String, _ versions: [VersionRecord]) throws -> String {
            let dir = Self.scratch(name)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            for (i, s) in specs.prefix(versions.count).enumerated() {
                let d = "\(dir)/\(s.id)"
                try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
                var r = TrialJobRecord(spec: s, status: .completed, prefix: "tx\(i)", host: "h", startedAt: Date(),
                                       finishedAt: Date(), problems: [])
                r.versions = versions[i]
                try r.write(directory: d)
            }
            return try ExperimentMerger().merge([dir], into: "\(dir)/merged").verdict.lines.joined(separator: "\n")
        }
        let binary = ["intnw-lab": String(repeating: "a", count: 64), "intnw-app": String(repeating: "b", count: 64)]
        let clean = VersionRecord(gitCommit: "abc", gitDirty: false, swift: "s", kernel: "k", host: "h", binaries: binary)
        let edited = VersionRecord(gitCommit: "def", gitDirty: true, swift: "s", kernel: "k", host: "h", binaries: binary)
        let same = try merged("samebin", [clean, edited])
        #expect(!same.contains("different builds"), "\(same)")
        #expect(same.contains("different checkouts") && same.contains("abc (two-apps.trial-1)") && same.contains("def+dirty (two-apps.trial-2)"), "\(same)")
        var rebuilt = edited
        rebuilt.binaries?["intnw-app"] = String(repeating: "c", count: 64)
        let other = try merged("otherbin", [clean, rebuilt])
        #expect(other.contains("different builds (executables' SHA-256)") && other.contains("intnw-app cccccccccccc"), "\(other)")
        // Records without hashes (made before they were recorded) fall back to the checkout.
        let old = try merged("oldrec", [VersionRecord(gitCommit: "abc", gitDirty: false, swift: "s", kernel: "k", host: "h"),
                                       VersionRecord(gitCommit: "abc", gitDirty: true, swift: "s", kernel: "k", host: "h")])
        #expect(old.contains("different builds: abc (two-apps.trial-1); abc+dirty (two-apps.trial-2)"), "\(old)")
    }

    @Test("a version record hashes the running executable: the same SHA-256 as sha256sum reads")
    func versionRecordHashesBinary() async throws {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let record = await VersionRecord.current()
        let name = (exe as NSString).lastPathComponent
        let recorded = try #require(record.binaries?[name])
        // CommandRunner throws on a non-zero exit.
        let out = try await CommandRunner.run(["sha256sum", exe])
        #expect(out.split(separator: " ").first.map(String.init) == recorded)
        #expect(sha256Hex(ofFile: "/nonexistent/intnw-app") == nil)
    }

    @Test("merge refuses trials of two different plans, and an unknown recipe version")
    func mergeRefusesMixedPlans() throws {
        let (_, specs) = try Self.quickMultiapp()
        var o = ExperimentOptions()
        o.quick = true
        o.seed = 9
        let other = try TrialPlanner.specs(MultiappExperiment(), options: o, prefix: .auto(stem: "tplanx"), versions: Self.versions).1
        let dir = Self.scratch("mixed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try Self.writeRecord(specs[0], status: .failed, problems: ["x"], in: "\(dir)/a")
        let b = try Self.writeRecord(other[1], status: .failed, problems: ["x"], in: "\(dir)/b")
        do { _ = try ExperimentMerger().merge([a, b], into: "\(dir)/out"); Issue.record("mixed plans merged") } catch {
            #expect("\(error)".contains("2 plans with different experiment, recipe or settings"), "\(error)")
        }
        var old = specs[0]
        old.recipeVersion = 0
        let c = try Self.writeRecord(old, status: .failed, problems: ["x"], in: "\(dir)/c")
        do { _ = try ExperimentMerger().merge([c], into: "\(dir)/out2"); Issue.record("old recipe merged") } catch {
            #expect("\(error)".contains("recipe v0"), "\(error)")
        }
        do { _ = try ExperimentMerger().merge(["\(dir)/nothing-here"], into: "\(dir)/out3"); Issue.record("nothing merged") } catch {
            #expect("\(error)".contains("nothing to merge"), "\(error)")
        }
    }

    @Test("--variants plans only the named variants, in the recipe's order; an unknown name is a one-line error")
    func variantsSubset() throws {
        var o = ExperimentOptions()
        o.quick = true
        o.trials = 2
        o.variants = ["fg-alone", "two-apps"]
        let (manifest, specs) = try TrialPlanner.specs(MultiappExperiment(), options: o, prefix: .auto(stem: "tplanx"), versions: Self.versions)
        #expect(specs.map(\.id) == ["two-apps.trial-1", "two-apps.trial-2", "fg-alone.trial-1", "fg-alone.trial-2"])
        #expect(manifest.trials.count == 4 && specs.allSatisfy { $0.planTrials == specs.map(\.id) })
        // Half the trials: half the recipe's time estimate.
        var all = o
        all.variants = nil
        let full = try TrialPlanner.specs(MultiappExperiment(), options: all, prefix: .auto(stem: "tplanx"), versions: Self.versions).0
        #expect(abs(manifest.expectedSeconds - full.expectedSeconds / 2) < 1e-6 && full.expectedSeconds == MultiappExperiment().expectedSeconds(all))
        o.variants = ["two-apps", "nope"]
        do { _ = try TrialPlanner.specs(MultiappExperiment(), options: o, prefix: .auto(stem: "tplanx"), versions: Self.versions); Issue.record("unknown variant planned") } catch {
            #expect("\(error)" == "--variants: multiapp has no variant 'nope' (it has two-apps, two-multisockets, one-multisocket, fg-alone)", "\(error)")
        }
        o.variants = []
        #expect(throws: LabError.self) { try TrialPlanner.specs(MultiappExperiment(), options: o, prefix: .auto(stem: "tplanx"), versions: Self.versions) }
    }

    @Test("merge: a --variants re-run (other prefix, jobs, build) combines with the full run; the latest run of a trial wins")
    func mergeVariantsRerun() throws {
        let (_, full) = try Self.quickMultiapp()
        var o = ExperimentOptions()
        o.quick = true
        o.trials = 2
        o.variants = ["two-apps"]
        o.prefix = "other"
        o.jobs = 2
        let rerun = try TrialPlanner.specs(MultiappExperiment(), options: o, prefix: .auto(stem: "tother"),
                                           versions: VersionRecord(gitCommit: "newer", gitDirty: false, swift: "swift", kernel: "linux", host: "h")).1
        #expect(rerun.count == 2 && rerun[0].planId != full[0].planId)
        let dir = Self.scratch("rerun")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The full run: two-apps failed; the others never ran (still "running") except one that failed.
        for s in full { _ = try Self.writeRecord(s, status: s.plan.variant == "two-apps" ? .failed : .running,
                                                 problems: s.plan.variant == "two-apps" ? ["fg failed (exited(1)); see fg.err"] : [], in: "\(dir)/full") }
        Thread.sleep(forTimeInterval: 0.01)
        for s in rerun { _ = try Self.writeRecord(s, status: .failed, problems: ["rerun failed too"], in: "\(dir)/rerun") }
        let r = try ExperimentMerger().merge(["\(dir)/full", "\(dir)/rerun"], into: "\(dir)/merged")
        #expect(r.excluded.map(\.id).sorted() == full.map(\.id).sorted(), "every trial of the full plan expected once: \(r.excluded.map(\.id))")
        let text = r.verdict.lines.joined(separator: "\n")
        #expect(text.contains("left out two-apps.trial-1: failed on node7: rerun failed too"), "\(text)")
        #expect(text.contains("two-apps.trial-1 given 2 times: used the latest"), "\(text)")
        // ... and says what the earlier run was.
        #expect(text.contains("earlier: \(dir)/full/two-apps.trial-1 (failed: fg failed (exited(1)); see fg.err)"), "\(text)")
        #expect(text.contains("merged trials of 2 plans with the same settings"), "\(text)")
        #expect(text.contains("incomplete: 0 of 8 planned trials"), "\(text)")
        // The re-run alone expects only its own trials.
        let alone = try ExperimentMerger().merge(["\(dir)/rerun"], into: "\(dir)/alone")
        #expect(alone.excluded.map(\.id) == ["two-apps.trial-1", "two-apps.trial-2"])
    }

    @Test("--retry-invalid reruns a trial only when the fidelity guard alone invalidated it")
    func retryOnlyWhenTheEmulationFellBehind() throws {
        let spec = try Self.quickMultiapp().1[0]
        func record(_ status: TrialJobRecord.Status, emulatorP99: Int?, appFailures: [String] = [], extra: [String] = []) -> TrialJobRecord {
            let f = TrialFidelity.judged(emulatorP99: emulatorP99, packets: 1000, replayerP99: 100, replayerEvents: 10,
                                         cpuBusy: 0.01, appFailures: appFailures)
            var r = TrialJobRecord(spec: spec, status: status, prefix: "tx1", host: "h", startedAt: Date(), finishedAt: Date(),
                                   problems: (f.emulationInvalidReason.map { [$0] } ?? []) + extra)
            r.fidelity = f
            return r
        }
        // The 13:00 CI case: emulator p99 6.2 ms on idle CPUs, nothing else wrong.
        let stalled = record(.failed, emulatorP99: 6_200)
        #expect(stalled.problems.count == 1 && stalled.problems[0].hasPrefix("invalid: the emulation fell behind (emulator lateness p99 6200 µs"))
        #expect(stalled.onlyEmulationFellBehind)
        // Kept as results, not rerun: a valid trial; a stall together with an app failure or another
        // problem; an interrupted trial.
        #expect(!record(.completed, emulatorP99: 300).onlyEmulationFellBehind)
        #expect(!record(.failed, emulatorP99: 300, extra: ["fg failed (exited(1)); see fg.err"]).onlyEmulationFellBehind)
        #expect(!record(.failed, emulatorP99: 6_200, appFailures: ["fg failed (exited(1))"]).onlyEmulationFellBehind)
        #expect(!record(.failed, emulatorP99: 6_200, extra: ["capture client-wifi0 dropped 3 packets"]).onlyEmulationFellBehind)
        #expect(!record(.interrupted, emulatorP99: 6_200).onlyEmulationFellBehind)
        // The same judgement for a single trial's outcome (tests that run one trial retry by it).
        func outcome(_ r: TrialJobRecord, interrupted: Bool = false) -> TrialOutcome {
            TrialOutcome(plan: spec.plan, directory: "/nonexistent", analysis: nil, problems: r.problems,
                         interrupted: interrupted, fidelity: r.fidelity)
        }
        #expect(outcome(stalled).onlyEmulationFellBehind)
        #expect(!outcome(stalled, interrupted: true).onlyEmulationFellBehind)
        #expect(!outcome(record(.completed, emulatorP99: 300)).onlyEmulationFellBehind)
        #expect(!outcome(record(.failed, emulatorP99: 6_200, appFailures: ["fg failed (exited(1))"])).onlyEmulationFellBehind)
        #expect(!outcome(record(.failed, emulatorP99: 6_200, extra: ["capture client-wifi0 dropped 3 packets"])).onlyEmulationFellBehind)
        // A host whose timers wake the emulator's kind of thread late is named before the trials:
        // at half the guard's bound (1 ms p99) or more; not below.
        #expect(ExperimentRunner.timerWarning(HostTimerCheck.Reading(wakeUps: 1000, p99Microseconds: 999, maxMicroseconds: 3000, realtime: true)) == nil)
        let late = try #require(ExperimentRunner.timerWarning(HostTimerCheck.Reading(wakeUps: 1000, p99Microseconds: 2600, maxMicroseconds: 5100, realtime: false)))
        #expect(late.contains("up to 2600 µs late (p99; largest 5100 µs, without real-time priority)") && late.contains("exceeds 2000 µs"), "\(late)")
        let calm = HostTimerCheck.Reading(wakeUps: 1000, p99Microseconds: 85, maxMicroseconds: 267, realtime: true)
        #expect(ExperimentRunner.timerNote(calm) == "host timers: 1000 sleeps of 1 ms woke up to 85 µs late (p99; largest 267 µs)")
        #expect(ExperimentRunner.timerNote(HostTimerCheck.Reading(wakeUps: 1000, p99Microseconds: 2600, maxMicroseconds: 5100, realtime: false)) == late)
        // The option is not a setting of the experiment: runs with different retries merge.
        var a = ExperimentOptions(), b = ExperimentOptions()
        a.retryInvalid = 0
        b.retryInvalid = 3
        var sa = spec, sb = spec
        sa.options = a
        sb.options = b
        #expect(ExperimentMerger.settingsKey(sa) == ExperimentMerger.settingsKey(sb))
        #expect(ExperimentOptions().retryInvalid == nil && ExperimentOptions.defaultRetryInvalid == 2)
    }

    @Test("Slurm scripts: one array task per spec, the merge after the whole array")
    func slurmScripts() throws {
        var s = SlurmScripts(lab: "/opt/lab/intnw-lab", planDirectory: "/shared/p", resultsDirectory: "/shared/p/results",
                             mergedDirectory: "/shared/p/merged", experiment: "multiapp", trials: 3, longestTrialSeconds: 20)
        s.maxParallel = 2
        #expect(s.trialsScript.contains("#SBATCH --array=1-3%2"))
        #expect(s.trialsScript.contains("sed -n \"${SLURM_ARRAY_TASK_ID}p\" \"$PLAN/specs.txt\""))
        #expect(s.trialsScript.contains("exec \"$LAB\" trial run \"$SPEC\" --out \"$RESULTS/$ID\""))
        #expect(s.taskMinutes == 4, "(20 + 120) * 1.5 s rounded up to minutes")
        #expect(s.mergeScript.contains("analyze --merge \"$RESULTS\" --out \"$MERGED\""))
        #expect(s.submitScript.contains("--dependency=afterany:\"$array\" merge.sbatch"))
    }
}
