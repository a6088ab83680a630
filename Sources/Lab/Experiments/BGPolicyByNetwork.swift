import Analysis
import Emulation

/// Where BG's share of the capacity went on a trace where WiFi comes and goes. The goal's share
/// counts every link's uplink capacity (cellular's too while WiFi is up), but IntNW sends
/// everything over WiFi while it is there, so a shortfall can come from three places: WiFi not
/// filled while it is up, cellular not filled while it is the only network, or cellular's capacity
/// beside WiFi, which the design leaves unused. This splits the client's uplink bytes by interface
/// and trace second to tell them apart. A report, not a verdict: it changes no bound.
extension BGPolicyExperiment {
    struct NetworkShares: Equatable {
        /// Seconds of the run with WiFi up, and with cellular alone.
        var wifiSeconds: Double
        var cellularAloneSeconds: Double
        /// Client uplink bytes on WiFi while WiFi was up, over WiFi's uplink capacity then (nil:
        /// WiFi never up).
        var wifiShare: Double?
        /// Client uplink bytes on cellular while it was the only network, over its capacity then
        /// (nil: WiFi always up).
        var cellularAloneShare: Double?
        /// Cellular's uplink capacity while WiFi was up, as a share of all the capacity counted.
        var cellularBesideWiFi: Double
        /// All the client's uplink bytes over all the capacity counted (the parts' check).
        var whole: Double
    }

    /// The shares for `trace` over its first `seconds`, from the client's uplink bytes per whole
    /// trace second on each trace link (`bytes[link][second]`, link indices as in `trace.links`).
    /// Nil when the run had no WiFi or no capacity.
    static func networkShares(trace: Trace, seconds: Double, bytes: [[Double]]) -> NetworkShares? {
        guard let wifi = trace.links.indices.first(where: { trace.kind(ofLink: $0) == .wifi }),
              let cell = trace.links.indices.first(where: { trace.kind(ofLink: $0) == .cellular }) else { return nil }
        var wifiSeconds = 0.0, aloneSeconds = 0.0
        var wifiCapacity = 0.0, aloneCapacity = 0.0, besideCapacity = 0.0
        var wifiBytes = 0.0, aloneBytes = 0.0, allBytes = 0.0
        for t in 0 ..< Int(seconds.rounded(.down)) {
            let slice = trace.slices[trace.sliceIndex(at: Double(t) + 0.5)]
            let onWiFi = bytes.indices.contains(wifi) && bytes[wifi].indices.contains(t) ? bytes[wifi][t] : 0
            let onCell = bytes.indices.contains(cell) && bytes[cell].indices.contains(t) ? bytes[cell][t] : 0
            allBytes += onWiFi + onCell
            if trace.isAvailable(link: wifi, in: slice) {
                wifiSeconds += 1
                wifiCapacity += slice.conditions[wifi].upBytesPerSecond
                besideCapacity += slice.conditions[cell].upBytesPerSecond
                wifiBytes += onWiFi
            } else {
                aloneSeconds += 1
                aloneCapacity += slice.conditions[cell].upBytesPerSecond
                aloneBytes += onCell
            }
        }
        let total = wifiCapacity + aloneCapacity + besideCapacity
        guard wifiSeconds > 0, total > 0 else { return nil }
        return NetworkShares(wifiSeconds: wifiSeconds, cellularAloneSeconds: aloneSeconds,
                             wifiShare: wifiCapacity > 0 ? wifiBytes / wifiCapacity : nil,
                             cellularAloneShare: aloneCapacity > 0 ? aloneBytes / aloneCapacity : nil,
                             cellularBesideWiFi: besideCapacity / total, whole: allBytes / total)
    }

    /// The client's uplink TCP payload per whole trace second on each link of `o`'s trace (its
    /// interface series from the capture, placed on trace time by the replay's start), the mean
    /// over the trials of `variant` that have both; nil when none has.
    static func uplinkBytesBySecond(_ outcomes: [TrialOutcome], variant: String) -> (trace: Trace, seconds: Double, bytes: [[Double]])? {
        var sum: [[Double]]?
        var ran: (Trace, Double)?
        var trials = 0.0
        for o in outcomes where o.plan.variant == variant {
            guard let a = o.analysis, let start = try? ReplayStartRecord.read(from: o.directory) else { continue }
            let trace = o.plan.trace
            let spec = TopologySpec(prefix: o.plan.prefix)
            let n = Int(o.plan.durationSeconds.rounded(.up))
            var bytes = [[Double]](repeating: [Double](repeating: 0, count: n), count: trace.links.count)
            for (i, name) in trace.links.enumerated() {
                guard let interface = spec.link(named: name)?.interface,
                      let series = a.series.first(where: { $0.kind == .interface && $0.name == interface && $0.direction == "uplink" })
                else { continue }
                for (k, b) in series.bytesPerBin.enumerated() where b > 0 {
                    let at = TraceWindow.traceSeconds(bin: k, of: series, originNs: a.result.originNanoseconds,
                                                      replayStartRealtimeNs: start.realtimeNs)
                    guard at >= 0, Int(at) < n else { continue }
                    bytes[i][Int(at)] += Double(b)
                }
            }
            trials += 1
            if let s = sum {
                sum = zip(s, bytes).map { zip($0, $1).map(+) }
            } else {
                sum = bytes
                ran = (trace, o.plan.durationSeconds)
            }
        }
        guard let sum, let ran else { return nil }
        return (ran.0, ran.1, sum.map { $0.map { $0 / trials } })
    }

    /// The by-network line of `variant` (pooled over its trials), or nil on a run without WiFi.
    static func networkLine(_ outcomes: [TrialOutcome], variant: String) -> String? {
        guard let r = uplinkBytesBySecond(outcomes, variant: variant),
              let s = networkShares(trace: r.trace, seconds: r.seconds, bytes: r.bytes), s.cellularAloneSeconds > 0 else { return nil }
        func pct(_ v: Double?) -> String { v.map { String(format: "%.0f%%", $0 * 100) } ?? "-" }
        return "\(variant) by network (client uplink TCP payload by trace second, FG's few bytes included, mean of trials): "
            + "WiFi up \(Int(s.wifiSeconds)) s: WiFi carried \(pct(s.wifiShare)) of its capacity; "
            + "cellular alone \(Int(s.cellularAloneSeconds)) s: cellular carried \(pct(s.cellularAloneShare)) of its; "
            + "cellular beside WiFi, which IntNW leaves unused by design: \(pct(s.cellularBesideWiFi)) of all the capacity counted; "
            + "all bytes over all capacity: \(pct(s.whole))"
    }
}
