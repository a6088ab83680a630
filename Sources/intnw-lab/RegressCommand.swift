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
        Runs the quick form of the listed experiments, prints metric / baseline / now / limit / verdict and
        exits 3 when a metric is worse than its baseline by more than its tolerance (or is missing); other
        failures (bad options, a run that could not be done) exit 1.
        Tolerances live in the baseline file per metric (relative, with an absolute floor).
        --update-baseline rewrites the baseline from this run on purpose (review the diff before committing).
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

    func run() async throws {
        try NetCommand.validatePrefix(prefix)
        try LabCLI.check { try Topology.preflight() }
        var base = ExperimentOptions()
        base.shaper = try LabCLI.resolveShaper(shaper)
        base.prefix = prefix
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        base.runsRoot = "\(runs)/regress/\(stamp)"
        var suite = RegressionSuite.standard(base: base)
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
        let runner = ExperimentRunner(binDirectory: LabCLI.binDirectory, logger: logger, interruption: interruption)
        var metrics: [KeyMetric] = []
        for entry in suite {
            guard let e = ExperimentRegistry.named(entry.experiment) else { continue }
            let result = try await LabCLI.userError { try await runner.run(e, options: entry.options) }
            if result.interrupted { throw ExitCode(130) }
            metrics += e.keyMetrics(result.outcomes)
            stderr("regress: \(e.name) done: \(result.directory)")
        }

        if updateBaseline {
            let commit = await VersionRecord.current().gitCommit
            let b = Regression.baseline(from: metrics, previous: previous,
                                        recorded: "intnw-lab regress --update-baseline at commit \(commit), \(stamp)",
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
}
