/// Summary statistics of a trace, as `intnw-lab trace show` prints them.
///
/// Everything is weighted by time, not by slice count, so slices of different lengths count for how
/// long they last. Conditions before the first slice's start count as the first slice's (the same rule
/// as `Trace.sliceIndex(at:)`). WiFi bandwidth and RTT percentiles are taken over the time WiFi is
/// available only (an unavailable slice has no meaningful RTT); cellular is always available.
public struct TraceStats: Sendable, Equatable {
    /// count/min/median/max of a set of durations in seconds.
    public struct DurationSummary: Sendable, Equatable {
        public var count: Int
        public var minSeconds: Double
        public var medianSeconds: Double
        public var maxSeconds: Double
    }

    /// Time-weighted 5th, 50th and 95th percentiles, in the unit of the quantity.
    public struct Percentiles: Sendable, Equatable {
        public var p5: Double
        public var p50: Double
        public var p95: Double
    }

    public struct LinkStats: Sendable, Equatable {
        public var name: String
        public var kind: LinkKind
        /// Fraction 0...1 of the trace's duration during which the link is usable.
        public var availableFraction: Double
        /// Lengths of the runs of consecutive available time (WiFi only; `nil` for cellular or when there
        /// are none). Runs cut off by the start or end of the trace are included as they are.
        public var encounters: DurationSummary?
        /// Lengths of the runs of unavailable time (WiFi only; `nil` for cellular or when there are none).
        public var disconnections: DurationSummary?
        /// Downlink bandwidth, bytes per second, while available (`nil` if never available).
        public var downBytesPerSecond: Percentiles?
        /// Uplink bandwidth, bytes per second, while available.
        public var upBytesPerSecond: Percentiles?
        /// Round-trip time, milliseconds, while available.
        public var rttMilliseconds: Percentiles?
        /// Time-weighted mean loss fraction 0...1 while available.
        public var meanLossFraction: Double
    }

    public var durationSeconds: Double
    public var sliceCount: Int
    public var links: [LinkStats]

    public init(trace: Trace) {
        durationSeconds = trace.durationSeconds
        sliceCount = trace.slices.count
        // Slice i lasts from its start (0 for the first) to the next start (or the trace's end).
        let weights: [Double] = trace.slices.indices.map { i in
            trace.endSeconds(ofSlice: i) - (i == 0 ? 0 : trace.slices[i].startSeconds)
        }
        let total = weights.reduce(0, +)
        links = trace.links.indices.map { k in
            let kind = trace.kind(ofLink: k)
            var availableTime = 0.0
            var down: [(value: Double, weight: Double)] = [], up = down, rtt = down
            var lossTime = 0.0
            var encounterRuns: [Double] = [], disconnectionRuns: [Double] = []
            var run = 0.0
            var runAvailable: Bool?
            for (i, slice) in trace.slices.enumerated() {
                let available = trace.isAvailable(link: k, in: slice)
                let w = weights[i]
                if available {
                    let c = slice.conditions[k]
                    availableTime += w
                    down.append((c.downBytesPerSecond, w))
                    up.append((c.upBytesPerSecond, w))
                    rtt.append((c.rttMilliseconds, w))
                    lossTime += c.lossFraction * w
                }
                if runAvailable == available {
                    run += w
                } else {
                    if let was = runAvailable { was ? encounterRuns.append(run) : disconnectionRuns.append(run) }
                    runAvailable = available
                    run = w
                }
            }
            if let was = runAvailable { was ? encounterRuns.append(run) : disconnectionRuns.append(run) }
            let wifi = kind == .wifi
            return LinkStats(
                name: trace.links[k], kind: kind,
                availableFraction: total > 0 ? availableTime / total : 0,
                encounters: wifi ? Self.summary(encounterRuns) : nil,
                disconnections: wifi ? Self.summary(disconnectionRuns) : nil,
                downBytesPerSecond: Self.percentiles(down),
                upBytesPerSecond: Self.percentiles(up),
                rttMilliseconds: Self.percentiles(rtt),
                meanLossFraction: availableTime > 0 ? lossTime / availableTime : 0)
        }
    }

