import Analysis
import ArgumentParser
import Emulation
import Foundation
import Lab
import Logging

/// `intnw-lab regress`: the short fixed set of runs, compared with regress/baseline.json.
struct RegressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "regress",
        abstract: "Run the regression set and compare key metrics with the committed baseline.",
        discussion: """
        Runs the quick form of the listed experiments (multiapp: 3 trials per variant) and compares each key
        metric with the baseline: a metric with samples (requests' latencies, per-second rates) regresses when a
        one-sided Mann-Whitney U test finds it worse at alpha = 0.01 AND it moved by at least its minimum effect
        (25% for latencies and rates); one-number metrics use a tolerance band at least as wide as the baseline
        runs' spread (docs/regression.md). Exits 3 on a regression or a missing metric; other failures (bad
        options, a run that could not be done) exit 1.
        --update-baseline records the baseline from --baseline-runs runs (default 5) on purpose (review the diff
        before committing; record it on a quiet machine).
        """)

    /// Exit status meaning "ran fine, and a metric regressed" (1 is any other failure).
    static let regressedExitCode: Int32 = 3

    @Option(help: "Baseline file.")
    var baseline = "regress/baseline.json"

    @Flag(name: .customLong("update-baseline"), help: "Record this run's metrics as the new baseline.")
    var updateBaseline = false

    @Option(help: "Shaping backend: auto, netem, userspace.")
    var shaper: ShaperChoice = .auto

    @Option(help: "Namespace prefix of the testbed (1-8 lowercase letters/digits).")
    var prefix = "intnw"

    @Option(help: "Directory that holds run directories.")
    var runs = "runs"

    @Option(help: "Comma-separated subset of the regression set (default: all of it).")
    var only: String?

    @Option(help: "Trials per multiapp variant (at least 3 for a trustworthy comparison; fewer only for smoke tests).")
    var trials = 3

    @Option(name: .customLong("baseline-runs"), help: "With --update-baseline: runs of the set to record (at least 5).")
    var baselineRuns = 5

    @Option(name: .customLong("bg-policy"), help: "BG policy for the IntNW apps (INTNW_BG_POLICY), e.g. to check that a broken policy is caught.")
    var bgPolicy: String?

    @Option(name: .customLong("from-runs"), help: "Comma-separated experiment run directories (<dir>/<variant>/trial-<k>/) to re-analyse instead of running the set: each is one run of the experiment named by --only (with --update-baseline: the baseline's runs).")
    var fromRuns: String?

    func run() async throws {
        try NetCommand.validatePrefix(prefix)
        try LabCLI.check { try Topology.preflight() }
        var base = ExperimentOptions()
        base.shaper = try LabCLI.resolveShaper(shaper)
        base.prefix = prefix
        base.bgPolicy = bgPolicy
        guard trials >= 1 else { throw LabCLI.fail("--trials must be at least 1") }
        guard !updateBaseline || baselineRuns >= 5 else { throw LabCLI.fail("--baseline-runs must be at least 5: the baseline needs its spread") }
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        base.runsRoot = "\(runs)/regress/\(stamp)"
        var suite = RegressionSuite.standard(base: base, multiappTrials: trials)
        if let only {
            let names = Set(only.split(separator: ",").map(String.init))
            suite = suite.filter { names.contains($0.experiment) }
            guard !suite.isEmpty else { throw LabCLI.fail("--only matches nothing in the regression set") }
        }
        let previous: Baseline?
        do { previous = try Baseline.load(baseline) } catch {
            if !updateBaseline { throw LabCLI.fail("\(error)") }
            previous = nil
        }

        let interruption = Interruption()
        let trap = SignalTrap([SIGINT, SIGTERM, SIGHUP])
        trap.onSignal { interruption.trigger() }
        var logger = Logger(label: "intnw-lab.regress")
        logger.logLevel = .warning
        let runner = ExperimentRunner(HarnessContext(binDirectory: LabCLI.binDirectory, logger: logger, interruption: interruption))
        var runs: [[KeyMetric]] = []
        if let fromRuns {
            guard suite.count == 1, let e = ExperimentRegistry.named(suite[0].experiment) else {
                throw LabCLI.fail("--from-runs needs --only with one experiment")
            }
            let dirs = fromRuns.split(separator: ",").map(String.init)
            guard !updateBaseline || dirs.count >= 5 else { throw LabCLI.fail("--from-runs: the baseline needs at least 5 runs") }
            for d in dirs { runs.append(e.keyMetrics(try await LabCLI.userError { try Self.reanalyse(d) })) }
        }
        for run in 1 ... (updateBaseline ? baselineRuns : 1) where fromRuns == nil {
            var metrics: [KeyMetric] = []
            for entry in suite {
                guard let e = ExperimentRegistry.named(entry.experiment) else { continue }
                var options = entry.options
                if updateBaseline { options.runsRoot += "/run-\(run)" }
                let result = try await LabCLI.userError { try await runner.run(e, options: options) }
                if result.interrupted { throw ExitCode(130) }
                metrics += e.keyMetrics(result.outcomes)
                stderr("regress: \(e.name) done: \(result.directory)")
            }
            runs.append(metrics)
        }
        let metrics = runs.last ?? []

        if updateBaseline {
            let commit = await VersionRecord.current().gitCommit
            let load = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").first.map(String.init) ?? "?"
            let b = Regression.baseline(fromRuns: runs, previous: previous,
                                        recorded: fromRuns != nil
                                            ? "intnw-lab regress --update-baseline --from-runs (\(runs.count) runs re-analysed) at commit \(commit), \(stamp)"
                                            : "intnw-lab regress --update-baseline --baseline-runs \(baselineRuns) --trials \(trials) at commit \(commit), \(stamp), load average \(load) at the end",
                                        keepUnmeasured: only != nil)
            try FileManager.default.createDirectory(atPath: (baseline as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try b.write(baseline)
            let ran = Set(suite.map(\.experiment))
            var shown = b
            shown.metrics = b.metrics.filter { ran.contains(String($0.name.prefix { $0 != "." })) }
            print(Regression.table(Regression.compare(metrics, with: shown)))
            print("baseline written to \(baseline): review the diff and commit it")
            return
        }
        // A partial run (--only) is compared with the baseline entries of the experiments it ran.
        var expected = previous!
        let ran = Set(suite.map(\.experiment))
        expected.metrics = expected.metrics.filter { ran.contains(String($0.name.prefix { $0 != "." })) }
        let rows = Regression.compare(metrics, with: expected)
        print(Regression.table(rows))
        if Regression.failed(rows) {
            print("REGRESSION: \(rows.filter { $0.verdict == .regressed || $0.verdict == .missing }.map(\.name).joined(separator: ", "))")
            throw ExitCode(Self.regressedExitCode)
        }
        print("no regression against \(baseline)")
    }

    /// The trials of an experiment run directory (`<variant>/trial-<k>/`), analysed again.
    static func reanalyse(_ dir: String) throws -> [TrialOutcome] {
        let fm = FileManager.default
        var outcomes: [TrialOutcome] = []
        for variant in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
            let vdir = "\(dir)/\(variant)"
            for t in ((try? fm.contentsOfDirectory(atPath: vdir)) ?? []).sorted() where t.hasPrefix("trial-") {
                guard let k = Int(t.dropFirst(6)) else { continue }
                var input = try TrialInput.runDirectory("\(vdir)/\(t)")
                input.name = "\(variant)/\(t)"
                input.variant = variant
                let plan = TrialPlan(experiment: "", variant: variant, trial: k, trace: Trace.constant(
                    wifi: LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0),
                    cellular: LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0), durationSeconds: 1),
                                     durationSeconds: 0, apps: [])
                outcomes.append(TrialOutcome(plan: plan, directory: "\(vdir)/\(t)", analysis: try Analyzer.analyze(input),
                                             problems: [], interrupted: false))
            }
        }
        guard !outcomes.isEmpty else { throw LabCLI.fail("\(dir): no <variant>/trial-<k> directories") }
        return outcomes
    }
}
