import ArgumentParser
import Foundation

/// `make bench`: whole-system benchmarks printed as ratios measured side by side in one run.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intnw-bench",
        abstract: "Emulator, IntNW and analyzer benchmarks (needs root for the namespace parts).")

    @Option(help: "Seconds per throughput transfer.")
    var seconds = 8.0

    @Option(help: "Comma-separated sections to run: emulator, intnw, analyzer.")
    var only: String = "emulator,intnw,analyzer"

    func run() async throws {
        guard getuid() == 0 else {
            FileHandle.standardError.write("intnw-bench: must run as root (network namespaces and TUN devices)\n".data(using: .utf8)!)
            throw ExitCode.failure
        }
        let sections = Set(only.split(separator: ",").map(String.init))
        if sections.contains("emulator") { _ = try await EmulatorBench.run(seconds: seconds) }
        if sections.contains("intnw") { _ = try await IntNWGoodputBench.report(seconds: seconds) }
        if sections.contains("analyzer") { for l in try runAnalyzerBench() { print(l) } }
    }
}

