import ArgumentParser

/// Every subcommand, one per line so parallel work merges cleanly.
enum LabSubcommands {
    static let all: [any ParsableCommand.Type] = [
        NetCommand.self,
        ExperimentCommand.self,
        RegressCommand.self,
        AnalyzeCommand.self,
        TraceCommand.self,
        TrialCommand.self,
    ]
}
