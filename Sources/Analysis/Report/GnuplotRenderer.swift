import Foundation

/// Renders plots with gnuplot (SVG terminal; PNG via pngcairo or png for previews). Data go
/// into inline datablocks, so no temporary files are left behind.
public struct GnuplotRenderer: PlotRenderer {
    public var name: String { "gnuplot" }
    public let executable: String

    public init(executable: String) { self.executable = executable }

    /// gnuplot on PATH with an SVG terminal, or nil.
    public static func detect() -> GnuplotRenderer? {
        let env = ProcessInfo.processInfo.environment
        if env["INTNW_NO_GNUPLOT"] == "1" { return nil }
        for dir in (env["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/gnuplot"
            if FileManager.default.isExecutableFile(atPath: p) { return GnuplotRenderer(executable: p) }
        }
        return nil
    }

    public func renderSVG(_ spec: PlotSpec, to path: String) throws {
        try run(script(spec, terminal: "svg size \(spec.widthPixels),\(spec.heightPixels) dynamic enhanced font 'Helvetica,13' background rgb 'white'", output: path))
    }

    /// Renders a PNG (pngcairo when available, else png) — for previews and checks.
    public func renderPNG(_ spec: PlotSpec, to path: String) throws {
        do {
            try run(script(spec, terminal: "pngcairo size \(spec.widthPixels),\(spec.heightPixels) enhanced font 'Helvetica,11' background rgb 'white'", output: path))
        } catch {
            try run(script(spec, terminal: "png size \(spec.widthPixels),\(spec.heightPixels)", output: path))
        }
    }

    static let palette = BuiltinSVGRenderer.palette

    /// The gnuplot program for one plot. No caller-supplied text (titles, axis labels, series
    /// names from pcap file names or app names, the output path) is ever spliced into program
    /// text: each goes as one line of the `$T` datablock and the program refers to it as
    /// `$T[k][2:]`. Datablock lines are data -- gnuplot does no backquote, macro or string
    /// evaluation on them -- and `sanitizedLine` removes the line breaks that could end a line
    /// (or the block) early. Labels are drawn `noenhanced`, so they also render literally.
    func script(_ spec: PlotSpec, terminal: String, output: String) -> String {
        var texts: [String] = []
        func text(_ t: String) -> String {
            texts.append(Self.sanitizedLine(t))
            return "$T[\(texts.count)][2:]"
        }
        let outputRef = text(output)
        var body = "set terminal \(terminal)\nset output \(outputRef)\n"
        body += "set title \(text(spec.title)) noenhanced font ',15'\nset xlabel \(text(spec.xLabel)) noenhanced\nset ylabel \(text(spec.yLabel)) noenhanced\n"
        body += "set grid lc rgb '#dddddd'\nset border lw 1\nset key outside right top vertical Left reverse\nset datafile missing 'NaN'\n"
        if spec.integerX { body += "set xtics 1\n" }
        let allY = spec.series.flatMap { $0.y + ($0.yLow ?? []) + ($0.yHigh ?? []) }
        if let r = spec.xRange { body += "set xrange [\(num(r.lowerBound)):\(num(r.upperBound))]\n" }
        if spec.logY { body += "set logscale y\n" }
        if let r = spec.yRange {
            body += "set yrange [\(num(r.lowerBound)):\(num(r.upperBound))]\n"
        } else if !spec.logY && (allY.filter(\.isFinite).min() ?? 0) >= 0 {
            body += "set yrange [0:*]\n"
        }
        body += "set autoscale xfix\nset offsets 0, 0, graph 0.05, 0\n"
        var plots: [String] = []
        for (i, series) in spec.series.enumerated() {
            body += "$d\(i) << EOD\n"
            let errors = series.yLow != nil && series.yHigh != nil
            for k in 0 ..< series.x.count {
                if errors {
                    body += "\(num(series.x[k])) \(num(series.y[k])) \(num(series.yLow![k])) \(num(series.yHigh![k]))\n"
                } else {
                    body += "\(num(series.x[k])) \(spec.logY && !(series.y[k] > 0) ? "NaN" : num(series.y[k]))\n"
                }
            }
            body += "EOD\n"
            let color = "lc rgb '\(Self.palette[i % Self.palette.count])'"
            let style: String
            if errors {
                style = "using 1:2:3:4 with yerrorlines lw 2 pt 7 ps 0.8"
            } else {
                switch series.style {
                case .line: style = "using 1:2 with lines lw 2"
                case .steps: style = "using 1:2 with steps lw 2"
                case .points: style = "using 1:2 with points pt 7 ps 0.5"
                case .linePoints: style = "using 1:2 with linespoints lw 2 pt 7 ps 0.8"
                }
            }
            plots.append("$d\(i) \(style) \(color) title \(text(series.name)) noenhanced")
        }
        if plots.isEmpty {
            body += "set label 1 'no data' at graph 0.5, graph 0.5 center\nset xrange [0:1]\nset yrange [0:1]\nplot NaN notitle\n"
        } else {
            body += "plot " + plots.joined(separator: ", \\\n     ") + "\n"
        }
        // Each text line starts with "L" so no label can be the block terminator "EOD".
        var s = "$T << EOD\n"
        for t in texts { s += "L\(t)\n" }
        s += "EOD\n"
        return s + body
    }

    /// One datablock line: every control character (line breaks, NUL, ...) and Unicode line or
    /// paragraph separator becomes a space.
    static func sanitizedLine(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { u in
            switch u.value {
            case 0 ..< 0x20, 0x7f, 0x80 ..< 0xa0, 0x2028, 0x2029: return " "
            default: return u
            }
        }))
    }

    private func num(_ v: Double) -> String { v.isFinite ? String(v) : "NaN" }

    private func run(_ script: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        let input = Pipe(), err = Pipe()
        p.standardInput = input
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        input.fileHandleForWriting.write(script.data(using: .utf8)!)
        try input.fileHandleForWriting.close()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: e, as: UTF8.self)
        if p.terminationStatus != 0 {
            throw AnalysisError.output(path: "gnuplot", detail: text.split(separator: "\n").last.map(String.init) ?? "exit \(p.terminationStatus)")
        }
    }
}
