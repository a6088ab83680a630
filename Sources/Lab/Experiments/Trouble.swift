import Analysis
import Emulation
import Foundation
import ToyProtocol

/// Troubled-network detection and fast failover (issue 5, docs/trouble-detection.md): WiFi fails under
/// FG load, as a blackout (every packet dropped; the OS hears of it only after the notification delay)
/// and as a fade (loss rising, rate falling, then out of range), with IntNW's detection on and off;
/// and the false-trouble rate of healthy links carrying a bulk upload next to FG requests.
///
/// Measured per trial from the apps' JSON lines, IntNW's decision log (`INTNW_TROUBLE_LOG`) and the
/// replay start (`replay-start.json`):
/// - detect: first trouble declaration on WiFi (client or server) after the failure began;
/// - failover: when the first FG request answered after the failure began was answered (a request in
///   flight at the failure, or the next one), counted from the failure's start;
/// - recovery: when the first FG request answered after WiFi returned with a latency below the
///   cellular RTT (so it cannot have used cellular) was answered, counted from WiFi's return;
/// - false trouble: declarations per minute and per check over the whole run.
public struct TroubleExperiment: Experiment {
    public let name = "trouble"
    public let version = 1
    public let summary = "WiFi blackout and fade under FG load, trouble detection on vs off; false trouble on healthy WiFi and 3G"
    public let expectation = "with detection on, FG requests hit by a WiFi blackout complete over cellular within 1 s (off: they wait for the 5 s carrier notification), a fade stalls FG far less than without detection, FG is back on WiFi within 1 s of its return, and bulk upload declares no trouble on 50 ms WiFi and at most once a minute on 200 ms ±50% 3G"

    public init() {}

    public enum Variant: String, CaseIterable, Sendable {
        case blackoutOn = "blackout-on"
        case blackoutOff = "blackout-off"
        case fadeOn = "fade-on"
        case fadeOff = "fade-off"
        case falseWiFi = "false-wifi"
        case false3G = "false-3g"
        /// The same 3G run with the note's formula verbatim (no RTT-variance term), for comparison.
        case false3GNote = "false-3g-note"

        var detection: Bool { self != .blackoutOff && self != .fadeOff }
        var isFailure: Bool { !isFalseTrouble }
        var isFalseTrouble: Bool { self == .falseWiFi || self == .false3G || self == .false3GNote }

        /// `INTNW_TROUBLE` for the variant.
        var troubleSetting: String {
            switch self {
            case .blackoutOff, .fadeOff: "off"
            case .false3GNote: "on,rttvar_k=0"
            default: "on"
            }
        }
    }

    /// When WiFi fails, seconds after the replay starts, and the failures' shape.
    public static let failAtSeconds = 20.0
    public static let blackoutSeconds = 8.0
    public static let fadeSeconds = 5.0
    public static let outAfterFadeSeconds = 8.0
    /// The OS learns of WiFi's loss this long after it happened (issue 5's scenario).
    public static let notifyDelaySeconds = 5.0
    public static let requestIntervalSeconds = 0.2

    /// WiFi at 40 ms, the issue's failover scenario; 50 ms for the false-trouble run.
    static let wifi = Conditions.wifi
    static let cellular = Conditions.cellular

    /// When WiFi is back (seconds after replay start) for a failure variant.
    static func wifiReturnSeconds(_ v: Variant) -> Double? {
        switch v {
        case .blackoutOn, .blackoutOff: failAtSeconds + blackoutSeconds
        case .fadeOn, .fadeOff: failAtSeconds + fadeSeconds + outAfterFadeSeconds
        case .falseWiFi, .false3G, .false3GNote: nil
        }
    }

    func duration(_ v: Variant, _ o: ExperimentOptions) -> Double {
        switch v {
        case .falseWiFi, .false3G, .false3GNote: o.quick ? 30 : 60
        default: Self.wifiReturnSeconds(v)! + 4
        }
    }

    public func expectedSeconds(_ o: ExperimentOptions) -> Double {
        Variant.allCases.reduce(0) { $0 + Double(o.trials) * (duration($1, o) + 14) } + 5
    }

