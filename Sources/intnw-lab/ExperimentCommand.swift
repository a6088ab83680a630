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

        A run is plan + run + merge: the trials are written as self-contained specs (RUN/plan/*.json), each
        runs like `intnw-lab trial run`, and the run directory is what `intnw-lab analyze --merge` makes of
        the trial directories. With --plan-only only the specs are written (to --out), for GNU parallel,
        Slurm (--slurm) or any other batch system; see the README's "running a sweep on a cluster".
        """)

    @Argument(help: "Experiment name, or `list`.")
    var name: String

    @Option(help: "Trials per variant (different seeds); results report means with 95% confidence intervals.")
    var trials = 1

    @Option(help: "Base seed (trial k uses seed + k - 1).")
    var seed: UInt64 = 1

    @Option(help: "Shaping backend: auto, netem, userspace.")
    var shaper: ShaperChoice = .auto

    @Option(help: "Namespace prefix of the testbed (1-8 lowercase letters/digits). With --plan-only: the stem (first 6 characters) of the prefixes trial jobs pick, stem0...stem99, the first free one on their host.")
    var prefix = "intnw"

    @Flag(name: .customLong("plan-only"), help: "Only write the trial specs (one JSON file per trial), plan.manifest and specs.txt into --out; run nothing.")
    var planOnly = false

    @Option(help: "With --plan-only: the directory for the specs (created).")
    var out: String?

    @Flag(help: "With --plan-only: also write slurm/trials.sbatch (a job array, one task per trial), slurm/merge.sbatch (runs after the array) and slurm/submit.sh.")
    var slurm = false

    @Option(name: .customLong("slurm-results"), help: "With --slurm: the shared directory the array tasks write trial directories into (default: OUT/results); the merge goes to its sibling `merged`.")
    var slurmResults: String?

    @Option(name: .customLong("slurm-partition"), help: "With --slurm: the partition to submit to.")
    var slurmPartition: String?

    @Option(name: .customLong("slurm-cpus"), help: "With --slurm: CPUs per trial task (the emulator and the apps; 2 recommended).")
    var slurmCpus = 2

    @Option(name: .customLong("slurm-max-parallel"), help: "With --slurm: at most this many trial tasks at once.")
    var slurmMaxParallel: Int?

    @Flag(help: "Shorter runs (what `make test` uses).")
    var quick = false

    @Option(name: .customLong("max-apps"), help: "Largest number of apps in scaling experiments (fairness).")
    var maxApps = 8

    @Option(name: .customLong("bg-policy"), help: "BG policy for IntNW apps (INTNW_BG_POLICY), or the only one bgpolicy runs: exclusive, permissive, anticipatory, trickle, delay-target, optionally with parameters (anticipatory:empty=unsent). Default: the library's, delay-target.")
    var bgPolicy: String?

    @Option(help: "Link estimate the BG policies scale with: measured (the library's own) or oracle (the trace's capacity at each moment).")
    var estimator: String = "measured"

    @Option(help: "Directory that holds run directories.")
    var runs = "runs"

    @Option(help: "Run every variant on this trace file instead of the experiment's own conditions (drive, bgpolicy, fairness, multiapp, trouble). The file and its FNV-1a hash go into experiment.json.")
    var trace: String?

    @Option(name: .customLong("trace-start"), help: "With --trace: where in the trace the window starts, seconds.")
    var traceStart: Double = 0

    @Option(help: "Trial length in seconds (with --trace: the window's length, default the rest of the trace; without: overrides the experiment's own length).")
    var duration: Double?

    @Option(name: .customLong("tcp-cc"), help: "TCP congestion control pinned in both namespaces: bbr (default: what the project's recorded measurements and regression baseline used), cubic (the usual Linux default; on the emulated deep queues it raises FG latency behind BG traffic several-fold) or reno. The pinned sysctls are recorded per trial in experiment.json, trial.json and tcp.json.")
    var tcpCC: TCPSettings.CongestionControl = .bbr

    @Option(help: "Trials run at once, each in its own testbed under its own prefix (<prefix>0, <prefix>1, ...); trials running together are of different variants. Every trial records its emulator's and replayer's lateness (p99) and the CPU load in fidelity.json; one whose emulator p99 lateness exceeds 2 ms (or replayer p99 50 ms) is invalid: left out of the results and named in the verdict. Measured on the project's 2-core machine (shared with other builds and experiments): --jobs 2 kept all 18 trials of the 600 s downtown drive (6 strategies x 3) valid (emulator p99 lateness at most 319 µs, replayer at most 3.3 ms) and ran them in 91 min against about 182 min one after another; more is untested.")
    var jobs = 1

    @Option(name: .customLong("retry-invalid"), help: ArgumentHelp("How many times a trial the fidelity guard invalidated (the emulation fell behind: a host stall or load; nothing else wrong) is run again, with the same spec and seed. The invalid run is kept under invalid-attempts/ in the run directory and named in the verdict; a trial that stays invalid is left out as before. 0 = never. Trials with any other problem (an app failed, capture drops) are never rerun.", valueName: "count"))
    var retryInvalid = ExperimentOptions.defaultRetryInvalid

    @Option(help: ArgumentHelp("Run only these variants (comma-separated names, as in the run directory, e.g. mptcp-backup,mptcp-subflow); the verdict then judges only what ran. Combine with another run's trials of the same settings: `intnw-lab analyze --merge RUN1 RUN2 --out M`.", valueName: "names"))
    var variants: String?

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
        guard jobs >= 1 && jobs <= 16 else { throw ValidationError("--jobs must be 1...16") }
        guard retryInvalid >= 0 && retryInvalid <= 3 else { throw ValidationError("--retry-invalid must be 0...3") }
        guard traceStart.isFinite, traceStart >= 0 else { throw ValidationError("--trace-start must be 0 or more seconds") }
        if traceStart > 0 && trace == nil { throw ValidationError("--trace-start needs --trace") }
        if let d = duration, !(d.isFinite && d > 0 && d <= 864_000) { throw ValidationError("--duration must be more than 0 and at most 864000 seconds") }
        guard TopologySpec.isValidPrefix(prefix), prefix == prefix.lowercased() else {
            throw ValidationError("--prefix must be 1-8 lowercase letters/digits starting with a letter")
        }
        if planOnly && out == nil { throw ValidationError("--plan-only needs --out DIR") }
        if !planOnly && (out != nil || slurm) { throw ValidationError("--out and --slurm go with --plan-only") }
        if !slurm && (slurmResults != nil || slurmPartition != nil || slurmMaxParallel != nil) {
            throw ValidationError("--slurm-* options go with --slurm")
        }
        guard slurmCpus >= 1 && slurmCpus <= 256 else { throw ValidationError("--slurm-cpus must be 1...256") }
        if let m = slurmMaxParallel, m < 1 { throw ValidationError("--slurm-max-parallel must be at least 1") }
        if let v = variants, Self.variantList(v).isEmpty { throw ValidationError("--variants needs at least one variant name") }
    }

    /// `--variants a,b`: the names, blanks dropped, each once.
    static func variantList(_ text: String) -> [String] {
        var out: [String] = []
        for n in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !n.isEmpty && !out.contains(n) {
            out.append(n)
        }
        return out
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
        if !planOnly { try LabCLI.check { try Topology.preflight() } }
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
        options.traceFile = trace
        options.traceStartSeconds = traceStart
        options.durationSeconds = duration
        options.tcp = TCPSettings(congestionControl: tcpCC)
        options.jobs = jobs
        options.retryInvalid = retryInvalid
        options.variants = variants.map(Self.variantList)

        if planOnly {
            try await writePlan(experiment, options: options, to: out!)
            return
        }

        var logger = Logger(label: "intnw-lab.experiment")
        logger.logLevel = verbose ? .debug : .warning
        let interruption = Interruption()
        let trap = SignalTrap([SIGINT, SIGTERM, SIGHUP])
        trap.onSignal { interruption.trigger() }
        let runner = ExperimentRunner(HarnessContext(binDirectory: LabCLI.binDirectory, logger: logger, interruption: interruption))
        let result = try await LabCLI.userError { try await runner.run(experiment, options: options) }

        print(ExperimentTable.render(result))
        print("expectation \(result.verdict.held ? "HELD" : "NOT HELD"): \(experiment.expectation)")
        for l in result.verdict.lines { print("  \(l)") }
        print("run directory: \(result.directory) (report: \(result.directory)/report.html)")
        if !result.excluded.isEmpty { print("incomplete: \(result.excluded.count) trial(s) left out (see the verdict)") }
        if result.interrupted { throw ExitCode(130) }
        if requireExpectation && !result.verdict.held { throw ExitCode.failure }
    }

    func writePlan(_ experiment: any Experiment, options: ExperimentOptions, to dir: String) async throws {
        let (manifest, specs) = try await LabCLI.userError {
            try TrialPlanner.specs(experiment, options: options, prefix: .auto(stem: prefix), versions: await VersionRecord.current())
        }
        try LabCLI.check { try TrialPlanner.write(manifest, specs: specs, to: dir) }
        let abs = URL(fileURLWithPath: dir).standardizedFileURL.path
        print("wrote \(specs.count) trial spec(s) of \(experiment.name) v\(experiment.version) (plan \(manifest.planId)) to \(dir); ~\(Self.minutes(manifest.expectedSeconds)) one after another")
        print("run them:  parallel -j 2 \(LabCLI.binDirectory)/intnw-lab trial run {} --out R/{/.} ::: \(dir)/*.json")
        print("merge:     \(LabCLI.binDirectory)/intnw-lab analyze --merge R/* --out MERGED")
        if slurm {
            let results = slurmResults.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? "\(abs)/results"
            var scripts = SlurmScripts(lab: "\(LabCLI.binDirectory)/intnw-lab", planDirectory: abs, resultsDirectory: results,
                                       mergedDirectory: (results as NSString).deletingLastPathComponent + "/merged",
                                       experiment: experiment.name, trials: specs.count,
                                       longestTrialSeconds: specs.map(\.plan.durationSeconds).max() ?? 0)
            scripts.cpusPerTask = slurmCpus
            scripts.partition = slurmPartition
            scripts.maxParallel = slurmMaxParallel
            let written = try LabCLI.check { try scripts.write() }
            print("slurm:     \(written.last!) (job array of \(specs.count) task(s), \(scripts.taskMinutes) min limit each; merge job after it into \(scripts.mergedDirectory))")
        }
    }

    static func minutes(_ s: Double) -> String { String(format: "%.1f min", s / 60) }
}
