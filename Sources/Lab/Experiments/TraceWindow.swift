import Analysis

/// The part of a trial's bytes that crossed the capture inside the trace's window, trace seconds
/// [0, duration): what a share of the trace's capacity over those seconds may count. The capture
/// runs from before the replay starts until the testbed is torn down, and BG apps send until they
/// are stopped, so whole-capture totals count bytes the window's capacity never carried (1-6% of a
/// vehicular bgpolicy trial's client bytes came after its 45 s).
enum TraceWindow {
    /// Bytes of `series` (bins from the capture's origin `originNs`, ns since the epoch) whose bin
    /// middle falls in trace seconds [0, `seconds`), trace time 0 being `replayStartRealtimeNs`.
    static func bytes(_ series: ThroughputSeries, originNs: UInt64, replayStartRealtimeNs: UInt64, seconds: Double) -> UInt64 {
        var total: UInt64 = 0
        for (k, b) in series.bytesPerBin.enumerated() where b > 0 {
            let at = traceSeconds(bin: k, of: series, originNs: originNs, replayStartRealtimeNs: replayStartRealtimeNs)
            if at >= 0 && at < seconds { total += b }
        }
        return total
    }

    /// The middle of bin `k` of `series`, in trace seconds.
    static func traceSeconds(bin k: Int, of series: ThroughputSeries, originNs: UInt64, replayStartRealtimeNs: UInt64) -> Double {
        (Double(originNs) + (Double(k) + 0.5) * Double(series.binWidthNanoseconds) - Double(replayStartRealtimeNs)) / 1e9
    }

    /// Trial `o`'s BG rate in `direction`, bytes per second of its trace window: `totalBytes` (the
    /// client's TCP payload that way over the whole capture) less `fgBytes` (the FG app's), both
    /// cut to the window (`client`); the whole capture where the trial has no replay record.
    static func backgroundRate(_ o: TrialOutcome, direction: String, totalBytes: UInt64, fgBytes: UInt64) -> Double {
        let window = client(o, direction: direction)
        let bg = Double(totalBytes) * (window?.share ?? 1) - (window?.fgBytes ?? Double(fgBytes))
        return max(0, bg) / o.plan.durationSeconds
    }

    /// For trial `o`: of the client's TCP payload in `direction` ("uplink" or "downlink") on its
    /// interfaces, the share inside the window, and the FG app's bytes inside it (nil: no analysis,
    /// no replay record, or no client bytes at all).
    static func client(_ o: TrialOutcome, direction: String) -> (share: Double, fgBytes: Double)? {
        guard let a = o.analysis, let start = try? ReplayStartRecord.read(from: o.directory) else { return nil }
        let origin = a.result.originNanoseconds
        let interfaces = Set(a.result.interfaces.filter { $0.side == "client" }.map(\.interface))
        var inside: UInt64 = 0, all: UInt64 = 0
        for s in a.series where s.kind == .interface && s.direction == direction && interfaces.contains(s.name) {
            inside += bytes(s, originNs: origin, replayStartRealtimeNs: start.realtimeNs, seconds: o.plan.durationSeconds)
            all += s.bytesPerBin.reduce(0, +)
        }
        guard all > 0 else { return nil }
        let fg = a.series.first { $0.kind == .app && $0.name == "fg" && $0.direction == direction }
            .map { bytes($0, originNs: origin, replayStartRealtimeNs: start.realtimeNs, seconds: o.plan.durationSeconds) } ?? 0
        return (Double(inside) / Double(all), Double(fg))
    }
}
