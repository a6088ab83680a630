import ArgumentParser

/// The one command-line entry point for users of the testbed.
@main
struct IntNWLab: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intnw-lab",
        abstract: "Trace-driven multi-network emulation testbed for Intentional Networking.",
        subcommands: LabSubcommands.all)
}
