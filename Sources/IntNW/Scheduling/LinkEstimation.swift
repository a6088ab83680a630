/// The link estimate background policies scale with, kept by each `BackgroundScheduler` per
/// interface: the interface's delivery rate (bytes acknowledged on every background-sending
/// connection there, summed across multisockets and processes through the shared segment) over
/// windows of at least one RTT. A window counts fully when the bottleneck was busy throughout it
/// (a standing queue: smoothed RTT above the minimum, or the kernel held unsent data while not
/// application-limited); otherwise the rate is only a lower bound on the link's and raises the
/// estimate but never lowers it (traffic a policy keeps application-limited shows its own rate,
/// not the link's). Also: the oracle schedule experiments give (`INTNW_BG_ORACLE`), and the
/// record of estimates over time (`INTNW_BG_ESTIMATE_LOG`).
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The delivery-rate estimate of one interface.
struct LinkRateTracker {
    /// Bytes per second; 0 until the first sample.
    private(set) var estimateBytesPerSecond = 0.0
    private(set) var samples = 0
    /// Samples taken while the bottleneck was busy (full samples).
    private(set) var busySamples = 0
    private var windowStartNs: UInt64 = 0
    private var windowStartDelivered: UInt64 = 0
    private var busyThroughout = true
    private var observations = 0
    /// EWMA gain of a sample.
    static let gain = 0.25

    /// Shortest sampling window for a link of minimum RTT `minRTTNs`: one RTT, at least 200 ms
    /// (shorter windows on slow links count too few packets).
    static func windowNs(minRTTNs: UInt64) -> UInt64 { max(minRTTNs, 200_000_000) }

    /// One observation at a decision: the interface's cumulative delivered bytes and whether the
    /// bottleneck looked busy. Returns whether a sample was taken.
    @discardableResult
    mutating func observe(nowNs: UInt64, deliveredBytes: UInt64, busy: Bool, minRTTNs: UInt64) -> Bool {
        let window = Self.windowNs(minRTTNs: minRTTNs)
        guard windowStartNs != 0, nowNs > windowStartNs, deliveredBytes >= windowStartDelivered else {
            restart(nowNs, deliveredBytes)
            return false
        }
        busyThroughout = busyThroughout && busy
        observations += 1
        let dt = nowNs - windowStartNs
        guard dt >= window else { return false }
        defer { restart(nowNs, deliveredBytes) }
        // Decisions too sparse to tell whether the link stayed busy (background was idle).
        guard dt <= 4 * window, observations >= 2 else { return false }
        let rate = Double(deliveredBytes - windowStartDelivered) / (Double(dt) / 1e9)
        guard rate > 0 else { return false }
        if busyThroughout {
            add(rate)
            busySamples += 1
            return true
        }
        if rate > estimateBytesPerSecond {
            add(rate)
            return true
        }
        return false
    }

    private mutating func add(_ rate: Double) {
        estimateBytesPerSecond = samples == 0 ? rate : estimateBytesPerSecond * (1 - Self.gain) + rate * Self.gain
        samples += 1
    }

    private mutating func restart(_ nowNs: UInt64, _ delivered: UInt64) {
        windowStartNs = nowNs
        windowStartDelivered = delivered
        busyThroughout = true
        observations = 0
    }

    /// Whether the bottleneck looks busy from one connection's TCP_INFO: a standing queue
    /// (smoothed RTT above the minimum by 5% of it, at least 5 ms, beyond the transmission time of
    /// one full segment at the current estimate, `serializationMicroseconds`: a full segment's RTT
    /// includes its own transmission, which is not queueing), or unsent data while the kernel's last
    /// delivery-rate sample was not application-limited (congestion-window-limited).
    static func bottleneckBusy(smoothedRTTMicroseconds srtt: UInt32, minRTTMicroseconds minRTT: UInt32,
                               appLimited: Bool, unsentBytes: Int, serializationMicroseconds: Double = 0) -> Bool {
        if srtt > 0, minRTT > 0, minRTT != UInt32.max {
            let threshold = max(5_000.0, 0.05 * Double(minRTT)) + max(0, serializationMicroseconds)
            if Double(srtt) - Double(minRTT) >= threshold { return true }
        }
        return !appLimited && unsentBytes > 0
    }
}

/// The link capacity over time as the experiment's trace defines it (`INTNW_BG_ORACLE` names the
/// file): the "oracle" estimate, so that estimator error and policy effect can be told apart.
///
/// Format (text, one item per line, `#` comments):
///
///     start_ns <CLOCK_MONOTONIC ns of trace time 0>
///     link <interface> <t seconds> <up bytes/s> <down bytes/s> <rtt ms> <available 0|1>
///
/// `link` lines of one interface in increasing time; each holds until the next.
public struct OracleSchedule: Sendable, Equatable {
    public struct Point: Sendable, Equatable {
        public var seconds: Double
        public var upBytesPerSecond: Double
        public var downBytesPerSecond: Double
        public var rttMilliseconds: Double
        public var available: Bool
    }

