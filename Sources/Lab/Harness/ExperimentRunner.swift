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
        /// Congestion control asked for, and the TCP sysctls read back from each namespace.
        public var tcpCongestionControl: String
        public var tcpSysctls: [String: [String: String]]
    }
    /// The user-given trace (`--trace`): file, hash and window; nil for the experiment's own conditions.
    public var traceOrigin: TraceOrigin?
}

/// Runs an experiment's trials into one run directory, analyses them together and writes the report.
public struct ExperimentRunner: Sendable {
    public var binDirectory: String
    public var logger: Logger
    public var interruption: Interruption

    public init(binDirectory: String, logger: Logger, interruption: Interruption) {
        self.binDirectory = binDirectory
        self.logger = logger
        self.interruption = interruption
    }

    public struct Result: Sendable {
        public var directory: String
        public var outcomes: [TrialOutcome]
        public var verdict: Verdict
        public var results: AnalysisResults?
        public var interrupted: Bool
    }

    public func run(_ experiment: any Experiment, options: ExperimentOptions) async throws -> Result {
        let override = try TraceOverride.load(options)
        let plans = try experiment.plans(options).map { p -> TrialPlan in
            var p = p
            p.applyTraceOverride(override, durationSeconds: options.durationSeconds)
            return p
        }
        let run = try RunDirectory.create(experiment: experiment.name, root: options.runsRoot)
        let progress = Progress(experiment: experiment.name, expectedSeconds: experiment.expectedSeconds(options))
        progress.note("run directory \(run.path); \(plans.count) trial(s); expectation: \(experiment.expectation)")

        var traces: [String: TraceRecord] = [:]
        for p in plans where traces[p.variant] == nil {
            traces[p.variant] = try run.recordTrace(p.trace, name: "trace-\(p.variant)")
        }
        var record = ExperimentRecord(experiment: experiment.name, version: experiment.version,
                                      expectation: experiment.expectation, options: options,
                                      versions: await VersionRecord.current(), traces: traces, trials: [],
                                      verdict: nil, interrupted: false, traceOrigin: override?.origin)
        try run.writeJSON(record, to: "experiment.json")

        let trialRunner = TrialRunner(binDirectory: binDirectory, logger: logger, interruption: interruption)
        var outcomes: [TrialOutcome] = []
        for (i, plan) in plans.enumerated() {
            if interruption.isTriggered { break }
            progress.note("\(plan.variant) trial \(plan.trial) (\(i + 1)/\(plans.count))")
            let outcome = try await trialRunner.run(plan, in: run, progress: progress)
            outcomes.append(outcome)
            for p in outcome.problems { progress.note("\(plan.variant) trial \(plan.trial): \(p)") }
            record.trials.append(.init(variant: plan.variant, trial: plan.trial,
                                       directory: String(outcome.directory.dropFirst(run.path.count + 1)),
                                       seed: plan.seed, durationSeconds: plan.durationSeconds, apps: plan.apps,
                                       environment: plan.environment, problems: outcome.problems,
                                       tcpCongestionControl: plan.tcp.congestionControl.rawValue,
                                       tcpSysctls: outcome.tcpSysctls))
            try run.writeJSON(record, to: "experiment.json")
        }

        progress.note("analysing \(outcomes.count) trial(s)")
        var results: AnalysisResults?
        do {
            let inputs = try outcomes.map { o -> TrialInput in
                var input = try TrialInput.runDirectory(o.directory)
                input.name = "\(o.plan.variant)/trial-\(o.plan.trial)"
                return input
            }
            if !inputs.isEmpty {
                let (r, analyses) = try Analyzer.analyze(trials: inputs)
                for i in outcomes.indices { outcomes[i].analysis = analyses[i] }
                try ReportWriter().write(r, trials: analyses, to: run.path)
                results = r
            }
        } catch {
            progress.note("analysis failed: \(error)")
            for i in outcomes.indices { outcomes[i].problems.append("analysis: \(error)") }
        }

        let verdict = outcomes.isEmpty
            ? Verdict(held: false, lines: ["no trial completed"])
            : experiment.evaluate(outcomes, options: options)
        record.verdict = verdict
        record.interrupted = interruption.isTriggered
        try run.writeJSON(record, to: "experiment.json")
        var plots: [String] = []
        do {
            plots = try experiment.experimentPlots(outcomes, directory: run.path)
        } catch {
            progress.note("experiment plots failed: \(error)")
        }
        try Self.addVerdict(verdict, experiment: experiment, plots: plots, to: run.path)
        return Result(directory: run.path, outcomes: outcomes, verdict: verdict, results: results,
                      interrupted: interruption.isTriggered)
    }

    /// Puts the expectation and whether it held at the top of summary.md and report.html.
    static func addVerdict(_ v: Verdict, experiment: any Experiment, plots: [String], to dir: String) throws {
        let head = "## \(experiment.name): expectation \(v.held ? "HELD" : "NOT HELD")\n\n\(experiment.expectation)\n\n"
            + v.lines.map { "- \($0)" }.joined(separator: "\n") + "\n\n"
            + plots.map { "![\($0)](\($0))\n" }.joined() + (plots.isEmpty ? "" : "\n")
        let summary = "\(dir)/summary.md"
        let old = (try? String(contentsOfFile: summary, encoding: .utf8)) ?? ""
        try (head + old).write(toFile: summary, atomically: true, encoding: .utf8)
        let html = "\(dir)/report.html"
        if var page = try? String(contentsOfFile: html, encoding: .utf8), let body = page.range(of: "<body>") {
            let esc = { (s: String) in s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
            let block = "<section><h2>\(esc(experiment.name)): expectation \(v.held ? "held" : "NOT held")</h2><p>\(esc(experiment.expectation))</p><ul>"
                + v.lines.map { "<li>\(esc($0))</li>" }.joined() + "</ul>"
                + plots.map { "<figure><img src=\"\(esc($0))\" alt=\"\(esc($0))\"></figure>" }.joined() + "</section>"
            page.insert(contentsOf: block, at: body.upperBound)
            try page.write(toFile: html, atomically: true, encoding: .utf8)
        }
    }
}
