import Analysis
import Emulation
import Foundation
import Logging

/// The record of a whole experiment run, written as `experiment.json` in the run directory.
public struct ExperimentRecord: Codable, Sendable {
    public var experiment: String
    public var version: Int
    public var expectation: String
    public var options: ExperimentOptions
    public var versions: VersionRecord
    public var traces: [String: TraceRecord]
    public var trials: [TrialRecord]
    public var verdict: Verdict?
    public var interrupted: Bool

    public struct TrialRecord: Codable, Sendable {
        public var variant: String
        public var trial: Int
        public var directory: String
        public var seed: UInt64
        public var durationSeconds: Double
        public var apps: [AppLaunch]
        public var environment: [String: String]
        public var problems: [String]
        /// `trial.json` status and the host and namespace prefix it ran on (older records lack them).
        public var status: TrialJobRecord.Status?
        public var host: String?
        public var prefix: String?
        /// Congestion control pinned in the trial's namespaces, and the TCP sysctls read back from each
        /// ("client"/"server" -> key -> value); nil in older records.
        public var tcpCongestionControl: String? = nil
        public var tcpSysctls: [String: [String: String]]? = nil
        /// Emulator/replayer lateness p99 and CPU load; `valid` false = the emulation fell behind.
        public var fidelity: TrialFidelity? = nil
    }

    /// A trial of the plan that is not in the results, and why.
    public struct Excluded: Codable, Sendable {
        public var id: String
        public var reason: String
        /// Its directory, when there is one.
        public var directory: String?
    }

    /// Trials of the plan left out of the results; empty when every planned trial is in.
    public var excluded: [Excluded]? = nil
    /// The plan the trials came from (`TrialSpec.planId`).
    public var planId: String? = nil
    /// The user-given trace (`--trace`): file, hash and window; nil for the experiment's own conditions.
    public var traceOrigin: TraceOrigin? = nil
}

/// Runs an experiment's trials into one run directory, analyses them together and writes the report.
public struct ExperimentRunner: Sendable {
    public var context: HarnessContext

    public init(_ context: HarnessContext) { self.context = context }

    public struct Result: Sendable {
        public var directory: String
        public var outcomes: [TrialOutcome]
        public var verdict: Verdict
        public var results: AnalysisResults?
        public var interrupted: Bool
        /// Trials of the plan that are not in the results: missing, failed or invalid, with why.
        public var excluded: [ExperimentRecord.Excluded] = []
    }

    /// What an experiment says of the host's timers before its trials (`HostTimerCheck`, 1 s): the
    /// reading, or a warning at half the fidelity guard's bound or more, where trials will be
    /// invalid and run again.
    static func timerNote(_ r: HostTimerCheck.Reading) -> String {
        timerWarning(r) ?? "host timers: \(r.openSummary))"
    }

    /// The warning of `timerNote`; nil when the timers keep time.
    static func timerWarning(_ r: HostTimerCheck.Reading) -> String? {
        let bound = TrialFidelity.maxLatenessP99Microseconds
        guard r.p99Microseconds * 2 >= bound else { return nil }
        return "warning: this host's timers are late: \(r.openSummary)\(r.realtime ? "" : ", without real-time priority")); a trial whose emulator lateness p99 "
            + "exceeds \(bound) µs is invalid and run again (--retry-invalid), so expect some trials invalid or left out "
            + "(other load on the host, or a VM whose timer interrupts come late)"
    }

    /// Plan, run, merge: the trials are written as specs into `plan/`, each runs like `intnw-lab trial
    /// run` into `<variant>/trial-<k>/`, and the run directory is the merge of those (`analyze --merge`),
    /// so a local run and a cluster run give their results the same way.
    public func run(_ experiment: any Experiment, options: ExperimentOptions) async throws -> Result {
        let (manifest, specs) = try TrialPlanner.specs(experiment, options: options,
                                                       prefix: PrefixPolicy(mode: .fixed, value: options.prefix),
                                                       versions: await VersionRecord.current())
        let run = try RunDirectory.create(experiment: experiment.name, root: options.runsRoot)
        try TrialPlanner.write(manifest, specs: specs, to: "\(run.path)/plan")
        let progress = Progress(experiment: experiment.name, expectedSeconds: manifest.expectedSeconds)
        progress.note("run directory \(run.path); \(specs.count) trial(s); expectation: \(experiment.expectation)")
        if options.shaper == .userspace { progress.note(Self.timerNote(HostTimerCheck.measure())) }

        let job = TrialJob(context)
        let retries = max(0, options.retryInvalid ?? ExperimentOptions.defaultRetryInvalid)
        let attemptsDirectory = "\(run.path)/invalid-attempts"
        /// Runs a trial; one the fidelity guard alone invalidated is kept under `invalid-attempts/` and
        /// run again (`--retry-invalid`). That directory goes to the merge, which uses the latest run of
        /// each trial and names the earlier ones in the verdict.
        @Sendable func runTrial(_ spec: TrialSpec, _ dir: String, _ policy: PrefixPolicy?) async throws {
            let record = try await job.run(spec, directory: dir, prefix: policy, retryingInvalid: retries, progress: progress) { attempt in
                "\(attemptsDirectory)/\(spec.id).attempt-\(attempt)"
            }
            for p in record.problems { progress.note("\(spec.plan.variant) trial \(spec.plan.trial): \(p)") }
        }
        var directories: [String] = []
        if options.jobs <= 1 {
            for (i, spec) in specs.enumerated() {
                if context.interruption.isTriggered { break }
                progress.note("\(spec.plan.variant) trial \(spec.plan.trial) (\(i + 1)/\(specs.count))")
                let dir = try run.subdirectory("\(spec.plan.variant)/trial-\(spec.plan.trial)")
                try await runTrial(spec, dir, nil)
                directories.append(dir)
            }
        } else {
            // `--jobs N`: up to N trials at once, each in its own testbed under its own prefix (the first
            // free of <prefix>0, <prefix>1, ...). Trial k of every variant goes before trial k+1 of any,
            // so trials running together are of different variants.
            let order = specs.indices.sorted { (specs[$0].plan.trial, $0) < (specs[$1].plan.trial, $1) }
            let dirs = try order.map { try run.subdirectory("\(specs[$0].plan.variant)/trial-\(specs[$0].plan.trial)") }
            let policy = PrefixPolicy.auto(stem: options.prefix)
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0, running = 0
                func launch() {
                    let k = next
                    next += 1
                    running += 1
                    let spec = specs[order[k]], dir = dirs[k]
                    progress.note("\(spec.plan.variant) trial \(spec.plan.trial) (\(k + 1)/\(specs.count), up to \(options.jobs) at once)")
                    group.addTask { try await runTrial(spec, dir, policy) }
                }
                while next < order.count && running < options.jobs && !context.interruption.isTriggered { launch() }
                while running > 0 {
                    try await group.next()
                    running -= 1
                    if next < order.count && !context.interruption.isTriggered { launch() }
                }
            }
            directories = dirs
        }
        let kept = FileManager.default.fileExists(atPath: attemptsDirectory) ? [attemptsDirectory] : []
        var result = try ExperimentMerger(progress: progress).merge(directories + kept, into: run.path, plan: specs)
        result.interrupted = result.interrupted || context.interruption.isTriggered
        return result
    }
}
