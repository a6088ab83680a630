import Foundation

/// One data series of a plot.
public struct PlotSeries: Sendable {
    public enum Style: String, Sendable { case line, points, steps, linePoints }
    public var name: String
    public var x: [Double]
    public var y: [Double]
    /// Optional error bars (same length as `y`): lower and upper ends.
    public var yLow: [Double]?
    public var yHigh: [Double]?
    public var style: Style

    public init(name: String, x: [Double], y: [Double], style: Style = .line, yLow: [Double]? = nil, yHigh: [Double]? = nil) {
        precondition(x.count == y.count, "x and y differ in length")
        self.name = name
        self.x = x
        self.y = y
        self.style = style
        self.yLow = yLow
        self.yHigh = yHigh
    }
}

/// A 2-D plot: labelled axes (with units in the labels), a legend, one or more series.
public struct PlotSpec: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [PlotSeries]
    /// Fixed axis ranges; nil fits the data (y starts at 0 when all data are non-negative).
    public var xRange: ClosedRange<Double>?
    public var yRange: ClosedRange<Double>?
    /// Integer x ticks only (e.g. number of apps).
    public var integerX = false
    /// Logarithmic y axis (values ≤ 0 are not drawn), for series that differ by orders of magnitude.
    public var logY = false
    public var widthPixels = 960
    public var heightPixels = 540

    public init(title: String, xLabel: String, yLabel: String, series: [PlotSeries]) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
    }
}

/// Renders plots to SVG files.
public protocol PlotRenderer: Sendable {
    /// "gnuplot" or "builtin", recorded in reports.
    var name: String { get }
    func renderSVG(_ spec: PlotSpec, to path: String) throws
}

public enum PlotRenderers {
    /// gnuplot when it is installed with its SVG terminal, otherwise the built-in writer.
    public static func best() -> any PlotRenderer {
        if let g = GnuplotRenderer.detect() { return g }
        return BuiltinSVGRenderer()
    }
}

/// Axis tick positions at 1, 2 or 5 × 10^k steps.
func niceTicks(_ lo: Double, _ hi: Double, maxTicks: Int = 8, integer: Bool = false) -> [Double] {
    guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
    let raw = (hi - lo) / Double(max(maxTicks - 1, 1))
    let mag = pow(10, floor(log10(raw)))
    var step = mag
    for m in [1.0, 2.0, 5.0, 10.0] where m * mag >= raw { step = m * mag; break }
    if integer { step = max(1, step.rounded(.up)) }
    var ticks: [Double] = []
    var v = (lo / step).rounded(.up) * step
    while v <= hi + step * 1e-9 {
        ticks.append(abs(v) < step * 1e-9 ? 0 : v)
        v += step
    }
    return ticks
}

/// Data range of a plot's axis: the fixed range, or the data padded a little (y from 0 when
/// the data are non-negative).
func axisRange(_ values: [Double], fixed: ClosedRange<Double>?, fromZero: Bool) -> (Double, Double) {
    if let f = fixed { return (f.lowerBound, f.upperBound) }
    let finite = values.filter(\.isFinite)
    guard var lo = finite.min(), var hi = finite.max() else { return (0, 1) }
    if fromZero && lo >= 0 { lo = 0 }
    if hi == lo { hi = lo + (lo == 0 ? 1 : abs(lo) * 0.1) }
    if !fromZero || lo < 0 { lo -= (hi - lo) * 0.02 }
    hi += (hi - lo) * 0.05
    return (lo, hi)
}

func formatTick(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
    let s = String(format: "%.3g", v)
    return s
}
