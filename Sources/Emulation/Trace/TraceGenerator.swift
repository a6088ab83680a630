/// Styles of synthetic trace `TraceGenerator` can produce.
public enum TraceStyle: String, Sendable, CaseIterable {
    /// Vehicular, Ann Arbor style: frequent WiFi encounters of seconds to minutes, 3G always there.
    case annarbor
    /// Vehicular, Ypsilanti style: like Ann Arbor but WiFi is sparser (shorter encounters, longer gaps).
    case ypsilanti
    /// The Ann Arbor cellular model with WiFi never available.
    case cellularOnly = "cellular-only"
    /// One slice of fixed lab conditions (`TraceGenerator.labWiFi`, `labCellular`); the seed is unused.
    case constant
}

/// A generator request that cannot be honoured.
public struct TraceGeneratorError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
}

/// Parameters of the vehicular model. Every number is a named, documented field so the shipped
/// traces' provenance is explicit (traces/README.md repeats them). They are *assumptions in the style of*
/// the IntNW paper's Ann Arbor and Ypsilanti drives, chosen from the qualitative facts listed in
/// traces/README.md; the original measurements are not public.
///
/// The model, per 1-second slice:
/// - WiFi alternates between encounters and disconnections whose lengths (whole seconds) are log-normal,
///   clamped. The trace starts in a disconnection of a uniformly random fraction of one drawn length.
/// - In an encounter, WiFi downlink = per-encounter base (log-normal) x slow per-slice variation
///   (log-space AR(1)); uplink = downlink x a per-encounter fraction. RTT = per-encounter base
///   (uniform) + per-slice jitter (uniform); with a small probability a spike (log-normal, hundreds of
///   ms) or a stall (uniform, over one second) replaces it. The first and last `wifiEdgeSeconds` of an
///   encounter are weaker (fading in and out of range): less bandwidth, more RTT, more spikes.
/// - Cellular (3G) is always present: downlink and uplink each log-normal around a median with slow
///   log-space AR(1) variation, clamped; RTT = floor + log-normal excess (AR(1)), with rare spikes.
/// Bandwidths are rounded to whole bytes per second and RTTs to whole milliseconds.
public struct VehicularModel: Sendable, Equatable {
    // WiFi connectivity
    /// Median WiFi encounter length, seconds.
    public var encounterMedianSeconds: Double
    /// Log-normal shape (standard deviation of ln length) of encounter lengths.
    public var encounterSigma: Double
    /// Encounter lengths are clamped to this range, seconds.
    public var encounterRangeSeconds: ClosedRange<Int>
    /// Median disconnection length, seconds.
    public var disconnectionMedianSeconds: Double
    /// Log-normal shape of disconnection lengths.
    public var disconnectionSigma: Double
    /// Disconnection lengths are clamped to this range, seconds.
    public var disconnectionRangeSeconds: ClosedRange<Int>

    // WiFi bandwidth
    /// Median of the per-encounter WiFi downlink base rate, bytes/s.
    public var wifiDownMedianBytesPerSecond: Double
    /// Log-normal shape of the per-encounter base rate (spread between hotspots).
    public var wifiDownEncounterSigma: Double
    /// Stationary standard deviation of the per-slice log-space variation within an encounter.
    public var wifiSliceSigma: Double
    /// Slice-to-slice correlation (AR(1) coefficient) of that variation.
    public var wifiSliceCorrelation: Double
    /// Per-encounter uplink/downlink ratio, drawn uniformly from this range.
    public var wifiUpFractionRange: ClosedRange<Double>
    /// WiFi rates are clamped to this range, bytes/s (before the edge factor).
    public var wifiRangeBytesPerSecond: ClosedRange<Double>

