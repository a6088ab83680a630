import Foundation

/// A small SVG plot writer used when gnuplot is not installed: axes with ticks and labels, grid,
/// title, legend, lines/points/steps and error bars. No dependencies.
public struct BuiltinSVGRenderer: PlotRenderer {
    public var name: String { "builtin" }
    public init() {}

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

    public func renderSVG(_ spec: PlotSpec, to path: String) throws {
        try svg(spec).write(toFile: path, atomically: true, encoding: .utf8)
    }

    func svg(_ spec: PlotSpec) -> String {
        // A log y axis: draw log10(y) on a linear axis and label the ticks with 10^t.
        var spec = spec
        let logY = spec.logY
        if logY {
            let t = { (v: Double) in v > 0 ? log10(v) : Double.nan }
            spec.series = spec.series.map { s in
                PlotSeries(name: s.name, x: s.x, y: s.y.map(t), style: s.style, yLow: s.yLow?.map(t), yHigh: s.yHigh?.map(t))
            }
            spec.yRange = spec.yRange.map { t(max($0.lowerBound, 1e-9)) ... t(max($0.upperBound, 1e-9)) }
        }
        let W = Double(spec.widthPixels), H = Double(spec.heightPixels)
        let left = 90.0, right = 30.0, top = 50.0
        let legendRows = spec.series.isEmpty ? 0 : (spec.series.count + 2) / 3
        let bottom = 70.0 + Double(legendRows) * 20
        let pw = W - left - right, ph = H - top - bottom
        let allX = spec.series.flatMap(\.x)
        let allY = spec.series.flatMap { $0.y + ($0.yLow ?? []) + ($0.yHigh ?? []) }
        let (x0, x1) = axisRange(allX, fixed: spec.xRange, fromZero: false)
        let (y0, y1) = axisRange(allY, fixed: spec.yRange, fromZero: !logY)
        func sx(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func sy(_ y: Double) -> Double { top + ph - (y - y0) / (y1 - y0) * ph }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }

        var out = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(W))" height="\(Int(H))" viewBox="0 0 \(Int(W)) \(Int(H))" font-family="Helvetica, Arial, sans-serif" font-size="13">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(W / 2))" y="28" text-anchor="middle" font-size="16" font-weight="bold">\(esc(spec.title))</text>

        """
        // Grid and ticks.
        for t in niceTicks(x0, x1, integer: spec.integerX) {
            let x = sx(t)
            out += "<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + ph))\" stroke=\"#e0e0e0\"/>\n"
            out += "<text x=\"\(f(x))\" y=\"\(f(top + ph + 18))\" text-anchor=\"middle\">\(formatTick(t))</text>\n"
        }
        let yTicks = logY ? Array(stride(from: y0.rounded(.up), through: y1, by: 1)) : niceTicks(y0, y1)
        for t in yTicks {
            let y = sy(t)
            out += "<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + pw))\" y2=\"\(f(y))\" stroke=\"#e0e0e0\"/>\n"
            out += "<text x=\"\(f(left - 8))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(formatTick(logY ? pow(10, t) : t))</text>\n"
        }
        out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\" fill=\"none\" stroke=\"black\"/>\n"
        out += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(top + ph + 42))\" text-anchor=\"middle\" font-size=\"14\">\(esc(spec.xLabel))</text>\n"
        out += "<text transform=\"translate(22,\(f(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\" font-size=\"14\">\(esc(spec.yLabel))</text>\n"
        out += "<clipPath id=\"plot\"><rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\"/></clipPath>\n<g clip-path=\"url(#plot)\">\n"

        for (i, s) in spec.series.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let pts = zip(s.x, s.y).filter { $0.0.isFinite && $0.1.isFinite }
            switch s.style {
            case .line, .linePoints, .steps:
                var d = ""
                for (k, p) in pts.enumerated() {
                    if k == 0 {
                        d += "M\(f(sx(p.0))),\(f(sy(p.1)))"
                    } else if s.style == .steps {
                        d += " H\(f(sx(p.0))) V\(f(sy(p.1)))"
                    } else {
                        d += " L\(f(sx(p.0))),\(f(sy(p.1)))"
                    }
                }
                if !d.isEmpty { out += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n" }
                if s.style == .linePoints || pts.count == 1 {
                    for p in pts { out += "<circle cx=\"\(f(sx(p.0)))\" cy=\"\(f(sy(p.1)))\" r=\"3.5\" fill=\"\(color)\"/>\n" }
                }
            case .points:
                for p in pts { out += "<circle cx=\"\(f(sx(p.0)))\" cy=\"\(f(sy(p.1)))\" r=\"2.5\" fill=\"\(color)\" fill-opacity=\"0.8\"/>\n" }
            }
            if let lo = s.yLow, let hi = s.yHigh {
                for k in 0 ..< min(s.x.count, lo.count, hi.count) where lo[k].isFinite && hi[k].isFinite {
                    let x = sx(s.x[k])
                    out += "<path d=\"M\(f(x - 5)),\(f(sy(lo[k]))) H\(f(x + 5)) M\(f(x)),\(f(sy(lo[k]))) V\(f(sy(hi[k]))) M\(f(x - 5)),\(f(sy(hi[k]))) H\(f(x + 5))\" stroke=\"\(color)\" stroke-width=\"1.5\" fill=\"none\"/>\n"
                }
            }
        }
        out += "</g>\n"
        if spec.series.isEmpty {
            out += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(top + ph / 2))\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n"
        }
        // Legend below the plot, three entries per row.
        for (i, s) in spec.series.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let col = Double(i % 3), row = Double(i / 3)
            let lx = left + col * (pw / 3), ly = top + ph + 62 + row * 20
            out += "<line x1=\"\(f(lx))\" y1=\"\(f(ly - 4))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly - 4))\" stroke=\"\(color)\" stroke-width=\"3\"/>\n"
            out += "<text x=\"\(f(lx + 30))\" y=\"\(f(ly))\">\(esc(s.name))</text>\n"
        }
        out += "</svg>\n"
        return out
    }

    private func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
