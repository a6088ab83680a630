/// Counts of trouble decisions, the recent decisions themselves, and an optional JSON-lines record of
/// every one (for experiments: `INTNW_TROUBLE_LOG`). Also where the detection switch is read from the
/// environment (`INTNW_TROUBLE`).
#if canImport(Glibc)
import Glibc
#endif
import CShims
import Logging
import Synchronization

/// Thread-safe counters and history of one detector's decisions (any number of sessions).
public final class TroubleStatistics: Sendable {
    /// Totals since creation.
    public struct Counts: Sendable, Equatable, Codable {
        /// Checks of an untroubled connection with foreground data outstanding (each could have declared).
        public var checks = 0
        /// Networks declared troubled.
        public var declarations = 0
        /// Checks of a troubled connection.
        public var troubledChecks = 0
        /// Troubled networks back in service.
        public var clears = 0
        /// Checks with nothing outstanding.
        public var idleChecks = 0
    }

    private struct State {
        var counts = Counts()
        var recent: [TroubleDecision] = []
        var recentHead = 0
        var sinkFD: Int32 = -1
    }

    private let state: Mutex<State>
    /// How many decisions `recent` keeps (oldest dropped first).
    public let historyLimit: Int

    /// - Parameter jsonLinesPath: file to append one JSON object per decision to (nil: none).
    public init(historyLimit: Int = 4096, jsonLinesPath: String? = nil) {
        self.historyLimit = max(1, historyLimit)
        var s = State()
        if let path = jsonLinesPath {
            s.sinkFD = open(path, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0o644)
        }
        state = Mutex(s)
    }

    deinit {
        state.withLock { if $0.sinkFD >= 0 { close($0.sinkFD) } }
    }

    /// Whether the JSON-lines file could be opened (false also when none was asked for).
    public var isWritingJSONLines: Bool { state.withLock { $0.sinkFD >= 0 } }

    public var counts: Counts { state.withLock { $0.counts } }

    /// The last `historyLimit` decisions, oldest first.
    public var recentDecisions: [TroubleDecision] {
        state.withLock { s in Array(s.recent[s.recentHead...] + s.recent[..<s.recentHead]) }
    }

    func record(_ d: TroubleDecision) {
        let line: [UInt8]? = state.withLock { $0.sinkFD >= 0 } ? Self.jsonLine(d) : nil
        state.withLock { s in
            switch d.outcome {
            case .healthy: s.counts.checks += 1
            case .declared:
                s.counts.checks += 1
                s.counts.declarations += 1
            case .stillTroubled: s.counts.troubledChecks += 1
            case .cleared:
                s.counts.troubledChecks += 1
                s.counts.clears += 1
            case .idle: s.counts.idleChecks += 1
            }
            if s.recent.count < historyLimit {
                s.recent.append(d)
            } else {
                s.recent[s.recentHead] = d
                s.recentHead = (s.recentHead + 1) % historyLimit
            }
            if let line, s.sinkFD >= 0 {
                _ = line.withUnsafeBytes { write(s.sinkFD, $0.baseAddress, $0.count) }
            }
        }
    }