    // WiFi RTT
    /// Per-encounter base RTT, uniform in this range, ms.
    public var wifiBaseRTTRangeMilliseconds: ClosedRange<Double>
    /// Per-slice jitter added to the base RTT, uniform in 0...this, ms.
    public var wifiJitterMaxMilliseconds: Double
    /// Probability per slice (away from the edges) of an RTT spike.
    public var wifiSpikeProbability: Double
    /// Median of a spike's RTT, ms (log-normal, shape `wifiSpikeSigma`).
    public var wifiSpikeMedianMilliseconds: Double
    /// Log-normal shape of spike RTTs.
    public var wifiSpikeSigma: Double
    /// Spikes are clamped to this range, ms.
    public var wifiSpikeRangeMilliseconds: ClosedRange<Double>
    /// Probability per slice of a stall: RTT uniform in `wifiStallRangeMilliseconds`.
    public var wifiStallProbability: Double
    /// RTT range of a stall, ms.
    public var wifiStallRangeMilliseconds: ClosedRange<Double>

    // Encounter edges (fading)
    /// Slices at either end of an encounter that count as its edge.
    public var wifiEdgeSeconds: Int
    /// Bandwidth multiplier at the edge.
    public var wifiEdgeBandwidthFactor: Double
    /// RTT multiplier at the edge (applied to the base+jitter RTT).
    public var wifiEdgeRTTFactor: Double
    /// Spike probability at the edge (replaces `wifiSpikeProbability` there).
    public var wifiEdgeSpikeProbability: Double

    // Cellular (3G)
    /// Median cellular downlink, bytes/s.
    public var cellDownMedianBytesPerSecond: Double
    /// Median cellular uplink, bytes/s.
    public var cellUpMedianBytesPerSecond: Double
    /// Stationary standard deviation of the log-space variation of both cellular rates.
    public var cellSigma: Double
    /// Slice-to-slice correlation of the cellular rate variation.
    public var cellCorrelation: Double
    /// Cellular downlink clamp, bytes/s.
    public var cellDownRangeBytesPerSecond: ClosedRange<Double>
    /// Cellular uplink clamp, bytes/s.
    public var cellUpRangeBytesPerSecond: ClosedRange<Double>
    /// Cellular RTT floor, ms.
    public var cellRTTFloorMilliseconds: Double
    /// Median of the RTT above the floor, ms (log-normal, AR(1) in log space).
    public var cellRTTExcessMedianMilliseconds: Double
    /// Stationary log-space standard deviation of the RTT excess.
    public var cellRTTExcessSigma: Double
    /// Slice-to-slice correlation of the RTT excess.
    public var cellRTTCorrelation: Double
    /// Probability per slice of a cellular RTT spike.
    public var cellSpikeProbability: Double
    /// RTT range of a cellular spike, ms (uniform).
    public var cellSpikeRangeMilliseconds: ClosedRange<Double>

    /// Ann Arbor style: WiFi available roughly a third of the time.
    public static let annArbor = VehicularModel(
        encounterMedianSeconds: 25, encounterSigma: 0.9, encounterRangeSeconds: 2...240,
        disconnectionMedianSeconds: 45, disconnectionSigma: 0.9, disconnectionRangeSeconds: 3...400,
        wifiDownMedianBytesPerSecond: 700_000, wifiDownEncounterSigma: 0.6,
        wifiSliceSigma: 0.3, wifiSliceCorrelation: 0.8, wifiUpFractionRange: 0.3...0.7,
        wifiRangeBytesPerSecond: 150_000...4_000_000,
        wifiBaseRTTRangeMilliseconds: 25...55, wifiJitterMaxMilliseconds: 15,
        wifiSpikeProbability: 0.04, wifiSpikeMedianMilliseconds: 250, wifiSpikeSigma: 0.5,
        wifiSpikeRangeMilliseconds: 100...999,
        wifiStallProbability: 0.004, wifiStallRangeMilliseconds: 1000...2000,
        wifiEdgeSeconds: 2, wifiEdgeBandwidthFactor: 0.3, wifiEdgeRTTFactor: 2, wifiEdgeSpikeProbability: 0.25,
        cellDownMedianBytesPerSecond: 60_000, cellUpMedianBytesPerSecond: 20_000,
        cellSigma: 0.35, cellCorrelation: 0.95,
        cellDownRangeBytesPerSecond: 8_000...150_000, cellUpRangeBytesPerSecond: 4_000...60_000,
        cellRTTFloorMilliseconds: 180, cellRTTExcessMedianMilliseconds: 40, cellRTTExcessSigma: 0.6,
        cellRTTCorrelation: 0.9, cellSpikeProbability: 0.02, cellSpikeRangeMilliseconds: 400...1500)

