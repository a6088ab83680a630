import ArgumentParser
import Emulation
import Foundation
import Lab
import Logging

/// `intnw-lab experiment NAME` / `experiment list`.
struct ExperimentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "Run a named experiment (or `list` them) into runs/<name>/<UTC timestamp>/.",
        discussion: """
        Each run brings the testbed up with the experiment's trace and shaper, starts servers, captures and
        apps in the right namespaces, waits, stops everything, tears down and analyses. The run directory
        keeps the configuration, trace, seeds, versions, logs, pcaps, results.json, summary.md, plots and
        report.html; runs/<name>/latest points at the newest. Ctrl-C stops early, tears down and keeps what
        was collected.
        """)

    @Argument(help: "Experiment name, or `list`.")
    var name: String

    @Option(help: "Trials per variant (different seeds); results report means with 95% confidence intervals.")
    var trials = 1

    @Option(help: "Base seed (trial k uses seed + k - 1).")
    var seed: UInt64 = 1

    @Option(help: "Shaping backend: auto, netem, userspace.")
    var shaper: ShaperChoice = .auto

    @Option(help: "Namespace prefix of the testbed (1-8 lowercase letters/digits).")
    var prefix = "intnw"

    @Flag(help: "Shorter runs (what `make test` uses).")
    var quick = false

    @Option(name: .customLong("max-apps"), help: "Largest number of apps in scaling experiments (fairness).")
    var maxApps = 8

    @Option(name: .customLong("bg-policy"), help: "BG policy for IntNW apps (INTNW_BG_POLICY), or the only one bgpolicy runs: exclusive, permissive, anticipatory, trickle, delay-target, optionally with parameters (anticipatory:empty=unsent).")
    var bgPolicy: String?

    @Option(help: "Link estimate the BG policies scale with: measured (the library's own) or oracle (the trace's capacity at each moment).")
    var estimator: String = "measured"

    @Option(help: "Directory that holds run directories.")
    var runs = "runs"

    @Flag(name: .customLong("require-expectation"), help: "Exit 1 when the experiment's expectation does not hold.")
    var requireExpectation = false

    @Flag(name: .shortAndLong, help: "Debug logging.")
    var verbose = false

    func validate() throws {
        guard trials >= 1 && trials <= 100 else { throw ValidationError("--trials must be 1...100") }
        guard BackgroundEstimates.Estimator(rawValue: estimator) != nil else {
            throw ValidationError("--estimator must be measured or oracle")
        }
        guard maxApps >= 1 && maxApps <= 64 else { throw ValidationError("--max-apps must be 1...64") }
        guard TopologySpec.isValidPrefix(prefix), prefix == prefix.lowercased() else {
            throw ValidationError("--prefix must be 1-8 lowercase letters/digits starting with a letter")
        }
    }

    func run() async throws {
        if name == "list" {
            var o = ExperimentOptions()
            o.maxApps = maxApps
            o.quick = quick
            for e in ExperimentRegistry.all {
                print("\(e.name.padding(toLength: 10, withPad: " ", startingAt: 0)) ~\(Self.minutes(e.expectedSeconds(o)))  \(e.summary)")
            }
            return
        }
        guard let experiment = ExperimentRegistry.named(name) else {
            throw LabCLI.fail("no experiment named '\(name)'; known: \(ExperimentRegistry.all.map(\.name).joined(separator: ", "))")
        }
        try LabCLI.check { try Topology.preflight() }
        var options = ExperimentOptions()
        options.trials = trials
        options.seed = seed
        options.shaper = try LabCLI.resolveShaper(shaper)
        options.prefix = prefix
        options.quick = quick
        options.maxApps = maxApps
        options.bgPolicy = bgPolicy
        options.estimator = BackgroundEstimates.Estimator(rawValue: estimator) ?? .measured
        options.runsRoot = runs

        var logger = Logger(label: "intnw-lab.experiment")
        logger.logLevel = verbose ? .debug : .warning
        let interruption = Interruption()
        let trap = SignalTrap([SIGINT, SIGTERM, SIGHUP])
        trap.onSignal { interruption.trigger() }
        let runner = ExperimentRunner(binDirectory: LabCLI.binDirectory, logger: logger, interruption: interruption)
        let result = try await LabCLI.userError { try await runner.run(experiment, options: options) }

        print(ExperimentTable.render(result))
        print("expectation \(result.verdict.held ? "HELD" : "NOT HELD"): \(experiment.expectation)")
        for l in result.verdict.lines { print("  \(l)") }
        print("run directory: \(result.directory) (report: \(result.directory)/report.html)")
        if result.interrupted { throw ExitCode(130) }
        if requireExpectation && !result.verdict.held { throw ExitCode.failure }
    }

    static func minutes(_ s: Double) -> String { String(format: "%.1f min", s / 60) }
}
