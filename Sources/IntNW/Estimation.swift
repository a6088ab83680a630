/// Passive per-network bandwidth and RTT estimation, the numbers the schedulers choose by.
import CShims

/// Where an estimate came from.
public enum EstimateSource: String, Sendable {
    /// Nothing measured yet: a prior for the network kind.
    case prior
    /// Measured passively from IROB ACK timing and TCP_INFO.
    case measured
    /// Set by the application ("oracle" mode, for comparison experiments).
    case oracle
}

/// One network's current estimates.
public struct NetworkEstimate: Sendable, Equatable {
    public var rttMilliseconds: Double
    public var bandwidthBytesPerSecond: Double
    public var source: EstimateSource
    public init(rttMilliseconds: Double, bandwidthBytesPerSecond: Double, source: EstimateSource) {
        self.rttMilliseconds = rttMilliseconds
        self.bandwidthBytesPerSecond = bandwidthBytesPerSecond
        self.source = source
    }

    /// Starting points before any measurement (typical WiFi hotspot vs 3G, per the scenario).
    public static func prior(for kind: NetworkKind) -> NetworkEstimate {
        switch kind {
        case .wifi: NetworkEstimate(rttMilliseconds: 50, bandwidthBytesPerSecond: 1_000_000, source: .prior)
        case .cellular: NetworkEstimate(rttMilliseconds: 200, bandwidthBytesPerSecond: 50_000, source: .prior)
        case .wired: NetworkEstimate(rttMilliseconds: 10, bandwidthBytesPerSecond: 10_000_000, source: .prior)
        case .other: NetworkEstimate(rttMilliseconds: 100, bandwidthBytesPerSecond: 500_000, source: .prior)
        }
    }
}

/// EWMA estimator fed by IROB ACK samples and TCP_INFO snapshots.
///
/// An IROB ACK sample measures `ackArrival - firstByteSent - receiverHold`, which is one RTT plus
/// the time to push the IROB through the bottleneck (plus queueing). Small IROBs therefore sample
/// RTT; large ones, after subtracting the path's minimum RTT, sample bandwidth. TCP_INFO adds the
/// kernel's minimum RTT and, when the sender was not application-limited, its delivery rate.
///
/// A kernel delivery-rate sample counts only up to the rate the connection's acknowledged bytes
/// grew at over the last window of at least two minimum RTTs (300 ms at least): a single
/// delivery-rate sample reads above the link when ACKs arrive bunched (a loaded shaper, delayed
/// ACKs), the window's rate cannot.
///
/// A bandwidth sample must never read above the link: it counts only the bytes that surely had to
/// cross the bottleneck after the IROB's first byte was queued (the IROB and the bytes not yet sent
/// ahead of it; bytes already in flight may be past the bottleneck), and it subtracts the minimum
/// RTT, not the smoothed one (which swells with the very queue the sample measures: subtracting it
/// read 138-175 kB/s on a 64 kB/s link).
struct NetworkEstimator {
    private(set) var estimate: NetworkEstimate
    private var rttSamples = 0
    private var bwSamples = 0
    /// The smallest RTT seen on this network (kernel minimum RTTs and clean IROB samples), ms.
    private(set) var minimumRTTMilliseconds: Double?
    /// The acknowledged-bytes window of the connection last seen (`addTCPInfo`).
    private var ackWindow: (connection: Int32, startNs: UInt64, startAcked: UInt64)?
    var oracle: NetworkEstimate?
    /// EWMA gain for new samples.
    let gain = 0.25

    init(kind: NetworkKind) { estimate = .prior(for: kind) }

    var current: NetworkEstimate { oracle ?? estimate }

    mutating func addRTT(ms: Double) {
        guard ms.isFinite, ms > 0 else { return }
        noteMinimumRTT(ms: ms)
        estimate.rttMilliseconds = rttSamples == 0 ? ms : estimate.rttMilliseconds * (1 - gain) + ms * gain
        rttSamples += 1
        estimate.source = .measured
    }

    mutating func addBandwidth(bytesPerSecond: Double) {
        guard bytesPerSecond.isFinite, bytesPerSecond > 0 else { return }
        estimate.bandwidthBytesPerSecond = bwSamples == 0
            ? bytesPerSecond : estimate.bandwidthBytesPerSecond * (1 - gain) + bytesPerSecond * gain
        bwSamples += 1
        estimate.source = .measured
    }

