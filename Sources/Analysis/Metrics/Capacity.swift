import Foundation

/// The emulated links' capacity over time, as the trial's trace scheduled it (the harness writes it
/// as `oracle.txt` next to `replay-start.json`), placed on the captures' clock.
public struct CapacitySchedule: Sendable, Equatable {
    public struct Slice: Sendable, Equatable {
        /// Seconds since the replay start.
        public var startSeconds: Double
        public var upBytesPerSecond: Double
        public var downBytesPerSecond: Double
        public var rttMilliseconds: Double
        public var available: Bool
        public init(startSeconds: Double, upBytesPerSecond: Double, downBytesPerSecond: Double, rttMilliseconds: Double, available: Bool) {
            self.startSeconds = startSeconds
            self.upBytesPerSecond = upBytesPerSecond
            self.downBytesPerSecond = downBytesPerSecond
            self.rttMilliseconds = rttMilliseconds
            self.available = available
        }
    }

    /// Replay start on CLOCK_REALTIME (the pcap clock), ns since the epoch.
    public var startRealtimeNanoseconds: UInt64
    /// Slices per interface name, in time order.
    public var links: [String: [Slice]]

    /// Tolerance of the capacity check per bin: one full-size packet straddling a bin edge plus
    /// 10 ms at the link's rate (capture timestamp jitter on a loaded machine).
    public static let tolerancePacketBytes = 1500.0
    public static let toleranceSeconds = 0.010

    public init(startRealtimeNanoseconds: UInt64, links: [String: [Slice]]) {
        self.startRealtimeNanoseconds = startRealtimeNanoseconds
        self.links = links
    }

    /// Reads `oracle.txt` and `replay-start.json` from a run directory; nil when either is absent or
    /// unreadable (older runs).
    public static func load(runDirectory dir: String) -> CapacitySchedule? {
        guard let text = try? String(contentsOfFile: (dir as NSString).appendingPathComponent("oracle.txt"), encoding: .utf8),
              let data = FileManager.default.contents(atPath: (dir as NSString).appendingPathComponent("replay-start.json")),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let real = (obj["realtimeNs"] as? NSNumber)?.uint64Value else { return nil }
        var links: [String: [Slice]] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 7, f[0] == "link", let s = Double(f[2]), let up = Double(f[3]), let down = Double(f[4]),
                  let rtt = Double(f[5]) else { continue }
            links[String(f[1]), default: []].append(Slice(startSeconds: s, upBytesPerSecond: up, downBytesPerSecond: down,
                                                           rttMilliseconds: rtt, available: f[6] == "1"))
        }
        for k in links.keys { links[k]!.sort { $0.startSeconds < $1.startSeconds } }
        return links.isEmpty ? nil : CapacitySchedule(startRealtimeNanoseconds: real, links: links)
    }

    /// Bytes the link could carry in one direction between two trace times (seconds since replay start).
    func integral(_ slices: [Slice], uplink: Bool, from a: Double, to b: Double) -> Double {
        var total = 0.0
        for (i, s) in slices.enumerated() {
            let lo = max(a, i == 0 ? -Double.infinity : s.startSeconds)
            let hi = min(b, i + 1 < slices.count ? slices[i + 1].startSeconds : Double.infinity)
            guard hi > lo, s.available else { continue }
            total += (hi - lo) * (uplink ? s.upBytesPerSecond : s.downBytesPerSecond)
        }
        return total
    }

    /// The most bytes a bin [from, to) (capture clock, ns since the epoch) may hold after crossing
    /// `interface`'s bottleneck in one direction: the link's capacity over the bin, or over the bin
    /// shifted back by the one-way delay (bytes leave the rate stage one delay before they arrive),
    /// whichever is larger, plus the stated tolerance. nil when the link is unknown.
    public func allowedBytes(interface: String, uplink: Bool, fromNanoseconds: UInt64, toNanoseconds: UInt64) -> Double? {
        guard let slices = links[interface], !slices.isEmpty else { return nil }
        let a = Double(Int64(bitPattern: fromNanoseconds &- startRealtimeNanoseconds)) / 1e9
        let b = Double(Int64(bitPattern: toNanoseconds &- startRealtimeNanoseconds)) / 1e9
        let current = slices.last(where: { $0.startSeconds <= a }) ?? slices[0]
        let delay = current.rttMilliseconds / 2000
        let cap = max(integral(slices, uplink: uplink, from: a, to: b), integral(slices, uplink: uplink, from: a - delay, to: b - delay))
        let rate = current.available ? (uplink ? current.upBytesPerSecond : current.downBytesPerSecond) : 0
        return cap + Self.tolerancePacketBytes + Self.toleranceSeconds * rate
    }

    /// One line per 1 s bin in which `bins` (fine bins of `binWidth` ns from `origin`) hold more than
    /// `allowedBytes`; `what` names the series.
    public func check(what: String, interface: String, uplink: Bool, bins: [UInt64], origin: UInt64, binWidth: UInt64) -> [String] {
        let per = max(1, Int(1_000_000_000 / max(binWidth, 1)))
        var out: [String] = []
        var i = 0
        while i < bins.count {
            let bytes = bins[i ..< min(bins.count, i + per)].reduce(0, +)
            let from = origin + UInt64(i) * binWidth, to = from + UInt64(per) * binWidth
            if bytes > 0, let allowed = allowedBytes(interface: interface, uplink: uplink, fromNanoseconds: from, toNanoseconds: to),
               Double(bytes) > allowed {
                out.append("capacity exceeded: \(what) \(uplink ? "uplink" : "downlink") on \(interface), 1 s bin from \(Double(i) * Double(binWidth) / 1e9) s: \(bytes) B > \(Int(allowed)) B (the trace's capacity plus tolerance)")
            }
            i += per
        }
        return out
    }
}
