/// Every experiment `intnw-lab experiment` knows, in `list` order.
public enum ExperimentRegistry {
    public static let all: [any Experiment] = [
        MultiappExperiment(),
        BGPolicyExperiment(),
        BGScaleExperiment(),
        FairnessExperiment(),
        DriveExperiment(),
        TroubleExperiment(),
    ]

    public static func named(_ name: String) -> (any Experiment)? { all.first { $0.name == name } }
}
