import Analysis
import Emulation
import Foundation

/// Options every experiment understands (`intnw-lab experiment NAME --help`).
public struct ExperimentOptions: Sendable, Codable {
    /// Trials per variant; each uses its own seed (`seed + trial - 1`).
    public var trials = 1
    public var seed: UInt64 = 1
    public var shaper: ShaperKind = .userspace
    /// Namespace prefix of the testbed.
    public var prefix = "intnw"
    /// Shorter runs for CI (`make test` runs the quick form of some experiments).
    public var quick = false
    /// Largest number of apps in scaling experiments (fairness).
    public var maxApps = 8
    /// BG policy for IntNW apps, when the experiment does not vary it (INTNW_BG_POLICY).
    public var bgPolicy: String?
    /// The estimate background policies scale with: the library's own, or the trace's capacity.
    public var estimator: BackgroundEstimates.Estimator = .measured
    /// Root of run directories.
    public var runsRoot = "runs"
    /// Run every variant on this trace file (a window of it) instead of the experiment's own conditions.
    public var traceFile: String?
    /// Where the window starts in `traceFile`, seconds.
    public var traceStartSeconds: Double = 0
    /// Trial length in seconds (the window's length with `traceFile`); nil = the experiment's own.
    public var durationSeconds: Double?
    /// Congestion control and TCP sysctls pinned in both namespaces of every trial.
    public var tcp = TCPSettings()
    /// Trials run at once, each in its own testbed (`--jobs`).
    public var jobs = 1
    /// Run only these of the experiment's variants (`--variants`); nil = all of them.
    public var variants: [String]? = nil
    /// How many times a trial the fidelity guard invalidated (the emulation fell behind, nothing else
    /// wrong) is run again (`--retry-invalid`); nil = `defaultRetryInvalid`. Optional so that records
    /// written before it existed still decode.
    public var retryInvalid: Int? = nil
    /// Two: on a host whose timers stall now and then (a VM whose emulator fell behind with the
    /// CPUs 6-17% busy, 7 Dec), one rerun still left 19 of 96 trials out.
    public static let defaultRetryInvalid = 2

    public init() {}
}

/// Whether an experiment's stated expectation held, with the evidence.
public struct Verdict: Sendable, Codable {
    public var held: Bool
    public var lines: [String]
    public init(held: Bool, lines: [String]) {
        self.held = held
        self.lines = lines
    }
}

/// A named, versioned recipe (docs/testbed.md, Experiments).
public protocol Experiment: Sendable {
    /// Command-line name, e.g. `multiapp`.
    var name: String { get }
    /// Bumped whenever the recipe changes in a way that changes results.
    var version: Int { get }
    /// One line for `experiment list`.
    var summary: String { get }
    /// What the run should show, stated before it runs.
    var expectation: String { get }
    /// Expected wall-clock time of the runs (after the build), seconds.
    func expectedSeconds(_ options: ExperimentOptions) -> Double
    /// Every trial to run, in order.
    func plans(_ options: ExperimentOptions) throws -> [TrialPlan]
    /// Judges the expectation from the trials' outcomes.
    func evaluate(_ outcomes: [TrialOutcome], options: ExperimentOptions) -> Verdict
    /// Plots across trials (e.g. a metric against the number of apps), written under `directory`;
    /// returns their paths relative to it. The per-trial plots come from the analyzer's report.
    func experimentPlots(_ outcomes: [TrialOutcome], directory: String) throws -> [String]
    /// The numbers regression checks watch (mean over trials where there are several).
    func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric]
}

extension Experiment {
    public func experimentPlots(_ outcomes: [TrialOutcome], directory: String) throws -> [String] { [] }
    public func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric] { [] }
}

/// A number a regression check compares with its baseline.
public struct KeyMetric: Sendable, Codable, Equatable {
    public enum Better: String, Sendable, Codable { case lower, higher }
    /// Stable name, e.g. `multiapp.one-multisocket.fg_p95_ms`.
    public var name: String
    public var value: Double
    public var unit: String
    public var better: Better
    /// The observations the value summarizes (pooled requests' latencies, per-second rates...),
    /// for the statistical comparison; nil when the value is all there is.
    public var samples: [Double]?
    public init(name: String, value: Double, unit: String, better: Better, samples: [Double]? = nil) {
        self.name = name
        self.value = value
        self.unit = unit
        self.better = better
        self.samples = samples
    }
}
