import ArgumentParser
import Emulation
import Foundation
import Lab
import Logging

extension TCPSettings.CongestionControl: ExpressibleByArgument {}

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

    @Option(help: "Directory that holds run directories.")
    var runs = "runs"

    @Option(help: "Run every variant on this trace file instead of the experiment's own conditions (drive, bgpolicy, fairness, multiapp, trouble). The file and its FNV-1a hash go into experiment.json.")
    var trace: String?

    @Option(name: .customLong("trace-start"), help: "With --trace: where in the trace the window starts, seconds.")
    var traceStart: Double = 0

    @Option(help: "Trial length in seconds (with --trace: the window's length, default the rest of the trace; without: overrides the experiment's own length).")
    var duration: Double?

    @Option(name: .customLong("tcp-cc"), help: "TCP congestion control pinned in both namespaces: cubic (default: the usual Linux default and the original IntNW evaluation's), bbr or reno. The pinned sysctls are recorded per trial in experiment.json and tcp.json.")
    var tcpCC: TCPSettings.CongestionControl = .cubic

    @Flag(name: .customLong("require-expectation"), help: "Exit 1 when the experiment's expectation does not hold.")
    var requireExpectation = false

    @Flag(name: .shortAndLong, help: "Debug logging.")
    var verbose = false

    func validate() throws {
        guard trials >= 1 && trials <= 100 else { throw ValidationError("--trials must be 1...100") }
        guard maxApps >= 1 && maxApps <= 64 else { throw ValidationError("--max-apps must be 1...64") }
        guard traceStart.isFinite, traceStart >= 0 else { throw ValidationError("--trace-start must be 0 or more seconds") }
        if traceStart > 0 && trace == nil { throw ValidationError("--trace-start needs --trace") }
        if let d = duration, !(d.isFinite && d > 0 && d <= 864_000) { throw ValidationError("--duration must be more than 0 and at most 864000 seconds") }
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
        options.runsRoot = runs
        options.traceFile = trace
        options.traceStartSeconds = traceStart
        options.durationSeconds = duration
        options.tcp = TCPSettings(congestionControl: tcpCC)

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