    /// A 3G-like link whose RTT is drawn afresh each `sliceSeconds` within `rttMilliseconds` ± `spread`
    /// (a fraction), WiFi out of range throughout. Seeded, so trials are reproducible.
    public static func variableRTTCellular(seconds: Double, rttMilliseconds: Double = 200, spread: Double = 0.5,
                                           sliceSeconds: Double = 0.5, cellular: LinkConditions? = nil,
                                           wifi: LinkConditions? = nil, seed: UInt64) -> Trace {
        let cellular = cellular ?? Conditions.cellular, wifi = wifi ?? Conditions.wifiOff
        var rng = DeterministicRNG(seed: seed)
        var slices: [TraceSlice] = []
        var t = 0.0
        while t < seconds {
            var c = cellular
            c.rttMilliseconds = rttMilliseconds * (1 - spread + 2 * spread * rng.unit())
            slices.append(TraceSlice(startSeconds: t, conditions: [wifi, c]))
            t += sliceSeconds
        }
        return Trace(slices: slices, durationSeconds: seconds,
                     source: "cellular \(Int(rttMilliseconds)) ms ±\(Int(spread * 100))% per \(sliceSeconds) s slice, seed \(seed)")
    }

    func trace(_ v: Variant, _ o: ExperimentOptions, seed: UInt64) throws -> Trace {
        let d = duration(v, o) + 15
        let base = Trace.constant(wifi: Self.wifi, cellular: Self.cellular, durationSeconds: d)
        switch v {
        case .blackoutOn, .blackoutOff:
            return try base.withBlackout(atSeconds: Self.failAtSeconds, durationSeconds: Self.blackoutSeconds)
        case .fadeOn, .fadeOff:
            return try base.withFade(startSeconds: Self.failAtSeconds, fadeSeconds: Self.fadeSeconds,
                                     outSeconds: Self.outAfterFadeSeconds)
        case .falseWiFi:
            var w = Self.wifi
            w.rttMilliseconds = 50
            var t = Trace.constant(wifi: w, cellular: Self.cellular, durationSeconds: d)
            t.source = "constant: WiFi 50 ms, cellular 200 ms"
            return t
        case .false3G, .false3GNote:
            return Self.variableRTTCellular(seconds: d, seed: seed)
        }
    }

    public func plans(_ o: ExperimentOptions) throws -> [TrialPlan] {
        var plans: [TrialPlan] = []
        for v in Variant.allCases {
            for trial in 1...o.trials {
                var apps = [AppLaunch(name: "fg", kind: .fgClient, variant: .intnw, appId: 1,
                                      arguments: ["--interval", String(Self.requestIntervalSeconds), "--request-bytes", "128"])]
                if !v.isFailure {
                    apps.append(AppLaunch(name: "bg", kind: .bgClient, variant: .intnw, appId: 2,
                                          arguments: ["--chunk-bytes", "65536", "--depth", "4"]))
                }
                var plan = TrialPlan(experiment: name, variant: v.rawValue, trial: trial,
                                     trace: Trace.constant(wifi: nil, cellular: Self.cellular, durationSeconds: 1),
                                     durationSeconds: duration(v, o), apps: apps)
                plan.apply(o)
                plan.trace = try trace(v, o, seed: plan.seed)
                // 3G alone: WiFi is absent from the start, and the OS knows it.
                plan.notifyDelaySeconds = v == .false3G || v == .false3GNote ? 0 : v.isFailure ? Self.notifyDelaySeconds : 2
                plan.environment["INTNW_TROUBLE"] = v.troubleSetting
                plan.environment["INTNW_TROUBLE_LOG"] = "\(TrialPlan.trialDirectoryPlaceholder)/trouble-%p.jsonl"
                plans.append(plan)
            }
        }
        return plans
    }

    // MARK: - Measurements

    /// One FG request from the app's log, in seconds since the replay start.
    struct Request {
        var sentAt: Double
        /// nil: never answered.
        var answeredAt: Double?
        var latency: Double? { answeredAt.map { $0 - sentAt } }
    }

    /// One trouble decision from IntNW's log.
    struct Decision {
        var at: Double
        var outcome: String
        var kind: String
    }

