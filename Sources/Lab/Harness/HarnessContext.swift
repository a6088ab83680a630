import Logging
import Synchronization

/// What every runner of the harness shares, from the CLI down to each trial (`ExperimentRunner` ->
/// `TrialJob` -> `TrialRunner`): where the built binaries are (`intnw-app`), where to log, and the
/// run's Ctrl-C flag.
public struct HarnessContext: Sendable {
    /// The directory holding `intnw-app` (and `intnw-lab`).
    public var binDirectory: String
    public var logger: Logger
    public var interruption: Interruption

    public init(binDirectory: String, logger: Logger, interruption: Interruption) {
        self.binDirectory = binDirectory
        self.logger = logger
        self.interruption = interruption
    }
}

/// Set when the user asks the run to stop (Ctrl-C): trials end early but still tear down and keep
/// what they collected.
public final class Interruption: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func trigger() { flag.store(true, ordering: .releasing) }
    public var isTriggered: Bool { flag.load(ordering: .acquiring) }
}