    /// One decision as a JSON line, with wall-clock time (`realtime_ns`) for comparison with captures
    /// and app logs, and the process id. (Hand-written: the library does not pull in Foundation.)
    static func jsonLine(_ d: TroubleDecision) -> [UInt8] {
        // Realtime of the decision: shift the monotonic timestamp by the clocks' current offset.
        let mono = cshims_monotonic_ns(), real = cshims_realtime_ns()
        let realtime = real &- (mono &- min(mono, d.nowNs))
        func num(_ x: Double) -> String { x.isFinite ? AckTimeoutTroubleDetector.fmt(x) : "null" }
        func str(_ s: String) -> String {
            var o = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": o += "\\\""
                case "\\": o += "\\\\"
                case _ where u.value < 0x20: o += "\\u00" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16)
                default: o.unicodeScalars.append(u)
                }
            }
            return o + "\""
        }
        let fields: [(String, String)] = [
            ("type", str("trouble")), ("pid", String(getpid())), ("realtime_ns", String(realtime)),
            ("monotonic_ns", String(d.nowNs)), ("outcome", str(d.outcome.rawValue)),
            ("network_id", String(d.networkID)), ("interface", str(d.interfaceName)), ("kind", str(d.kind)),
            ("unacked", String(d.unackedPackets)), ("last_ack_ms", String(d.lastAckReceivedMilliseconds)),
            ("last_data_recv_ms", String(d.lastDataReceivedMilliseconds)),
            ("last_data_sent_ms", String(d.lastDataSentMilliseconds)),
            ("kernel_srtt_ms", num(d.kernelRTTMilliseconds)), ("kernel_rttvar_ms", num(d.kernelRTTVarianceMilliseconds)),
            ("rtt_ms", num(d.rttEstimateMilliseconds)), ("timeout_ms", num(d.ackTimeoutMilliseconds)),
            ("stall_ms", num(d.stallMilliseconds)), ("fg_irobs", String(d.unackedForegroundIROBs)),
            ("next_check_ms", num(d.nextCheckInMilliseconds)),
        ]
        let line = "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n"
        return Array(line.utf8)
    }
}

/// The detection switch: `INTNW_TROUBLE` (off | on | on,KEY=VALUE,... | KEY=VALUE,...; keys as in
/// `TroubleParameters.parse`) and `INTNW_TROUBLE_LOG` (a JSON-lines file of every decision; `%p` in
/// the path becomes the process id).
public enum TroubleDetection {
    /// What `INTNW_TROUBLE` asks for.
    public enum Setting: Equatable, Sendable {
        case off
        case on(TroubleParameters)
    }

    /// Parses a value of `INTNW_TROUBLE` (empty = on with the defaults).
    public static func parseSetting(_ raw: String) throws(IntNWError) -> Setting {
        let v = String(Substring(raw).trimmingSpaces).lowercased()
        if v == "off" || v == "0" || v == "false" || v == "no" { return .off }
        var rest = Substring(v)
        for prefix in ["on", "1", "true", "yes"] where v == prefix || v.hasPrefix(prefix + ",") {
            rest = v.dropFirst(prefix.count).drop { $0 == "," }
            break
        }
        return .on(try TroubleParameters.parse(String(rest)))
    }

    /// The detector the environment asks for: the note's detector unless `INTNW_TROUBLE=off`. A value
    /// that does not parse is reported on `logger` and the defaults are used.
    public static func fromEnvironment(logger: Logger) -> any TroubleDetector {
        detector(forSetting: getenv("INTNW_TROUBLE").map { String(cString: $0) }, logger: logger)
    }

    /// The detector a value of `INTNW_TROUBLE` asks for (nil: unset, i.e. on with the defaults).
    public static func detector(forSetting raw: String?, logger: Logger) -> any TroubleDetector {
        let setting: Setting
        do {
            setting = try parseSetting(raw ?? "")
        } catch {
            logger.warning("INTNW_TROUBLE ignored: \(error); trouble detection stays on with the default thresholds")
            setting = .on(TroubleParameters())
        }
        switch setting {
        case .off:
            return NoTroubleDetector()
        case .on(let p):
            return AckTimeoutTroubleDetector(parameters: p, statistics: sharedStatistics(logger: logger), logger: logger)
        }
    }

    private static let shared = Mutex<TroubleStatistics?>(nil)

    /// One statistics object per process for detectors made from the environment, writing to
    /// `INTNW_TROUBLE_LOG` when it is set.
    static func sharedStatistics(logger: Logger) -> TroubleStatistics {
        shared.withLock { s in
            if let s { return s }
            var path = getenv("INTNW_TROUBLE_LOG").map { String(cString: $0) }
            if let p = path, p.isEmpty { path = nil }
            path = path.map { p in p.split(separator: "%p", omittingEmptySubsequences: false).joined(separator: String(getpid())) }
            let stats = TroubleStatistics(jsonLinesPath: path)
            if let path, !stats.isWritingJSONLines {
                logger.warning("INTNW_TROUBLE_LOG: cannot open \(path) for writing; trouble decisions are not recorded there")
            }
            s = stats
            return stats
        }
    }
}
