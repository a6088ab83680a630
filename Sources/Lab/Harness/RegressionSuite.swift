import Foundation

/// The fixed, short set of runs `intnw-lab regress` compares with the baseline (under 10 minutes on
/// 2 cores). Each entry is an experiment in its quick form.
public enum RegressionSuite {
    public struct Entry: Sendable {
        public var experiment: String
        public var options: ExperimentOptions
    }

    public static func standard(base: ExperimentOptions) -> [Entry] {
        var quick = base
        quick.quick = true
        quick.trials = 1
        // bgpolicy is left out: even its quick form (four policies x three layouts x two traces) runs
        // for over half an hour. multiapp covers the scheduler (FG p95 with BG present), trouble the
        // failover path.
        return [Entry(experiment: "multiapp", options: quick), Entry(experiment: "trouble", options: quick)]
    }

    public static func expectedSeconds(base: ExperimentOptions) -> Double {
        standard(base: base).compactMap { e in ExperimentRegistry.named(e.experiment)?.expectedSeconds(e.options) }.reduce(0, +)
    }
}