    struct Measurements {
        var requests: [Request] = []
        var decisions: [Decision] = []
        var runSeconds: Double = 0
        /// Declarations of WiFi trouble after the failure began, seconds from its start.
        var detectSeconds: Double?
        var failoverSeconds: Double?
        var recoverySeconds: Double?
        var declarations: Int { decisions.filter { $0.outcome == "declared" }.count }
        var checks: Int { decisions.filter { $0.outcome == "declared" || $0.outcome == "healthy" }.count }
        var perMinute: Double { runSeconds > 0 ? Double(declarations) / (runSeconds / 60) : 0 }
        var perCheck: Double { checks > 0 ? Double(declarations) / Double(checks) : 0 }
        var unanswered: Int { requests.filter { $0.answeredAt == nil }.count }
        var problems: [String] = []
    }

    /// One line of IntNW's trouble-decision log (not an app log: written by the library,
    /// `trouble-*.jsonl`, see `TroubleStatistics`); lines without these fields are left out.
    struct DecisionLine: Decodable {
        var realtimeNs: UInt64
        var outcome: String
        var kind: String?

        enum CodingKeys: String, CodingKey {
            case realtimeNs = "realtime_ns", outcome, kind
        }

        /// The decodable lines of the log at `path` (none when it cannot be read).
        static func read(_ path: String) -> [DecisionLine] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
            let decoder = JSONDecoder()
            return text.split(separator: "\n").compactMap { try? decoder.decode(DecisionLine.self, from: Data($0.utf8)) }
        }
    }

    static func measure(_ outcome: TrialOutcome) -> Measurements {
        var m = Measurements()
        guard let variant = Variant(rawValue: outcome.plan.variant) else { return m }
        let dir = outcome.directory
        guard let start = try? ReplayStartRecord.read(from: dir) else {
            m.problems.append("no \(ReplayStartRecord.fileName)")
            return m
        }
        m.runSeconds = outcome.plan.durationSeconds
        // The FG app's requests as the analyzer read them from its log (the app-log contract).
        let fg = outcome.plan.apps.first { $0.kind == .fgClient }?.name ?? "fg"
        if let analysis = outcome.analysis {
            if let log = analysis.appLog(fg) {
                for r in analysis.loggedRequests(app: fg) {
                    m.requests.append(Request(sentAt: start.seconds(realtimeNs: r.sendNanoseconds),
                                              answeredAt: r.receiveNanoseconds.map { start.seconds(realtimeNs: $0) }))
                }
                if let n = log.skippedLines, n > 0 { m.problems.append("\(log.file): \(n) lines outside the app-log contract (\(log.firstSkippedLine ?? "?"))") }
            }
        } else {
            m.problems.append("no analysis of the trial (see its problems)")
        }
        m.requests.sort { $0.sentAt < $1.sentAt }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir))?.filter { $0.hasPrefix("trouble-") && $0.hasSuffix(".jsonl") } ?? []
        for f in files {
            for d in DecisionLine.read("\(dir)/\(f)") {
                m.decisions.append(Decision(at: start.seconds(realtimeNs: d.realtimeNs), outcome: d.outcome, kind: d.kind ?? "?"))
            }
        }
        m.decisions.sort { $0.at < $1.at }
        if m.requests.isEmpty { m.problems.append("no FG requests in the \(fg) app's log") }
        guard variant.isFailure else { return m }
        let failAt = failAtSeconds
        m.detectSeconds = m.decisions.first { $0.outcome == "declared" && $0.kind == "wifi" && $0.at >= failAt }.map { $0.at - failAt }
        // The first request answered after the failure began (in flight then, or sent after it).
        if let hit = m.requests.first(where: { ($0.answeredAt ?? .infinity) > failAt }) {
            m.failoverSeconds = hit.answeredAt.map { $0 - failAt }
        }
        if let back = wifiReturnSeconds(variant) {
            let cellRTT = cellular.rttMilliseconds / 1000
            m.recoverySeconds = m.requests.first { ($0.answeredAt ?? 0) >= back && ($0.latency ?? .infinity) < cellRTT }
                .flatMap { $0.answeredAt.map { $0 - back } }
        }
        return m
    }

    static func fmt(_ x: Double?) -> String { x.map { String(format: "%.3f s", $0) } ?? "-" }

    public func evaluate(_ outcomes: [TrialOutcome], options: ExperimentOptions) -> Verdict {
        var held = true
        var lines: [String] = []
        var fadeWorst: [Bool: Double] = [:]
        for o in outcomes {
            guard let v = Variant(rawValue: o.plan.variant) else { continue }
            let m = Self.measure(o)
            let label = "\(v.rawValue) trial \(o.plan.trial)"
            if !m.problems.isEmpty {
                held = false
                lines.append("\(label): \(m.problems.joined(separator: "; "))")
                continue
            }
            switch v {
            case .falseWiFi, .false3G, .false3GNote:
                let limit = v == .falseWiFi ? 0.0 : 1.0
                let ok = m.perMinute <= limit && m.checks > 0
                // The note's formula alone is shown for comparison, not judged.
                if v != .false3GNote { held = held && ok }
                lines.append(String(format: "%@: %d declarations in %.0f s = %.2f per minute, %d checks = %.4f per check (%@)",
                                    label, m.declarations, m.runSeconds, m.perMinute, m.checks, m.perCheck,
                                    v == .false3GNote ? "the note's formula without the variance term, for comparison"
                                        : ok ? "limit \(Int(limit)) per minute" : "limit \(Int(limit)) per minute: NOT MET"))
            case .blackoutOn, .blackoutOff, .fadeOn, .fadeOff:
                let failWindow = m.requests.filter { $0.sentAt >= Self.failAtSeconds - 1 && $0.sentAt < (Self.wifiReturnSeconds(v) ?? 0) }
                let worst = failWindow.compactMap(\.latency).max() ?? 0
                var ok = true
                switch v {
                case .blackoutOn:
                    ok = (m.failoverSeconds ?? .infinity) <= 1.0 && (m.recoverySeconds ?? .infinity) <= 1.0 && m.detectSeconds != nil
                case .blackoutOff:
                    ok = (m.failoverSeconds ?? 0) >= Self.notifyDelaySeconds
                case .fadeOn, .fadeOff:
                    fadeWorst[v.detection] = max(fadeWorst[v.detection] ?? 0, worst)
                default: break
                }
                ok = ok && m.unanswered <= 1
                held = held && ok
                lines.append("\(label): detect \(Self.fmt(m.detectSeconds)), first answer after the failure \(Self.fmt(m.failoverSeconds)), "
                             + "back on WiFi \(Self.fmt(m.recoverySeconds)) after its return, worst FG latency \(Self.fmt(worst)), "
                             + "\(m.declarations) declarations, \(m.requests.count) requests, \(m.unanswered) unanswered"
                             + (ok ? "" : " NOT MET"))
            }
        }
        if let on = fadeWorst[true], let off = fadeWorst[false] {
            let ok = on < off
            held = held && ok
            lines.append(String(format: "fade: worst FG latency %.3f s with detection, %.3f s without%@", on, off, ok ? "" : " NOT MET"))
        }
        return Verdict(held: held, lines: lines)
    }

    public func keyMetrics(_ outcomes: [TrialOutcome]) -> [KeyMetric] {
        var byVariant: [Variant: [Measurements]] = [:]
        for o in outcomes { if let v = Variant(rawValue: o.plan.variant) { byVariant[v, default: []].append(Self.measure(o)) } }
        func mean(_ xs: [Double]) -> Double? { xs.isEmpty ? nil : xs.reduce(0, +) / Double(xs.count) }
        var out: [KeyMetric] = []
        for v in [Variant.blackoutOn, .fadeOn] {
            let ms = byVariant[v] ?? []
            if let x = mean(ms.compactMap(\.detectSeconds)) { out.append(KeyMetric(name: "trouble.\(v.rawValue).detect_s", value: x, unit: "s", better: .lower)) }
            if let x = mean(ms.compactMap(\.failoverSeconds)) { out.append(KeyMetric(name: "trouble.\(v.rawValue).failover_s", value: x, unit: "s", better: .lower)) }
            if let x = mean(ms.compactMap(\.recoverySeconds)) { out.append(KeyMetric(name: "trouble.\(v.rawValue).recovery_s", value: x, unit: "s", better: .lower)) }
        }
        for v in [Variant.falseWiFi, .false3G, .false3GNote] {
            if let x = mean((byVariant[v] ?? []).map(\.perMinute)) {
                out.append(KeyMetric(name: "trouble.\(v.rawValue).declarations_per_min", value: x, unit: "1/min", better: .lower))
            }
        }
        return out
    }
}
