/// The trouble detector of docs/trouble-detection.md ("the note" below): a network is troubled when a connection with
/// foreground data outstanding has unACKed segments and has received no ACK for longer than
/// `ack_timeout = max(floor, multiplier × max(delayed-ACK bound, RTT))`, RTT being IntNW's own
/// estimate (the kernel's smoothed RTT swells on stalled and bloated connections).
///
/// RTT here is IntNW's estimate plus `rttVarianceMultiplier` × the kernel's RTT variance: the note
/// suggests incorporating the variance, and on a variable, bloated link (3G, ±50% RTT, another app's
/// bulk upload in the same queue) IntNW's smoothed estimate lags the ACK delays actually seen:
/// measured 10 false declarations a minute with the note's formula alone. While
/// `RTT + k × variance` stays below the delayed-ACK bound (WiFi, 40 ms RTT, variance ~20 ms), the term
/// changes nothing. `rttVarianceMultiplier = 0` is the note's formula verbatim.
///
/// "An ACK" is any segment from the peer: every TCP segment after the handshake carries one, but
/// Linux's receive fast path does not stamp `tcpi_last_ack_recv` for a data segment whose ACK number
/// does not advance. So on a connection that receives bulk data while its own small reply waits for
/// an ACK queued behind that data, `tcpi_last_ack_recv` ages although segments keep arriving; the
/// later of `tcpi_last_ack_recv` and `tcpi_last_data_recv` is the time of the last ACK. (Measured:
/// without this, 3G under bulk upload declared false trouble 1-3 times a minute on the server side.)
import CShims
import Logging

/// Thresholds of `AckTimeoutTroubleDetector`; the defaults are the note's conclusion.
public struct TroubleParameters: Sendable, Equatable, Codable {
    /// Lower bound of the ACK timeout, ms (200: like the kernel's minimum RTO; the note's floor that
    /// removed every spurious marking in working WiFi).
    public var floorMilliseconds: Double
    /// Longest a receiver may hold back an ACK, ms (200: Linux TCP_DELACK_MAX).
    public var delayedAckBoundMilliseconds: Double
    /// The timeout is this many times the larger of the delayed-ACK bound and the RTT (note: 2).
    public var rttMultiplier: Double
    /// The RTT in the formula is IntNW's estimate plus this many times the kernel's RTT variance
    /// (`tcpi_rttvar`); 4, as in TCP's own retransmission timeout (srtt + 4 × rttvar), the bound
    /// beyond which an ACK is unlikely to be merely late; 0 = the note's formula verbatim.
    public var rttVarianceMultiplier: Double
    /// While a network is troubled, how often to look for ACKs flowing again, ms.
    public var recheckMilliseconds: Double

    public init(floorMilliseconds: Double = 200, delayedAckBoundMilliseconds: Double = 200, rttMultiplier: Double = 2,
                rttVarianceMultiplier: Double = 4, recheckMilliseconds: Double = 50) {
        self.floorMilliseconds = floorMilliseconds
        self.delayedAckBoundMilliseconds = delayedAckBoundMilliseconds
        self.rttMultiplier = rttMultiplier
        self.rttVarianceMultiplier = rttVarianceMultiplier
        self.recheckMilliseconds = recheckMilliseconds
    }

    /// `max(floor, multiplier × max(delayed-ACK bound, rtt + varianceMultiplier × rttVariance))`, ms.
    public func ackTimeoutMilliseconds(rttMilliseconds: Double, rttVarianceMilliseconds: Double = 0) -> Double {
        let rtt = rttMilliseconds.isFinite && rttMilliseconds > 0 ? rttMilliseconds : 0
        let v = rttVarianceMilliseconds.isFinite && rttVarianceMilliseconds > 0 ? rttVarianceMilliseconds : 0
        return max(floorMilliseconds, rttMultiplier * max(delayedAckBoundMilliseconds, rtt + rttVarianceMultiplier * v))
    }