    static func summary(_ durations: [Double]) -> DurationSummary? {
        guard !durations.isEmpty else { return nil }
        let sorted = durations.sorted()
        let mid = sorted.count / 2
        let median = sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
        return DurationSummary(count: sorted.count, minSeconds: sorted[0], medianSeconds: median, maxSeconds: sorted[sorted.count - 1])
    }

    /// Time-weighted percentiles: the smallest value at or below which at least p of the time is spent.
    /// (Written out rather than using HdrHistogram: the weights are durations, not sample counts, and
    /// a trace has at most a few million slices.)
    static func percentiles(_ samples: [(value: Double, weight: Double)]) -> Percentiles? {
        let sorted = samples.filter { $0.weight > 0 }.sorted { $0.value < $1.value }
        let total = sorted.reduce(0) { $0 + $1.weight }
        guard total > 0 else { return nil }
        func at(_ p: Double) -> Double {
            var cumulative = 0.0
            for s in sorted {
                cumulative += s.weight
                if cumulative >= p * total { return s.value }
            }
            return sorted[sorted.count - 1].value
        }
        return Percentiles(p5: at(0.05), p50: at(0.50), p95: at(0.95))
    }

    /// The statistics as a readable table; `name` is how the trace is called in the first line.
    public func render(name: String) -> String {
        var out = "trace \(name)\n"
        out += "duration \(fmt(durationSeconds)) s, \(sliceCount) slice\(sliceCount == 1 ? "" : "s")\n"
        for link in links {
            if link.kind == .wifi {
                out += "\(link.name): available \(fmt(link.availableFraction * 100, digits: 1, fixed: true))% of the time\n"
                out += "  encounters     \(describe(link.encounters))\n"
                out += "  disconnections \(describe(link.disconnections))\n"
            } else {
                out += "\(link.name): always available (cellular)\n"
            }
            if link.meanLossFraction > 0 {
                out += "  mean loss \(fmt(link.meanLossFraction * 100, digits: 2, fixed: true))% while available\n"
            }
        }
        out += "\npercentiles over time (WiFi: while available); bandwidth in bytes/s, RTT in ms\n"
        let header = ["link", "quantity", "p5", "p50", "p95"]
        var rows: [[String]] = []
        for link in links {
            let entries: [(String, Percentiles?)] = [("down B/s", link.downBytesPerSecond),
                                                     ("up B/s", link.upBytesPerSecond),
                                                     ("rtt ms", link.rttMilliseconds)]
            for (quantity, p) in entries {
                if let p {
                    rows.append([link.name, quantity, fmt(p.p5), fmt(p.p50), fmt(p.p95)])
                } else {
                    rows.append([link.name, quantity, "-", "-", "-"])
                }
            }
        }
        var widths = header.map(\.count)
        for row in rows { for (i, f) in row.enumerated() { widths[i] = max(widths[i], f.count) } }
        func line(_ fields: [String]) -> String {
            fields.enumerated().map { i, f in
                let pad = String(repeating: " ", count: widths[i] - f.count)
                return i < 2 ? f + pad : pad + f  // names left, numbers right
            }.joined(separator: "  ")
        }
        out += line(header) + "\n"
        for row in rows { out += line(row) + "\n" }
        return out
    }

    private func describe(_ s: DurationSummary?) -> String {
        guard let s else { return "none" }
        return "\(s.count), min \(fmt(s.minSeconds)) s, median \(fmt(s.medianSeconds)) s, max \(fmt(s.maxSeconds)) s"
    }

    /// Fixed-point text without Foundation: rounded to `digits` decimals; integers without decimals
    /// unless `fixed`.
    private func fmt(_ v: Double, digits: Int = 1, fixed: Bool = false) -> String {
        if !fixed, v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (v * scale).rounded()
        guard abs(scaled) < 9e15 else { return "\(v)" }
        let n = Int64(scaled)
        let whole = n / Int64(scale), frac = abs(n % Int64(scale))
        var fracText = String(frac)
        while fracText.count < digits { fracText = "0" + fracText }
        let sign = (n < 0 && whole == 0) ? "-" : ""
        return "\(sign)\(whole).\(fracText)"
    }
}