    /// Ypsilanti style: sparser WiFi (shorter encounters, much longer gaps), somewhat slower hotspots
    /// and 3G; everything else as Ann Arbor.
    public static let ypsilanti: VehicularModel = {
        var m = annArbor
        m.encounterMedianSeconds = 12
        m.encounterRangeSeconds = 2...180
        m.disconnectionMedianSeconds = 90
        m.disconnectionRangeSeconds = 5...600
        m.wifiDownMedianBytesPerSecond = 500_000
        m.cellDownMedianBytesPerSecond = 50_000
        m.cellUpMedianBytesPerSecond = 16_000
        return m
    }()
}

/// Seeded generator of synthetic traces (`intnw-lab trace generate`). The same style, seed and duration
/// give the same trace, byte for byte, on every machine (see `DeterministicRNG`).
public enum TraceGenerator {
    /// Lab WiFi for the `constant` style: 1 250 000 B/s down (10 Mbit/s), 625 000 B/s up, 20 ms RTT.
    public static let labWiFi = LinkConditions(downBytesPerSecond: 1_250_000, upBytesPerSecond: 625_000, rttMilliseconds: 20)
    /// Lab cellular for the `constant` style: 125 000 B/s down (1 Mbit/s), 62 500 B/s up, 100 ms RTT.
    public static let labCellular = LinkConditions(downBytesPerSecond: 125_000, upBytesPerSecond: 62_500, rttMilliseconds: 100)
    /// Longest trace the generator makes: 10 days of 1-second slices.
    public static let maxDurationSeconds: Double = 864_000
    /// Length of a generated slice, seconds.
    public static let sliceSeconds: Double = 1

    /// Generates a trace. `durationSeconds` must be in (0, `maxDurationSeconds`]; slices start at
    /// 0, 1, 2, ... s and the last one ends at `durationSeconds`.
    public static func generate(style: TraceStyle, seed: UInt64, durationSeconds: Double) throws -> Trace {
        guard durationSeconds > 0, durationSeconds <= maxDurationSeconds else {
            throw TraceGeneratorError(description: "duration must be more than 0 and at most \(TraceInput.format(maxDurationSeconds)) seconds")
        }
        let source = command(style: style, seed: seed, durationSeconds: durationSeconds)
        switch style {
        case .constant:
            var trace = Trace.constant(wifi: labWiFi, cellular: labCellular, durationSeconds: durationSeconds)
            trace.source = source
            return trace
        case .annarbor:
            return vehicular(.annArbor, wifi: true, seed: seed, durationSeconds: durationSeconds, source: source)
        case .ypsilanti:
            return vehicular(.ypsilanti, wifi: true, seed: seed, durationSeconds: durationSeconds, source: source)
        case .cellularOnly:
            return vehicular(.annArbor, wifi: false, seed: seed, durationSeconds: durationSeconds, source: source)
        }
    }

    /// The command line that regenerates this trace (without `--output`).
    public static func command(style: TraceStyle, seed: UInt64, durationSeconds: Double) -> String {
        // The constant style ignores the seed, so its command does not mention one.
        let seedOption = style == .constant ? "" : " --seed \(seed)"
        return "intnw-lab trace generate --style \(style.rawValue)\(seedOption) --duration \(TraceInput.format(durationSeconds))"
    }

    /// Canonical text of a generated trace, with comments saying it is synthetic and how to regenerate it.
    /// This is exactly what `intnw-lab trace generate` prints or writes.
    public static func text(style: TraceStyle, seed: UInt64, durationSeconds: Double) throws -> String {
        text(of: try generate(style: style, seed: seed, durationSeconds: durationSeconds), style: style)
    }