    /// Parses `key=value[,key=value...]` with keys floor_ms, delack_ms, multiplier, rttvar_k, recheck_ms.
    public static func parse(_ spec: String, base: TroubleParameters = TroubleParameters()) throws(IntNWError) -> TroubleParameters {
        var p = base
        for item in spec.split(separator: ",") where !item.isEmpty {
            let kv = item.split(separator: "=", omittingEmptySubsequences: false)
            guard kv.count == 2, let v = Double(kv[1]), v.isFinite, v >= 0 else {
                throw .invalidArgument("trouble parameter '\(item)' is not key=non-negative-number")
            }
            switch kv[0] {
            case "floor_ms": p.floorMilliseconds = v
            case "delack_ms": p.delayedAckBoundMilliseconds = v
            case "multiplier": p.rttMultiplier = v
            case "rttvar_k": p.rttVarianceMultiplier = v
            case "recheck_ms":
                guard v >= 1 else { throw .invalidArgument("trouble parameter recheck_ms must be >= 1") }
                p.recheckMilliseconds = v
            default: throw .invalidArgument("unknown trouble parameter '\(kv[0])' (floor_ms, delack_ms, multiplier, rttvar_k, recheck_ms)")
            }
        }
        return p
    }
}

/// One trouble check with its inputs and outcome (logged, counted, and optionally written as a
/// JSON line by `TroubleStatistics`).
public struct TroubleDecision: Sendable, Equatable, Codable {
    public enum Outcome: String, Sendable, Codable {
        /// Not troubled, not stalled.
        case healthy
        /// Stalled beyond the timeout: the network is declared troubled now.
        case declared
        /// Still troubled: no ACK since the declaration.
        case stillTroubled = "still_troubled"
        /// ACKs flow again: the network returns to service.
        case cleared
        /// Checked with no foreground data outstanding and no trouble (nothing to judge).
        case idle
    }
    public var outcome: Outcome
    /// Monotonic ns of the check.
    public var nowNs: UInt64
    public var networkID: UInt32
    public var interfaceName: String
    public var kind: String
    /// Kernel: segments unACKed, ms since the last ACK, the last data received and the last data sent.
    public var unackedPackets: UInt32
    public var lastAckReceivedMilliseconds: UInt32
    public var lastDataReceivedMilliseconds: UInt32
    public var lastDataSentMilliseconds: UInt32
    /// Kernel smoothed RTT (recorded for comparison only) and RTT variance (part of the timeout), ms.
    public var kernelRTTMilliseconds: Double
    public var kernelRTTVarianceMilliseconds: Double
    /// IntNW's RTT estimate for the network and the ACK timeout derived from it, ms.
    public var rttEstimateMilliseconds: Double
    public var ackTimeoutMilliseconds: Double
    /// Time without progress: since the later of the last ACK (or segment) from the peer and the start
    /// of the outstanding foreground data, ms (since the last ACK alone while troubled).
    public var stallMilliseconds: Double
    public var unackedForegroundIROBs: Int
    /// When the next check is due, ms from now.
    public var nextCheckInMilliseconds: Double
}

/// The note's detector. Stateless: what it needs to remember (since when foreground data has been
/// outstanding, since when the network is troubled) travels in the sample.
public struct AckTimeoutTroubleDetector: TroubleDetector {
    public var parameters: TroubleParameters
    /// Counts and keeps the decisions (shared by every session that uses this detector).
    public let statistics: TroubleStatistics
    public var logger: Logger

    /// Extra delay after the computed expiry before checking, so the kernel's millisecond (jiffy)
    /// resolution of `tcpi_last_ack_recv` cannot make the check land just short of it.
    static let slackNs: UInt64 = 2_000_000

    public init(parameters: TroubleParameters = TroubleParameters(), statistics: TroubleStatistics = TroubleStatistics(),
                logger: Logger? = nil) {
        self.parameters = parameters
        self.statistics = statistics
        self.logger = logger ?? {
            var l = Logger(label: "intnw.trouble")
            l.logLevel = .notice
            return l
        }()
    }

    public func evaluate(_ sample: TroubleSample) -> TroubleVerdict {
        let (verdict, decision) = decide(sample)
        statistics.record(decision)
        log(decision)
        return verdict
    }