    private mutating func noteMinimumRTT(ms: Double) {
        guard ms.isFinite, ms > 0 else { return }
        minimumRTTMilliseconds = min(minimumRTTMilliseconds ?? ms, ms)
    }

    /// An IROB of `bytes`, sent behind `queuedAheadBytes` not yet sent on the connection (user
    /// space and the kernel's unsent bytes), took `elapsedNs` from its first byte being queued to
    /// its ACK, less the receiver's hold. That is at least the minimum RTT plus the time to push
    /// `bytes + queuedAheadBytes` through the bottleneck. Its bytes were handed to the connection
    /// over `sendSpanNs` (first to last chunk).
    mutating func addIROBSample(bytes: Int, queuedAheadBytes: Int = 0, elapsedNs: UInt64, sendSpanNs: UInt64 = 0) {
        let elapsedMs = Double(elapsedNs) / 1e6
        guard elapsedMs > 0 else { return }
        let total = Double(bytes + queuedAheadBytes)
        // The propagation part of the elapsed time: the path's minimum RTT once known.
        let rtt = minimumRTTMilliseconds.map { min($0, estimate.rttMilliseconds) } ?? estimate.rttMilliseconds
        let bw = estimate.bandwidthBytesPerSecond
        if total <= 4_096 {
            // Latency-bound: subtract the (small) serialization time at the current bandwidth.
            let rttSample = elapsedMs - total / bw * 1e3
            if rttSample > elapsedMs * 0.25 { addRTT(ms: rttSample) }
        } else if total >= 16_384, elapsedMs > rtt * 1.5, sendSpanNs <= elapsedNs / 2 {
            // An IROB the sender handed over in pieces over most of that time (a background
            // policy holding it back) measures the sender, not the link.
            addBandwidth(bytesPerSecond: total / ((elapsedMs - rtt) / 1e3))
        }
    }

    /// Kernel view of `connection` at `nowNs`: min RTT is a clean RTT floor; delivery rate counts
    /// only when not app-limited, and at most at the rate bytes were acknowledged over the window
    /// that ends now (no window ends now: no sample).
    mutating func addTCPInfo(_ info: cshims_tcp_info, connection: Int32, nowNs: UInt64) {
        let kernelMinimum = info.tcpi_min_rtt > 0 && info.tcpi_min_rtt != UInt32.max ? Double(info.tcpi_min_rtt) / 1000 : nil
        if let kernelMinimum { noteMinimumRTT(ms: kernelMinimum) }
        if info.tcpi_rtt > 0 {
            // Smoothed RTT swells under queueing; blend towards min_rtt when it is known.
            let srtt = Double(info.tcpi_rtt) / 1000
            addRTT(ms: (srtt + (kernelMinimum ?? srtt)) / 2)
        }
        let windowRate = ackedRate(info, connection: connection, nowNs: nowNs)
        let appLimited = info.tcpi_app_limited_flags & 1 != 0
        if !appLimited, info.tcpi_delivery_rate > 0, let windowRate, windowRate > 0 {
            addBandwidth(bytesPerSecond: min(Double(info.tcpi_delivery_rate), windowRate))
        }
    }

    /// The rate `connection`'s acknowledged bytes grew at over the window ending at `nowNs`, when
    /// one of at least `max(2 x minimum RTT, 300 ms)` (and at most four times that: longer gaps
    /// say nothing about the link's rate) ends there; then a new window starts.
    private mutating func ackedRate(_ info: cshims_tcp_info, connection: Int32, nowNs: UInt64) -> Double? {
        let acked = info.tcpi_bytes_acked
        guard let w = ackWindow, w.connection == connection, nowNs > w.startNs, acked >= w.startAcked else {
            ackWindow = (connection, nowNs, acked)
            return nil
        }
        let minimumNs = LinkRateTracker.windowNs(minRTTNs: UInt64((minimumRTTMilliseconds ?? 0) * 1e6))
        let dt = nowNs - w.startNs
        guard dt >= minimumNs else { return nil }
        ackWindow = (connection, nowNs, acked)
        guard dt <= 4 * minimumNs else { return nil }
        // A window that carried only a few segments measured the sender (acknowledgements, small
        // replies), not the link: a server session sending 40-byte BG acknowledgements read
        // 635 B/s on a 625 KB/s WiFi uplink.
        guard acked - w.startAcked >= LinkRateTracker.minimumWindowBytes else { return nil }
        return Double(acked - w.startAcked) / (Double(dt) / 1e9)
    }
}
