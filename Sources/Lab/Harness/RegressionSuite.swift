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
        var entries = [Entry(experiment: "multiapp", options: quick)]
        for extra in ["bgpolicy", "trouble"] where ExperimentRegistry.named(extra) != nil {
            entries.append(Entry(experiment: extra, options: quick))
        }
        return entries
    }

    public static func expectedSeconds(base: ExperimentOptions) -> Double {
        standard(base: base).compactMap { e in ExperimentRegistry.named(e.experiment)?.expectedSeconds(e.options) }.reduce(0, +)
    }
}
