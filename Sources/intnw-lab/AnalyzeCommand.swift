import Analysis
import ArgumentParser
import Foundation

/// `intnw-lab analyze`: captures in, results/plots/report out.
struct AnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Measure FG latency, throughput and fairness from packet captures.",
        discussion: """
        Each RUN_DIR is one trial: its apps.json (optional) says which connection belongs to which app, and its pcaps are analyzed together. Several RUN_DIRs are trials of the same configuration: results then include means with 95% confidence intervals across them. Plain .pcap files given directly form one trial, with apps identified from the toy protocol's app ids.

        Latency is measured from the wire (request's first byte leaving the client to the reply's last byte arriving there, in milliseconds); throughput counts distinct TCP payload bytes (bytes per second).

        Writes results.json, summary.md, latency.csv, throughput_100ms.csv, throughput_1s.csv, plots/*.svg and report.html.
        """)

    @Argument(help: "Run directories and/or pcap files.")
    var inputs: [String]

    @Option(name: .shortAndLong, help: "Output directory (default: RUN_DIR/analysis for one run directory, else ./analysis).")
    var output: String?

    @Option(help: "Finest throughput bin in milliseconds (1 s series are sums of these); must divide 1000.")
    var binMs: Int = 100

    @Option(help: "Plot renderer: auto (gnuplot when installed), gnuplot, builtin.")
    var plots: PlotChoice = .auto

    @Flag(name: .shortAndLong, help: "Do not print warnings.")
    var quiet = false

    enum PlotChoice: String, ExpressibleByArgument, CaseIterable { case auto, gnuplot, builtin }

    func validate() throws {
        guard binMs > 0, 1000 % binMs == 0 else { throw ValidationError("--bin-ms must be a positive divisor of 1000") }
    }

    func run() throws {
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
}