    /// The verdict and its record, without side effects.
    public func decide(_ s: TroubleSample) -> (TroubleVerdict, TroubleDecision) {
        let now = s.nowNs
        let info = s.tcpInfo
        let rtt = s.network.estimate.rttMilliseconds
        let timeoutMs = parameters.ackTimeoutMilliseconds(rttMilliseconds: rtt,
                                                          rttVarianceMilliseconds: Double(info.tcpi_rttvar) / 1000)
        let timeoutNs = UInt64(timeoutMs * 1e6)
        // Progress evidence: the last segment from the peer (see above) or an IntNW ACK.
        let kernelAck = now &- min(now, UInt64(min(info.tcpi_last_ack_recv, info.tcpi_last_data_recv)) * 1_000_000)
        let lastAck = max(kernelAck, s.lastAckNs)
        let outcome: TroubleDecision.Outcome
        let troubled: Bool
        var next: UInt64
        var stallNs: UInt64
        if s.network.troubled {
            // Back in service once an ACK arrived after the declaration ("when ACKs flow again").
            stallNs = now &- min(now, lastAck)
            if s.troubledSinceNs != 0 && lastAck > s.troubledSinceNs {
                (outcome, troubled) = (.cleared, false)
                next = now + timeoutNs
            } else {
                (outcome, troubled) = (.stillTroubled, true)
                next = now + UInt64(parameters.recheckMilliseconds * 1e6)
            }
        } else if s.foregroundOutstandingSinceNs == 0 {
            stallNs = 0
            (outcome, troubled) = (.idle, false)
            next = now + timeoutNs
        } else {
            // A stall cannot have begun before the data now outstanding was sent.
            let ref = max(lastAck, s.foregroundOutstandingSinceNs)
            stallNs = now &- min(now, ref)
            if info.tcpi_unacked > 0 && stallNs > timeoutNs {
                (outcome, troubled) = (.declared, true)
                next = now + UInt64(parameters.recheckMilliseconds * 1e6)
            } else {
                (outcome, troubled) = (.healthy, false)
                // The earliest moment the timeout could expire: from the last progress if segments are
                // outstanding, otherwise from now (anything sent later expires later still).
                next = (info.tcpi_unacked > 0 ? ref : now) + timeoutNs + Self.slackNs
                if next <= now { next = now + Self.slackNs }
            }
        }
        let d = TroubleDecision(
            outcome: outcome, nowNs: now, networkID: s.network.networkID, interfaceName: s.network.interfaceName,
            kind: "\(s.network.kind)", unackedPackets: info.tcpi_unacked,
            lastAckReceivedMilliseconds: info.tcpi_last_ack_recv, lastDataReceivedMilliseconds: info.tcpi_last_data_recv,
            lastDataSentMilliseconds: info.tcpi_last_data_sent,
            kernelRTTMilliseconds: Double(info.tcpi_rtt) / 1000, kernelRTTVarianceMilliseconds: Double(info.tcpi_rttvar) / 1000,
            rttEstimateMilliseconds: rtt, ackTimeoutMilliseconds: timeoutMs, stallMilliseconds: Double(stallNs) / 1e6,
            unackedForegroundIROBs: s.unackedForegroundIROBs, nextCheckInMilliseconds: Double(next &- now) / 1e6)
        return (TroubleVerdict(troubled: troubled, nextCheckNs: next), d)
    }

    private func log(_ d: TroubleDecision) {
        let level: Logger.Level = d.outcome == .declared || d.outcome == .cleared ? .notice : .debug
        guard logger.logLevel <= level else { return }
        let message: Logger.Message = switch d.outcome {
        case .declared: "network trouble declared"
        case .cleared: "network trouble cleared"
        case .stillTroubled: "network still troubled"
        case .healthy: "network trouble check: healthy"
        case .idle: "network trouble check: idle"
        }
        logger.log(level: level, message, metadata: [
            "interface": "\(d.interfaceName)", "kind": "\(d.kind)",
            "unacked": "\(d.unackedPackets)", "last_ack_ms": "\(d.lastAckReceivedMilliseconds)",
            "last_data_recv_ms": "\(d.lastDataReceivedMilliseconds)",
            "last_data_sent_ms": "\(d.lastDataSentMilliseconds)",
            "stall_ms": "\(Self.fmt(d.stallMilliseconds))", "timeout_ms": "\(Self.fmt(d.ackTimeoutMilliseconds))",
            "rtt_ms": "\(Self.fmt(d.rttEstimateMilliseconds))", "kernel_srtt_ms": "\(Self.fmt(d.kernelRTTMilliseconds))",
            "kernel_rttvar_ms": "\(Self.fmt(d.kernelRTTVarianceMilliseconds))", "fg_irobs": "\(d.unackedForegroundIROBs)",
            "next_check_ms": "\(Self.fmt(d.nextCheckInMilliseconds))",
        ])
    }

    static func fmt(_ x: Double) -> String {
        let r = (x * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }
}
