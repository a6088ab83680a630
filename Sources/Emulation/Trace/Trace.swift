/// Network conditions of one link during one trace slice.
///
/// Bandwidths are in bytes per second (the original IntNW replay's unit), RTT in milliseconds,
/// loss as a fraction 0...1 applied independently to each direction.
public struct LinkConditions: Sendable, Equatable, Codable {
    /// Server-to-client bandwidth, bytes per second. 0 on WiFi means "out of range".
    public var downBytesPerSecond: Double
    /// Client-to-server bandwidth, bytes per second.
    public var upBytesPerSecond: Double
    /// Round-trip time in milliseconds, split evenly between the two directions.
    public var rttMilliseconds: Double
    /// Packet loss fraction (0...1) per direction.
    public var lossFraction: Double

    public init(downBytesPerSecond: Double, upBytesPerSecond: Double, rttMilliseconds: Double, lossFraction: Double = 0) {
        self.downBytesPerSecond = downBytesPerSecond
        self.upBytesPerSecond = upBytesPerSecond
        self.rttMilliseconds = rttMilliseconds
        self.lossFraction = lossFraction
    }

    /// A link with zero bandwidth in either direction carries nothing (for WiFi: the car is out of range).
    public var hasBandwidth: Bool { downBytesPerSecond > 0 && upBytesPerSecond > 0 }

    /// One-way propagation delay in microseconds (half the RTT).
    public var oneWayDelayMicroseconds: Double { rttMilliseconds * 500 }
}

/// The role a trace link plays. WiFi can disappear; cellular is always present (0 means very slow).
public enum LinkKind: String, Sendable, Codable, CaseIterable {
    case wifi
    case cellular
}

/// One line of a trace: conditions on every link from `startSeconds` until the next slice starts.
public struct TraceSlice: Sendable, Equatable, Codable {
    /// Offset from the start of the trace, seconds.
    public var startSeconds: Double
    /// Conditions per link, in the order of `Trace.links`.
    public var conditions: [LinkConditions]

    public init(startSeconds: Double, conditions: [LinkConditions]) {
        self.startSeconds = startSeconds
        self.conditions = conditions
    }
}

/// A parsed, validated trace (docs/testbed.md, Traces).
public struct Trace: Sendable, Equatable, Codable {
    /// Link names in column order; the default two-link format is `["wifi", "cellular"]`.
    public var links: [String]
    public var slices: [TraceSlice]
    /// Total length in seconds: the last slice ends here.
    public var durationSeconds: Double
    /// Where the trace came from (file path or a description), for logs and run records.
    public var source: String

    public init(links: [String] = ["wifi", "cellular"], slices: [TraceSlice], durationSeconds: Double, source: String) {
        self.links = links
        self.slices = slices
        self.durationSeconds = durationSeconds
        self.source = source
    }

    /// Kind of the link at `index`: a link whose name starts with "wifi" is WiFi, anything else cellular.
    public func kind(ofLink index: Int) -> LinkKind {
        links[index].hasPrefix("wifi") ? .wifi : .cellular
    }

    /// Whether the link at `index` is usable in `slice` (cellular always is; WiFi needs bandwidth).
    public func isAvailable(link index: Int, in slice: TraceSlice) -> Bool {
        kind(ofLink: index) == .cellular || slice.conditions[index].hasBandwidth
    }

    /// End time of slice `i`, seconds.
    public func endSeconds(ofSlice i: Int) -> Double {
        i + 1 < slices.count ? slices[i + 1].startSeconds : durationSeconds
    }

    /// Index of the slice in force at `seconds` (clamped to the first/last slice).
    public func sliceIndex(at seconds: Double) -> Int {
        var lo = 0, hi = slices.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if slices[mid].startSeconds <= seconds { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// A trace with constant conditions, handy for tests and lab runs.
    public static func constant(wifi: LinkConditions?, cellular: LinkConditions, durationSeconds: Double) -> Trace {
        let off = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)
        return Trace(slices: [TraceSlice(startSeconds: 0, conditions: [wifi ?? off, cellular])],
                     durationSeconds: durationSeconds, source: "constant")
    }
}
