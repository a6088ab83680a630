import Analysis
import Emulation
import Foundation
import ToyProtocol

/// One toy app the harness launches in the client namespace (see `intnw-app --help`).
public struct AppLaunch: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case fgClient = "fg-client"
        case bgClient = "bg-client"
    }

    /// Name in results (`fg`, `bg`, `plain-3`, ...): unique within a trial.
    public var name: String
    public var kind: Kind
    public var variant: ToyVariant
    /// Carried in every toy message header; the analyzer attributes flows by it.
    public var appId: UInt32
    /// Seconds after the replay starts.
    public var startDelaySeconds: Double = 0
    /// Extra `intnw-app` options, e.g. `["--interval", "1"]`.
    public var arguments: [String] = []
    /// Apps with the same `process` value run as one `intnw-app` process (several multisockets in one
    /// app); nil = a process of its own.
    public var process: String?
    /// With `process`: share one multisocket among the apps of that process.
    public var shareMultisocket = false

    public init(name: String, kind: Kind, variant: ToyVariant, appId: UInt32, startDelaySeconds: Double = 0,
                arguments: [String] = [], process: String? = nil, shareMultisocket: Bool = false) {
        self.name = name
        self.kind = kind
        self.variant = variant
        self.appId = appId
        self.startDelaySeconds = startDelaySeconds
        self.arguments = arguments
        self.process = process
        self.shareMultisocket = shareMultisocket
    }

    public var role: AppRole { kind == .fgClient ? .fg : .bg }
}

/// Everything one trial needs: conditions, apps and how long to run. Codable: a trial spec
/// (`TrialSpec`) carries it whole, so an option added here is a spec field with no further work.
public struct TrialPlan: Sendable, Codable {
    public var experiment: String
    /// Variant name (a directory name inside the run).
    public var variant: String
    /// 1-based trial number.
    public var trial: Int
    public var trace: Trace
    public var durationSeconds: Double
    public var notifyDelaySeconds = 2.0
    public var shaper: ShaperKind = .userspace
    public var prefix = "intnw"
    public var seed: UInt64 = 1
    public var apps: [AppLaunch]
    /// Environment for every app and server process (e.g. INTNW_BG_POLICY).
    public var environment: [String: String] = [:]
    /// Capture the server side too.
    public var captureServer = true
    /// Congestion control and TCP sysctls of both namespaces.
    public var tcp = TCPSettings()
    /// Linux MPTCP path-manager setup for strategies whose plain-TCP apps use MPTCP sockets.
    public var mptcp: MPTCPMode?
    /// Set when the trace came from the user (`--trace`): the file, its hash and the window.
    public var traceOrigin: TraceOrigin?
    /// Extra `intnw-app server` options, e.g. `["--reply-bytes", "16384", "--ack-bytes", "262144"]`.
    public var serverArguments: [String] = []

    public init(experiment: String, variant: String, trial: Int, trace: Trace, durationSeconds: Double, apps: [AppLaunch]) {
        self.experiment = experiment
        self.variant = variant
        self.trial = trial
        self.trace = trace
        self.durationSeconds = durationSeconds
        self.apps = apps
    }

    /// Takes the run-wide options: trial k's seed is `seed + k - 1`; shaper, prefix and (unless the
    /// experiment varies it) the BG policy for IntNW apps.
    public mutating func apply(_ o: ExperimentOptions) {
        seed = o.seed + UInt64(trial - 1)
        shaper = o.shaper
        prefix = o.prefix
        tcp = o.tcp
        if let p = o.bgPolicy { environment["INTNW_BG_POLICY"] = p }
        environment.merge(BackgroundEstimates.environment(o.estimator)) { _, new in new }
    }

    /// Applies `--trace/--trace-start/--duration` (the experiment's own trace and length otherwise).
    public mutating func applyTraceOverride(_ override: TraceOverride?, durationSeconds d: Double?) {
        if let override {
            trace = override.trace
            durationSeconds = override.origin.durationSeconds
            traceOrigin = override.origin
            // The OS learns of a WiFi outage at trace time, as in the experiments' vehicular runs.
            notifyDelaySeconds = 2
        } else if let d {
            durationSeconds = d
        }
    }
}

/// Where a user-given trace came from: the file, an FNV-1a 64 hash of its bytes, and the window.
public struct TraceOrigin: Sendable, Codable, Equatable {
    public var file: String
    public var fnv1a64: String
    public var startSeconds: Double
    public var durationSeconds: Double
}

/// A window of a user-given trace file, loaded once for every trial.
public struct TraceOverride: Sendable {
    public var trace: Trace
    public var origin: TraceOrigin

    /// Loads `o.traceFile` and cuts `o.durationSeconds` (default: the rest of the trace) from
    /// `o.traceStartSeconds`; nil without `--trace`. Throws a one-line error for a bad file or window.
    public static func load(_ o: ExperimentOptions) throws -> TraceOverride? {
        guard let file = o.traceFile else {
            guard o.traceStartSeconds == 0 else { throw LabError.badOption("--trace-start needs --trace") }
            return nil
        }
        let full = try TraceParser.parse(contentsOfFile: file)
        let start = o.traceStartSeconds
        guard start.isFinite, start >= 0, start < full.durationSeconds else {
            throw LabError.badOption("--trace-start \(start) s is outside \(file) (0 to \(full.durationSeconds) s)")
        }
        let length = o.durationSeconds ?? (full.durationSeconds - start)
        guard length.isFinite, length > 0, start + length <= full.durationSeconds + 1e-9 else {
            throw LabError.badOption("--trace-start \(start) + --duration \(length) s runs past the end of \(file) (\(full.durationSeconds) s)")
        }
        // The parser accepted the file, so it is UTF-8 text: the same hash RunDirectory gives traces.
        let text = try String(contentsOfFile: file, encoding: .utf8)
        func s(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)" }
        var window = BGPolicyExperiment.window(full, from: start, seconds: length)
        window.source = "\(file), \(s(start))-\(s(start + length)) s"
        return TraceOverride(trace: window, origin: TraceOrigin(file: file, fnv1a64: fnv1a64(text),
                                                                startSeconds: start, durationSeconds: length))
    }
}
