import Analysis
import Emulation
import Foundation

/// Puts trials run as separate jobs back together (`intnw-lab analyze --merge`, and the last step of
/// every `intnw-lab experiment` run): one analysis across the usable trials, the recipe's verdict, and
/// results.json / summary.md / report.html / experiment.json in the output directory.
///
/// Only trials whose `trial.json` says `completed` are analysed. Every other trial of the plan (never
/// given, still running or killed, failed, interrupted, unreadable) is listed in the verdict, which then
/// does not hold: the expectation is never judged on a silently smaller sample.
public struct ExperimentMerger: Sendable {
    public var progress: Progress?

    public init(progress: Progress? = nil) { self.progress = progress }

    /// Directories named to skip while looking for trials below a directory.
    static let skipped: Set<String> = ["plan", "plots", "slurm", "logs"]

    /// Trial directories (holding `trial.json`) at or below `paths` (three levels at most), and the paths
    /// that hold none, with why.
    public static func trialDirectories(_ paths: [String]) -> (dirs: [String], unusable: [(path: String, reason: String)]) {
        let fm = FileManager.default
        var dirs: [String] = []
        var unusable: [(String, String)] = []
        func search(_ dir: String, depth: Int) -> [String] {
            if fm.fileExists(atPath: "\(dir)/\(TrialJobRecord.file)") { return [dir] }
            guard depth > 0, let entries = try? fm.contentsOfDirectory(atPath: dir) else { return [] }
            return entries.sorted().filter { !skipped.contains($0) && !$0.hasPrefix(".") }.flatMap { e -> [String] in
                var isDir: ObjCBool = false
                let p = "\(dir)/\(e)"
                guard fm.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue else { return [] }
                return search(p, depth: depth - 1)
            }
        }
        for raw in paths {
            let path = raw.count > 1 && raw.hasSuffix("/") ? String(raw.dropLast()) : raw
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir) else { unusable.append((path, "does not exist")); continue }
            guard isDir.boolValue else { unusable.append((path, "is not a directory")); continue }
            let found = search(path, depth: 3)
            if found.isEmpty { unusable.append((path, "holds no \(TrialJobRecord.file) (the job did not start, or this is not a trial directory)")) }
            dirs += found
        }
        return (dirs, unusable)
    }

    /// `plan`: the plan's specs when the caller has them (a local run): then even a run whose every
    /// trial is missing (Ctrl-C before the first ended) gets its run directory and verdict.
    public func merge(_ paths: [String], into out: String, plan: [TrialSpec] = []) throws -> ExperimentRunner.Result {
        let (dirs, unusable) = Self.trialDirectories(paths)
        var bad = unusable
        var records: [(dir: String, record: TrialJobRecord)] = []
        // Named by their real paths: a run directory given as `runs/X/latest` (a symlink that moves
        // on) must name its trials, and the earlier attempts of a rerun trial, as the run itself did.
        for d in dirs.map({ URL(fileURLWithPath: $0).standardizedFileURL.resolvingSymlinksInPath().path }) {
            do { records.append((d, try TrialJobRecord.load(directory: d))) } catch { bad.append((d, "\(error)")) }
        }
        guard let reference = records.first?.record.spec ?? plan.first else {
            throw TrialSpecError.invalid("nothing to merge: " + (bad.isEmpty ? "no paths given" : bad.map { "\($0.path) \($0.reason)" }.joined(separator: "; ")))
        }
        // Trials of several plans merge when the plans differ only in how they ran (prefix, --jobs, runs
        // directory, --variants, build): e.g. some variants run again with `--variants` next to a full run.
        let settings = Dictionary(grouping: records, by: { Self.settingsKey($0.record.spec) })
        guard settings.count == 1 else {
            throw TrialSpecError.invalid("the trials come from \(settings.count) plans with different experiment, recipe or settings (" + settings.map { "\($0.value.count) trial(s), e.g. \($0.value[0].dir)" }.sorted().joined(separator: "; ") + "): merge trials of the same settings only")
        }
        let plans = Dictionary(grouping: records, by: { $0.record.spec.planId })
        guard let experiment = ExperimentRegistry.named(reference.experiment) else {
            throw TrialSpecError.invalid("the trials are of experiment '\(reference.experiment)', which this intnw-lab does not know")
        }
        guard experiment.version == reference.recipeVersion else {
            throw TrialSpecError.invalid("the trials ran \(experiment.name) recipe v\(reference.recipeVersion); this intnw-lab has v\(experiment.version) and would judge them by another recipe")
        }
        let outPath = URL(fileURLWithPath: out).standardizedFileURL.path
        guard !FileManager.default.fileExists(atPath: "\(outPath)/\(TrialJobRecord.file)") else {
            throw TrialSpecError.invalid("--out \(out) is a trial directory: merge into another directory")
        }
        try FileManager.default.createDirectory(atPath: outPath, withIntermediateDirectories: true)
        let run = RunDirectory(path: outPath, experiment: experiment.name)

        // The newest run of a trial wins (a spec run again into another directory).
        var notes: [String] = []
        var byId: [String: (dir: String, record: TrialJobRecord)] = [:]
        // (An experiment keeps a trial the fidelity guard invalidated under `invalid-attempts/` and runs
        // it again: the rerun is the latest, and the note says what the earlier run was.)
        for (id, runs) in Dictionary(grouping: records, by: { $0.record.spec.id }).sorted(by: { $0.key < $1.key }) {
            let sorted = runs.sorted { ($0.record.finishedAt ?? $0.record.startedAt) < ($1.record.finishedAt ?? $1.record.startedAt) }
            byId[id] = sorted.last!
            if runs.count > 1 {
                let earlier = sorted.dropLast().map { r in
                    "\(r.dir) (\(r.record.status.rawValue)" + (r.record.problems.isEmpty ? "" : ": " + r.record.problems.joined(separator: "; ")) + ")"
                }
                notes.append("\(id) given \(runs.count) times: used the latest, \(sorted.last!.dir); earlier: " + earlier.joined(separator: "; "))
            }
        }

        // Every trial any of the plans names is expected (a `--variants` run names only its own).
        var planTrials = plan.isEmpty ? [] : plan.first!.planTrials
        for r in records { for id in r.record.spec.planTrials where !planTrials.contains(id) { planTrials.append(id) } }
        if plans.count > 1 {
            notes.append("merged trials of \(plans.count) plans with the same settings: " + plans.map { id, runs in
                "\(id) (\(Set(runs.map(\.record.spec.plan.variant)).sorted().joined(separator: ", ")))" }.sorted().joined(separator: "; "))
        }

        var excluded: [ExperimentRecord.Excluded] = []
        var completed: [(plan: TrialPlan, directory: String)] = []
        var trialRecords: [ExperimentRecord.TrialRecord] = []
        var interrupted = false
        for id in planTrials {
            guard let (dir, r) = byId[id] else {
                let named = bad.first { ($0.path as NSString).lastPathComponent == id }
                excluded.append(.init(id: id, reason: named.map { "\($0.path) \($0.reason)" } ?? "missing: no trial directory given holds it",
                                      directory: named?.path))
                continue
            }
            let relative = dir.hasPrefix(outPath + "/") ? String(dir.dropFirst(outPath.count + 1)) : dir
            trialRecords.append(.init(variant: r.spec.plan.variant, trial: r.spec.plan.trial, directory: relative,
                                      seed: r.spec.plan.seed, durationSeconds: r.spec.plan.durationSeconds,
                                      apps: r.spec.plan.apps, environment: r.spec.plan.environment, problems: r.problems,
                                      status: r.status, host: r.host, prefix: r.prefix,
                                      tcpCongestionControl: r.tcpCongestionControl, tcpSysctls: r.tcpSysctls,
                                      fidelity: r.fidelity))
            switch r.status {
            case .completed:
                var plan = r.spec.plan
                if let p = r.prefix { plan.prefix = p }
                completed.append((plan, dir))
            case .running:
                excluded.append(.init(id: id, reason: "did not finish (the job was killed, or still runs) on \(r.host)", directory: relative))
            case .failed:
                excluded.append(.init(id: id, reason: "failed on \(r.host): \(r.problems.joined(separator: "; "))", directory: relative))
            case .interrupted:
                interrupted = true
                excluded.append(.init(id: id, reason: "interrupted on \(r.host)", directory: relative))
            }
        }
        // Trials that ran under different builds, kernels or TCP congestion control are noted.
        let used = planTrials.compactMap { byId[$0]?.record }.filter { $0.status == .completed }
        func differing(_ what: String, _ value: (TrialJobRecord) -> String?) {
            let values = Dictionary(grouping: used, by: { value($0) ?? "unknown" })
            if values.count > 1 {
                notes.append("the trials ran with different \(what): " + values.map { "\($0.key) (\($0.value.map(\.spec.id).sorted().joined(separator: ", ")))" }.sorted().joined(separator: "; "))
            }
        }
        // The build is the executables' hashes where every trial recorded them; the checkout's
        // state is noted apart, since editing or committing during a run changes it, not the build.
        if used.allSatisfy({ $0.versions?.binaries?.isEmpty == false }) {
            differing("builds (executables' SHA-256)") { $0.versions?.buildIdentity }
            differing("checkouts (the working tree's git state when each trial started; the build above)") { $0.versions?.checkout }
        } else {
            differing("builds") { $0.versions?.checkout }
        }
        differing("kernels") { $0.versions?.kernel }
        differing("TCP congestion control") { $0.tcpCongestionControl }
        // Directories that belong to no trial of this plan (unreadable, or not named after a trial).
        for b in bad where !excluded.contains(where: { $0.directory == b.path }) {
            notes.append("ignored \(b.path): \(b.reason)")
        }

        var traces: [String: TraceRecord] = [:]
        for id in planTrials {
            guard let s = byId[id]?.record.spec, traces[s.plan.variant] == nil else { continue }
            traces[s.plan.variant] = try run.recordTrace(s.plan.trace, name: "trace-\(s.plan.variant)")
        }

        // Evaluate, then write: analysis, verdict, plots, and only then the report, once.
        progress?.note("analysing \(completed.count) trial(s)" + (excluded.isEmpty ? "" : "; \(excluded.count) of \(planTrials.count) left out"))
        var results: AnalysisResults?
        var analyses: [TrialAnalysis] = []
        var analysisProblems: [String] = []
        do {
            let inputs = try completed.map { c -> TrialInput in
                var input = try TrialInput.runDirectory(c.directory)
                input.name = "\(c.plan.variant)/trial-\(c.plan.trial)"
                input.variant = c.plan.variant
                return input
            }
            if !inputs.isEmpty {
                (results, analyses) = try Analyzer.analyze(trials: inputs)
            }
        } catch {
            progress?.note("analysis failed: \(error)")
            analysisProblems = ["analysis: \(error)"]
        }
        let outcomes = completed.enumerated().map { i, c in
            TrialOutcome(plan: c.plan, directory: c.directory, analysis: i < analyses.count ? analyses[i] : nil,
                         problems: analysisProblems, interrupted: false)
        }

        var verdict = outcomes.isEmpty
            ? Verdict(held: false, lines: ["no trial completed"])
            : experiment.evaluate(outcomes, options: reference.options)
        if !excluded.isEmpty {
            verdict.held = false
            verdict.lines.append("incomplete: \(outcomes.count) of \(planTrials.count) planned trials are in the results; the expectation is not judged on the rest")
            verdict.lines += excluded.map { "left out \($0.id): \($0.reason)" }
        }
        verdict.lines += notes

        let record = ExperimentRecord(experiment: experiment.name, version: experiment.version,
                                      expectation: experiment.expectation, options: reference.options,
                                      versions: reference.planned, traces: traces, trials: trialRecords,
                                      verdict: verdict, interrupted: interrupted, excluded: excluded,
                                      planId: reference.planId, traceOrigin: reference.plan.traceOrigin)
        try run.writeJSON(record, to: "experiment.json")
        var plots: [String] = []
        do {
            plots = try experiment.experimentPlots(outcomes, directory: outPath)
        } catch {
            progress?.note("experiment plots failed: \(error)")
        }
        let shown = ReportVerdict(experiment: experiment.name, expectation: experiment.expectation, held: verdict.held,
                                  lines: verdict.lines, plots: plots)
        if let results {
            do {
                try ReportWriter().write(results, trials: analyses, to: outPath, verdict: shown)
            } catch {
                progress?.note("report failed: \(error)")
                try ReportWriter.writeVerdictOnly(shown, to: outPath)
            }
        } else {
            try ReportWriter.writeVerdictOnly(shown, to: outPath)
        }
        return ExperimentRunner.Result(directory: out, outcomes: outcomes, verdict: verdict, results: results,
                                       interrupted: interrupted, excluded: excluded)
    }

    /// What must agree for trials to be judged together: experiment, recipe version and every option
    /// except how the trials ran (namespace prefix, --jobs, runs directory, --variants). Builds may differ
    /// (the merge notes it).
    static func settingsKey(_ spec: TrialSpec) -> String {
        var o = spec.options
        o.prefix = ""
        o.jobs = 1
        o.runsRoot = ""
        o.variants = nil
        o.retryInvalid = nil
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let options = (try? enc.encode(o)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return "\(spec.experiment) v\(spec.recipeVersion) \(options)"
    }
}
