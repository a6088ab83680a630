import Foundation

/// The fixed, short set of runs `intnw-lab regress` compares with the baseline (under 10 minutes on
/// 2 cores). Each entry is an experiment in its quick form.
public enum RegressionSuite {
    public struct Entry: Sendable {
        public var experiment: String
        public var options: ExperimentOptions
    }

    /// multiapp runs `multiappTrials` trials per variant (3: its metrics pool the requests and
    /// seconds of every trial); trouble one (its quick form alone takes about 5 minutes per trial,
    /// so its metrics are one number per run, judged by the tolerance rule).
    public static func standard(base: ExperimentOptions, multiappTrials: Int = 3) -> [Entry] {
        var quick = base
        quick.quick = true
        quick.trials = 1
        var multi = quick
        multi.trials = multiappTrials
        // bgpolicy is left out: even its quick form (four policies x three layouts x two traces) runs
        // for over half an hour. multiapp covers the scheduler (FG p95 with BG present), trouble the
        // failover path.
        return [Entry(experiment: "multiapp", options: multi), Entry(experiment: "trouble", options: quick)]
    }

    public static func expectedSeconds(base: ExperimentOptions) -> Double {
        standard(base: base).compactMap { e in ExperimentRegistry.named(e.experiment)?.expectedSeconds(e.options) }.reduce(0, +)
    }
}