    /// Canonical text of `trace`, as returned by `generate(style:...)` for `style`.
    public static func text(of trace: Trace, style: TraceStyle) -> String {
        let what: String
        switch style {
        case .annarbor: what = "synthetic Ann Arbor-style vehicular trace (not a measurement)"
        case .ypsilanti: what = "synthetic Ypsilanti-style vehicular trace (not a measurement)"
        case .cellularOnly: what = "synthetic cellular-only trace (Ann Arbor 3G model, no WiFi)"
        case .constant: what = "constant lab conditions"
        }
        return TraceWriter.text(of: trace, comments: [what + "; see traces/README.md", "generated by " + trace.source])
    }

    /// Independent random streams per part of the model, so a change to one part leaves the others'
    /// numbers unchanged.
    private enum Stream: UInt64 {
        case connectivity = 1, wifiQuality = 2, cellular = 3
    }

    private static func rng(_ seed: UInt64, _ stream: Stream) -> DeterministicRNG {
        var mixer = DeterministicRNG(seed: seed ^ (stream.rawValue &* 0xD1B5_4A32_D192_ED03))
        return DeterministicRNG(seed: mixer.next())
    }

    private static func vehicular(_ m: VehicularModel, wifi: Bool, seed: UInt64, durationSeconds: Double, source: String) -> Trace {
        var count = Int(durationSeconds.rounded(.up))
        if count < 1 { count = 1 }
        let off = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)
        let wifiSlices = wifi ? wifiConditions(m, seed: seed, count: count) : Array(repeating: off, count: count)
        let cellSlices = cellularConditions(m, seed: seed, count: count)
        let slices = (0..<count).map { i in
            TraceSlice(startSeconds: Double(i) * sliceSeconds, conditions: [wifiSlices[i], cellSlices[i]])
        }
        return Trace(slices: slices, durationSeconds: durationSeconds, source: source)
    }

    /// Encounters as (first slice, length in slices), covering `count` slices.
    static func encounters(_ m: VehicularModel, rng: inout DeterministicRNG, count: Int) -> [(start: Int, length: Int)] {
        func draw(_ median: Double, _ sigma: Double, _ range: ClosedRange<Int>) -> Int {
            let v = rng.logNormal(median: median, sigma: sigma).rounded()
            return Int(min(max(v, Double(range.lowerBound)), Double(range.upperBound)))
        }
        var result: [(Int, Int)] = []
        // Start part-way through a disconnection.
        var t = Int((Double(draw(m.disconnectionMedianSeconds, m.disconnectionSigma, m.disconnectionRangeSeconds)) * rng.unit()).rounded(.down))
        while t < count {
            let length = draw(m.encounterMedianSeconds, m.encounterSigma, m.encounterRangeSeconds)
            result.append((t, length))
            t += length + draw(m.disconnectionMedianSeconds, m.disconnectionSigma, m.disconnectionRangeSeconds)
        }
        return result
    }

    private static func wifiConditions(_ m: VehicularModel, seed: UInt64, count: Int) -> [LinkConditions] {
        var connectivity = rng(seed, .connectivity)
        var r = rng(seed, .wifiQuality)
        var out = Array(repeating: LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0), count: count)
        for (start, length) in encounters(m, rng: &connectivity, count: count) {
            let base = r.logNormal(median: m.wifiDownMedianBytesPerSecond, sigma: m.wifiDownEncounterSigma)
            let upFraction = r.uniform(m.wifiUpFractionRange.lowerBound, m.wifiUpFractionRange.upperBound)
            let baseRTT = r.uniform(m.wifiBaseRTTRangeMilliseconds.lowerBound, m.wifiBaseRTTRangeMilliseconds.upperBound)
            var variation = AR1(sigma: m.wifiSliceSigma, correlation: m.wifiSliceCorrelation, rng: &r)
            for j in 0..<length {
                let i = start + j
                // Draw for every slice of the encounter, even past the end of the trace, so the numbers of
                // the slices inside do not depend on where the trace is cut.
                let edge = j < m.wifiEdgeSeconds || length - 1 - j < m.wifiEdgeSeconds
                var down = clamp(base * DeterministicMath.exp(variation.next(rng: &r)), m.wifiRangeBytesPerSecond)
                var rtt = baseRTT + r.uniform(0, m.wifiJitterMaxMilliseconds)
                if edge {
                    down *= m.wifiEdgeBandwidthFactor
                    rtt *= m.wifiEdgeRTTFactor
                }
                let spikeDraw = r.unit()
                let spike = r.logNormal(median: m.wifiSpikeMedianMilliseconds, sigma: m.wifiSpikeSigma)
                let stallDraw = r.unit()
                let stall = r.uniform(m.wifiStallRangeMilliseconds.lowerBound, m.wifiStallRangeMilliseconds.upperBound)
                if stallDraw < m.wifiStallProbability {
                    rtt = stall
                } else if spikeDraw < (edge ? m.wifiEdgeSpikeProbability : m.wifiSpikeProbability) {
                    rtt = max(rtt, clamp(spike, m.wifiSpikeRangeMilliseconds))
                }
                guard i < count else { continue }
                let downRounded = max(1, down.rounded())
                out[i] = LinkConditions(downBytesPerSecond: downRounded,
                                        upBytesPerSecond: max(1, (down * upFraction).rounded()),
                                        rttMilliseconds: rtt.rounded())
            }
        }
        return out
    }

    private static func cellularConditions(_ m: VehicularModel, seed: UInt64, count: Int) -> [LinkConditions] {
        var r = rng(seed, .cellular)
        var downVar = AR1(sigma: m.cellSigma, correlation: m.cellCorrelation, rng: &r)
        var upVar = AR1(sigma: m.cellSigma, correlation: m.cellCorrelation, rng: &r)
        var rttVar = AR1(sigma: m.cellRTTExcessSigma, correlation: m.cellRTTCorrelation, rng: &r)
        var out: [LinkConditions] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let down = clamp(m.cellDownMedianBytesPerSecond * DeterministicMath.exp(downVar.next(rng: &r)), m.cellDownRangeBytesPerSecond)
            let up = clamp(m.cellUpMedianBytesPerSecond * DeterministicMath.exp(upVar.next(rng: &r)), m.cellUpRangeBytesPerSecond)
            var rtt = m.cellRTTFloorMilliseconds + m.cellRTTExcessMedianMilliseconds * DeterministicMath.exp(rttVar.next(rng: &r))
            let spikeDraw = r.unit()
            let spike = r.uniform(m.cellSpikeRangeMilliseconds.lowerBound, m.cellSpikeRangeMilliseconds.upperBound)
            if spikeDraw < m.cellSpikeProbability { rtt = max(rtt, spike) }
            out.append(LinkConditions(downBytesPerSecond: down.rounded(), upBytesPerSecond: up.rounded(),
                                      rttMilliseconds: min(rtt, TraceLimits.maxRTTMilliseconds).rounded()))
        }
        return out
    }

    private static func clamp(_ v: Double, _ range: ClosedRange<Double>) -> Double {
        min(max(v, range.lowerBound), range.upperBound)
    }
}

/// Stationary first-order autoregressive process: x' = c x + sqrt(1 - c^2) sigma z, so every x is
/// normal with standard deviation `sigma` and neighbouring values are correlated by `c`.
struct AR1 {
    let sigma: Double
    let correlation: Double
    private var x: Double

    init(sigma: Double, correlation: Double, rng: inout DeterministicRNG) {
        self.sigma = sigma
        self.correlation = correlation
        x = sigma * rng.normal()
    }

    mutating func next(rng: inout DeterministicRNG) -> Double {
        let value = x
        x = correlation * x + (1 - correlation * correlation).squareRoot() * sigma * rng.normal()
        return value
    }
}
