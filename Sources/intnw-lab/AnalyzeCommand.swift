import Analysis
import ArgumentParser
import Foundation
import Lab

/// `intnw-lab analyze`: captures in, results/plots/report out.
struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Measure FG latency, throughput and fairness from packet captures.",
        discussion: """
        Each RUN_DIR is one trial: its apps.json (optional) says which connection belongs to which app, and its pcaps are analyzed together. Several RUN_DIRs are trials of the same configuration: results then include means with 95% confidence intervals across them. Plain .pcap files given directly form one trial, with apps identified from the toy protocol's app ids.

        Latency is measured from the wire (request's first byte leaving the client to the reply's last byte arriving there, in milliseconds); throughput counts the bytes that crossed the wire for each app (bytes per second), uplink booked from the server-side capture when the trial has one (past the link's bottleneck), downlink from the client side; every 1 s bin is checked against the trace's capacity when the run directory has it (oracle.txt, replay-start.json).

        Writes results.json, summary.md, latency.csv, throughput_100ms.csv, throughput_1s.csv, plots/*.svg and report.html.

        With --merge the inputs are trial directories of one plan (from `intnw-lab trial run`, or directories that hold them, e.g. a Slurm results directory or a run directory): the output is what `intnw-lab experiment` writes for a run, including the recipe's verdict and experiment.json. Trials of the plan that are missing, did not finish, failed or are unreadable are left out of the results and listed in the verdict, which then does not hold; exit status 1 when any is left out. When a trial was run more than once, the latest run is used.
        """)

    @Argument(help: "Run directories and/or pcap files.")
    var inputs: [String]

    @Option(name: [.customShort("o"), .customLong("output"), .customLong("out")],
            help: "Output directory (default: RUN_DIR/analysis for one run directory, else ./analysis; with --merge required).")
    var output: String?

    @Flag(help: "Merge the trial directories of a plan into one experiment run directory (see above).")
    var merge = false

    @Option(help: "Finest throughput bin in milliseconds (1 s series are sums of these); must divide 1000.")
    var binMs: Int = 100

    @Option(help: "Plot renderer: auto (gnuplot when installed), gnuplot, builtin.")
    var plots: PlotChoice = .auto

    @Flag(name: .shortAndLong, help: "Do not print warnings.")
    var quiet = false

    enum PlotChoice: String, ExpressibleByArgument, CaseIterable { case auto, gnuplot, builtin }

    func validate() throws {
        guard binMs > 0, 1000 % binMs == 0 else { throw ValidationError("--bin-ms must be a positive divisor of 1000") }
        if merge && output == nil { throw ValidationError("--merge needs --out DIR") }
        if merge && (binMs != 100 || plots != .auto) { throw ValidationError("--merge analyses like `experiment` does: no --bin-ms or --plots") }
    }

    func run() throws {
        if merge { return try runMerge() }
        let fm = FileManager.default
        var trials: [TrialInput] = []
        var loose: [String] = []
        do {
            for path in inputs {
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
                    throw AnalysisError.noInputs("\(path) does not exist")
                }
                if isDir.boolValue { trials.append(try TrialInput.runDirectory(path)) } else { loose.append(path) }
            }
        } catch {
            throw LabCLI.fail("\(error)")
        }
        if !loose.isEmpty {
            trials.append(TrialInput(name: loose.count == 1 ? ((loose[0] as NSString).lastPathComponent) : "pcaps",
                                     captures: loose.map { CaptureInput(path: $0) }))
        }
        let outDir = output ?? (inputs.count == 1 && loose.isEmpty ? (inputs[0] as NSString).appendingPathComponent("analysis") : "analysis")

        var options = AnalyzerOptions()
        options.binWidthNanoseconds = UInt64(binMs) * 1_000_000
        let renderer: any PlotRenderer
        switch plots {
        case .auto: renderer = PlotRenderers.best()
        case .builtin: renderer = BuiltinSVGRenderer()
        case .gnuplot:
            guard let g = GnuplotRenderer.detect() else { throw LabCLI.fail("--plots gnuplot: gnuplot is not installed (apt-get install gnuplot-nox)") }
            renderer = g
        }

        let analysis: (results: AnalysisResults, trials: [TrialAnalysis])
        do {
            analysis = try Analyzer.analyze(trials: trials, options: options)
            try ReportWriter(renderer: renderer).write(analysis.results, trials: analysis.trials, to: outDir)
        } catch {
            throw LabCLI.fail("\(error)")
        }
        if !quiet { for w in analysis.results.warnings { stderr("warning: \(w)") } }
        let apps = analysis.results.trials.map(\.apps.count).reduce(0, +)
        let conns = analysis.results.trials.map(\.connections.count).reduce(0, +)
        print("analyzed \(trials.count) trial(s): \(conns) TCP connections, \(apps) apps; wrote \(outDir)/report.html")
        for t in analysis.results.trials {
            for a in t.apps {
                var line = "  \(t.name) \(a.name) [\(a.role.rawValue), \(a.variant.rawValue)]"
                if let l = a.fg?.latencyMs {
                    line += String(format: " latency p50 %.2f ms p95 %.2f ms (%d requests)", l.p50Ms, l.p95Ms, l.count)
                }
                line += String(format: " throughput %.0f bytes/s", a.throughput.totalBytesPerSecond)
                print(line)
            }
        }
    }

    func runMerge() throws {
        let result: ExperimentRunner.Result
        do {
            result = try ExperimentMerger(progress: quiet ? nil : Progress(experiment: "merge", expectedSeconds: 0)).merge(inputs, into: output!)
        } catch {
            throw LabCLI.fail("\(error)")
        }
        print(ExperimentTable.render(result))
        print("expectation \(result.verdict.held ? "HELD" : "NOT HELD")")
        for l in result.verdict.lines { print("  \(l)") }
        print("merged \(result.outcomes.count) trial(s) into \(result.directory) (report: \(result.directory)/report.html)")
        if !result.excluded.isEmpty {
            stderr("intnw-lab: \(result.excluded.count) trial(s) of the plan left out: \(result.excluded.map(\.id).joined(separator: ", "))")
            throw ExitCode.failure
        }
    }
}