    public var startNs: UInt64
    public var links: [String: [Point]]

    /// Largest file accepted, bytes.
    public static let maximumBytes = 4 << 20

    public static func parse(_ text: String) throws(IntNWError) -> OracleSchedule {
        var start: UInt64?
        var links: [String: [Point]] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.isEmpty { continue }
            func bad(_ why: String) -> IntNWError { .invalidArgument("oracle schedule line \(n + 1): \(why)") }
            switch f[0] {
            case "start_ns":
                guard f.count == 2, let v = UInt64(f[1]) else { throw bad("expected start_ns <ns>") }
                start = v
            case "link":
                guard f.count == 7, let t = Double(f[2]), let up = Double(f[3]), let down = Double(f[4]),
                      let rtt = Double(f[5]), let av = Int(f[6]), t.isFinite, t >= 0, up.isFinite, up >= 0,
                      down.isFinite, down >= 0, rtt.isFinite, rtt >= 0, av == 0 || av == 1 else {
                    throw bad("expected link <interface> <t s> <up B/s> <down B/s> <rtt ms> <0|1>")
                }
                let name = String(f[1])
                if let last = links[name]?.last, last.seconds > t { throw bad("time goes back for \(name)") }
                links[name, default: []].append(Point(seconds: t, upBytesPerSecond: up, downBytesPerSecond: down,
                                                      rttMilliseconds: rtt, available: av == 1))
            default:
                throw bad("unknown item '\(f[0])'")
            }
        }
        guard let start else { throw .invalidArgument("oracle schedule: no start_ns line") }
        return OracleSchedule(startNs: start, links: links)
    }

    /// The point of `interface` at monotonic `nowNs` (nil: unknown interface, or before time 0).
    public func point(interface: String, nowNs: UInt64) -> Point? {
        guard let pts = links[interface], nowNs >= startNs else { return nil }
        let t = Double(nowNs - startNs) / 1e9
        var lo = 0, hi = pts.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if pts[mid].seconds <= t { lo = mid + 1 } else { hi = mid }
        }
        return lo == 0 ? nil : pts[lo - 1]
    }

    /// The schedule `INTNW_BG_ORACLE` names, read once per process (nil: unset, or unreadable: then
    /// `problem` says why, once).
    static func fromEnvironment() -> (OracleSchedule?, problem: String?) {
        loaded.withLock { state in
            if let state { return state }
            guard let raw = getenv("INTNW_BG_ORACLE"), !String(cString: raw).isEmpty else {
                state = (nil, nil)
                return (nil, nil)
            }
            let path = String(cString: raw)
            let result: (OracleSchedule?, problem: String?)
            do {
                result = (try parse(try readSmallFile(path, limit: maximumBytes)), nil)
            } catch {
                result = (nil, "INTNW_BG_ORACLE \(path): \(error); background policies use the measured estimate")
            }
            state = result
            return result
        }
    }

    private static let loaded = Mutex<(OracleSchedule?, problem: String?)?>(nil)
}

/// Reads a whole file of at most `limit` bytes.
func readSmallFile(_ path: String, limit: Int) throws(IntNWError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .invalidArgument("cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { throw .invalidArgument("read failed: \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        bytes += buf[0..<n]
        if bytes.count > limit { throw .invalidArgument("larger than \(limit) bytes") }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The background link estimates over time, as JSON lines, when `INTNW_BG_ESTIMATE_LOG` names a
/// file (`%p` becomes the process id): `{"t_ns":…,"side":"client","interface":"…","bw_Bps":…,
/// "rtt_ms":…,"source":"tracked|measured|prior|oracle"}`, at most every 100 ms per interface and
/// multisocket, while background data is being scheduled.
final class EstimateRecorder: @unchecked Sendable {
    static let periodNs: UInt64 = 100_000_000
    private let lock = Lock()
    private var fd: Int32

    private init(fd: Int32) { self.fd = fd }

    static let shared: EstimateRecorder? = {
        guard let raw = getenv("INTNW_BG_ESTIMATE_LOG") else { return nil }
        let pattern = String(cString: raw)
        guard !pattern.isEmpty else { return nil }
        let path = pattern.split(separator: "%p", omittingEmptySubsequences: false).joined(separator: String(getpid()))
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        return fd >= 0 ? EstimateRecorder(fd: fd) : nil
    }()

    func record(nowNs: UInt64, side: String, interface: String, bandwidthBytesPerSecond: Double, rttMilliseconds: Double,
                source: String) {
        let line = "{\"t_ns\":\(nowNs),\"side\":\"\(side)\",\"interface\":\"\(interface.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })\",\"bw_Bps\":\(Int(bandwidthBytesPerSecond)),\"rtt_ms\":\(Double(Int(rttMilliseconds * 10)) / 10),\"source\":\"\(source)\"}\n"
        lock.lock()
        defer { lock.unlock() }
        _ = Array(line.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}
