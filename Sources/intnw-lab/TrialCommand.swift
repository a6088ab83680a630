import ArgumentParser
import Emulation
import Foundation
import Lab
import Logging

/// `intnw-lab trial run SPEC --out DIR`: one trial of a plan, as a batch job.
struct TrialCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trial",
        abstract: "Run single trials of a plan (`intnw-lab experiment NAME --plan-only`).",
        subcommands: [TrialRunCommand.self])
}

struct TrialRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run exactly one trial spec into a directory.",
        discussion: """
        Needs root and the built binaries (intnw-app next to intnw-lab). The trial claims a namespace prefix
        first (a lock under /run/intnw-lab/claims): by default the first free one of the spec's stem followed
        by 0...99, so jobs started together on one host never share a testbed. DIR gets the captures, app
        logs, apps.json and trial.json (the spec, the prefix and host used, and the status: completed, or
        failed/interrupted with why). Running a spec again into the same DIR replaces that trial; a
        non-empty DIR that holds no trial.json is refused. A trial the fidelity guard alone invalidated is run
        again, up to twice (--retry-invalid). Exit status: 0 completed, 1 failed, 130
        interrupted. Merge the trial directories with `intnw-lab analyze --merge`.
        """)

    @Argument(help: "A trial spec (one of the JSON files `experiment --plan-only` writes).")
    var spec: String

    @Option(help: "The trial's directory (created).")
    var out: String

    @Option(help: "Use exactly this namespace prefix instead of the spec's policy (1-8 lowercase letters/digits).")
    var prefix: String?

    @Option(name: .customLong("retry-invalid"), help: ArgumentHelp("How many times the trial is run again when the fidelity guard invalidated it (the emulation fell behind: a host stall or load; nothing else wrong). The invalid run is moved to DIR.invalid-attempt-K, a trial directory a merge finds and names; 0 = never.", valueName: "count"))
    var retryInvalid = ExperimentOptions.defaultRetryInvalid

    @Flag(name: .shortAndLong, help: "Debug logging.")
    var verbose = false

    func validate() throws {
        if let p = prefix, !(TopologySpec.isValidPrefix(p) && p == p.lowercased()) {
            throw ValidationError("--prefix must be 1-8 lowercase letters/digits starting with a letter")
        }
        guard retryInvalid >= 0 && retryInvalid <= 3 else { throw ValidationError("--retry-invalid must be 0...3") }
    }

    func run() async throws {
        let trialSpec = try LabCLI.check { try TrialSpec.load(spec) }
        guard let experiment = ExperimentRegistry.named(trialSpec.experiment) else {
            throw LabCLI.fail("\(spec): experiment '\(trialSpec.experiment)' is unknown to this intnw-lab")
        }
        guard experiment.version == trialSpec.recipeVersion else {
            throw LabCLI.fail("\(spec): planned with \(experiment.name) recipe v\(trialSpec.recipeVersion), this intnw-lab has v\(experiment.version): plan again")
        }
        try LabCLI.check { try Topology.preflight() }
        var logger = Logger(label: "intnw-lab.trial")
        logger.logLevel = verbose ? .debug : .warning
        let interruption = Interruption()
        let trap = SignalTrap([SIGINT, SIGTERM, SIGHUP])
        trap.onSignal { interruption.trigger() }
        let progress = Progress(experiment: "\(trialSpec.experiment) \(trialSpec.id)",
                                expectedSeconds: trialSpec.plan.durationSeconds + 15)
        let job = TrialJob(HarnessContext(binDirectory: LabCLI.binDirectory, logger: logger, interruption: interruption))
        let record = try await LabCLI.userError {
            try await job.run(trialSpec, directory: out, prefix: prefix.map { PrefixPolicy(mode: .fixed, value: $0) },
                              retryingInvalid: retryInvalid, progress: progress) { attempt in
                (out.hasSuffix("/") ? String(out.dropLast()) : out) + ".invalid-attempt-\(attempt)"
            }
        }
        print("\(trialSpec.id): \(record.status.rawValue) (prefix \(record.prefix ?? "-"), host \(record.host)) -> \(out)")
        for p in record.problems { print("  \(p)") }
        switch record.status {
        case .completed: return
        case .interrupted: throw ExitCode(130)
        case .failed, .running: throw ExitCode.failure
        }
    }
}
