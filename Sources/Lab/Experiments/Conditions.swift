import Emulation

/// Network conditions the experiments share.
enum Conditions {
    static let wifiOff = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)

    /// The original multi-app test's cellular link: 64 KB/s up, 128 KB/s down, 200 ms RTT (3G-like).
    static let cellular = LinkConditions(downBytesPerSecond: 128_000, upBytesPerSecond: 64_000, rttMilliseconds: 200)

    /// Healthy WiFi in the traces' typical range.
    static let wifi = LinkConditions(downBytesPerSecond: 1_250_000, upBytesPerSecond: 625_000, rttMilliseconds: 40)

    /// Cellular only for `seconds` (WiFi out of range throughout).
    static func cellularOnly(seconds: Double) -> Trace {
        var t = Trace.constant(wifi: wifiOff, cellular: cellular, durationSeconds: seconds)
        t.source = "constant cellular-only: 64000 B/s up, 128000 B/s down, 200 ms RTT"
        return t
    }
}

extension Array where Element == Double {
    /// The value below which `p` (0...1) of the sorted samples fall (nearest rank); nil when empty.
    func percentile(_ p: Double) -> Double? {
        guard !isEmpty else { return nil }
        let s = sorted()
        return s[Swift.min(s.count - 1, Swift.max(0, Int((Double(s.count) * p).rounded(.up)) - 1))]
    }
}
