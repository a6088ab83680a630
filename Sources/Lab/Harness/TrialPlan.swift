import Analysis
import Emulation
import Foundation

/// One toy app the harness launches in the client namespace (see `intnw-app --help`).
public struct AppLaunch: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        case fgClient = "fg-client"
        case bgClient = "bg-client"
    }

    /// Name in results (`fg`, `bg`, `plain-3`, ...): unique within a trial.
    public var name: String
    public var kind: Kind
    public var variant: AppVariant
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

    public init(name: String, kind: Kind, variant: AppVariant, appId: UInt32, startDelaySeconds: Double = 0,
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
    public var captureServer = false

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
        if let p = o.bgPolicy { environment["INTNW_BG_POLICY"] = p }
    }

    /// Server ports per variant; one server process per variant serves every app.
    public static let serverPort: [AppVariant: UInt16] = [.plain: 5000, .intnw: 5001]
}
