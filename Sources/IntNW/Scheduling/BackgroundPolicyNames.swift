/// Choosing a background policy by name: the `INTNW_BG_POLICY` values, their parameters, and
/// the default (delay-target). The policies themselves are in BackgroundPolicies.swift and DelayTargetPolicy.swift.
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

// MARK: - selection by name

/// The policies by name: `MultiSocketOptions.backgroundPolicy`, the `INTNW_BG_POLICY`
/// environment variable (for unmodified apps; `intnw-app --bg-policy` sets it) and the
/// experiments' `--bg-policy`.
public enum BackgroundPolicyName: String, CaseIterable, Sendable, Codable {
    case exclusive
    case permissive
    case anticipatory
    case trickle
    case delayTarget = "delay-target"

    /// The environment variable unmodified apps are configured with.
    public static let environmentVariable = "INTNW_BG_POLICY"

    /// The policy with its default parameters.
    public func makePolicy() -> any BackgroundPolicy {
        switch self {
        case .exclusive: ExclusiveBackgroundPolicy()
        case .permissive: PermissiveBackgroundPolicy()
        case .anticipatory: AnticipatoryBackgroundPolicy()
        case .trickle: TrickleBackgroundPolicy()
        case .delayTarget: DelayTargetBackgroundPolicy()
        }
    }

    /// Parses a name (case-insensitive); the error lists the valid ones.
    public static func parse(_ text: String) throws -> BackgroundPolicyName {
        let t = text.trimmingSpaces.lowercased()
        guard let n = BackgroundPolicyName(rawValue: t) else {
            throw IntNWError.invalidArgument("background policy '\(text)' is not one of \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return n
    }

    /// Parameters `BackgroundPolicies.parse` accepts after the name, with their meaning.
    public var parameterKeys: [String: String] {
        switch self {
        case .exclusive, .permissive: [:]
        case .anticipatory: ["empty": "unsent | unacked | below-chunk", "idle-rtts": "idle wait in RTTs",
                             "min-chunk-s": "smallest chunk, seconds of bandwidth", "max-chunk-s": "largest chunk, seconds of bandwidth"]
        case .trickle: ["chunk-s": "chunk, seconds of bandwidth", "idle-chunk-s": "chunk after the idle time, seconds of bandwidth",
                        "idle-after-s": "FG silence before the larger chunk, seconds"]
        case .delayTarget: ["target-ms": "queueing delay BG may add, ms",
                            "fall": "how the bandwidth estimate forgets a faster link: queueing (the default: after 3 s, or once two windows in a row that queued delivered less than 1 / fall-margin of it; the next path probe brings back what the path's own lengthening explains) or horizon (after 3 s only)",
                            "fall-margin": "ratio (1.1-4) of a measurement to what two queueing windows in a row delivered above which fall=queueing drops it (default 1.5)",
                            "target-path": "on a path whose RTT moves between path probes: the target is this many times that movement (ms) when more than target-ms, at most half the base RTT and half of ceiling-ms (default 3; 0: off)",
                            "ceiling-ms": "measured delay that halves the window, ms",
                            "max-scale": "largest scale on the model window (probing above the estimate)",
                            "duty": "fault injection: share (0-1] of each period BG may use the link",
                            "duty-period-s": "period of the duty share, seconds",
                            "pace": "pacing gain on the bandwidth estimate for BG grants (0: off)",
                            "pace-quantum-ms": "largest paced grant, ms of bandwidth (at least one segment)",
                            "probe": "largest probe step over the measured delivery rate when the window holds BG without queueing (0: off)",
                            "window-slack": "full segments added to the model window for what the grant rule leaves unfilled (0 to 4; default 0)",
                            "probe-from": "measured | window: what the estimate's probes start from, the delivery rate measured or what the window allowed (the rate / (1 - one segment / window), on windows of four segments or more); default measured",
                            "probe-below": "share (0-1] of target-ms under which the measured queueing delay counts as none for probing (default 1)",
                            "barrier": "acked | wire | sent: how long FG elsewhere on the interface holds BG (until ACKed, until it left the socket send queues, until written)",
                            "kernel-backlog": "hold | ignore: hold BG while the connection's congestion window is full and its kernel has more unsent than 10 ms of the link (at least one pacing quantum; default hold)",
                            "path-probe-rtts": "drain BG and PING for the path's RTT every this many base RTTs (rounded up to 1, 2, 4 or 8 s; default 20; 0: off, use the kernel's minimum RTT)"]
        }
    }
}

/// Defaults for `MultiSocketOptions.backgroundPolicy`.
public enum BackgroundPolicies {
    /// Without configuration: delay-target (BG bounded interface-wide by a window of bandwidth x
    /// (path RTT + one segment + a 10 ms target queue), steered by the measured queueing delay,
    /// the path RTT measured by a drained PING every 20 base RTTs), the
    /// policy that comes closest to the scheduling note's goal of FG unharmed while BG gets the rest
    /// (docs/scheduling.md). The note's own policies stay one `INTNW_BG_POLICY` away for comparisons:
    /// `anticipatory` (its final algorithm, which starves BG when FG talks every second), `trickle`,
    /// `exclusive`, and `permissive` (the straw man).
    public static let fallback = BackgroundPolicyName.delayTarget

    /// The policy `INTNW_BG_POLICY` describes, else `fallback`. A value that does not parse falls
    /// back too and is reported (one error line) by the first multisocket that starts.
    public static func fromEnvironment() -> any BackgroundPolicy {
        guard let raw = getenv(BackgroundPolicyName.environmentVariable), !String(cString: raw).trimmingSpaces.isEmpty else {
            return fallback.makePolicy()
        }
        do {
            return try parse(String(cString: raw))
        } catch {
            EnvironmentProblem.record("\(error); using \(fallback.rawValue)")
            return fallback.makePolicy()
        }
    }

    /// Parses `name[:key=value,...]`, e.g. `anticipatory`, `anticipatory:empty=unsent`,
    /// `delay-target:target-ms=50` (keys: `BackgroundPolicyName.parameterKeys`).
    public static func parse(_ spec: String) throws -> any BackgroundPolicy {
        let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let name = try BackgroundPolicyName.parse(String(parts[0]))
        var values: [String: String] = [:]
        if parts.count == 2 {
            for item in parts[1].split(separator: ",") {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = kv[0].trimmingSpaces.lowercased()
                guard kv.count == 2, name.parameterKeys[key] != nil else {
                    let valid = name.parameterKeys.keys.sorted().joined(separator: ", ")
                    throw IntNWError.invalidArgument("'\(item)' is not a parameter of \(name.rawValue) (\(valid.isEmpty ? "it has none" : "valid: " + valid))")
                }
                values[key] = kv[1].trimmingSpaces
            }
        }
        func number(_ key: String) throws -> Double? {
            guard let v = values[key] else { return nil }
            guard let d = Double(v), d.isFinite, d > 0 else {
                throw IntNWError.invalidArgument("\(name.rawValue) \(key)=\(v): expected a positive number")
            }
            return d
        }
        switch name {
        case .exclusive, .permissive:
            return name.makePolicy()
        case .anticipatory:
            var p = AnticipatoryBackgroundPolicy.Parameters()
            if let e = values["empty"] {
                guard let t = AnticipatoryBackgroundPolicy.EmptySocketTest(rawValue: e.lowercased()) else {
                    throw IntNWError.invalidArgument("anticipatory empty=\(e): expected unsent, unacked or below-chunk")
                }
                p.emptySocketTest = t
            }
            if let v = try number("idle-rtts") { p.idleRTTMultiple = v }
            if let v = try number("min-chunk-s") { p.minimumChunkSeconds = v }
            if let v = try number("max-chunk-s") { p.maximumChunkSeconds = v }
            return AnticipatoryBackgroundPolicy(parameters: p)
        case .trickle:
            var p = TrickleBackgroundPolicy.Parameters()
            if let v = try number("chunk-s") { p.chunkSeconds = v }
            if let v = try number("idle-chunk-s") { p.idleChunkSeconds = v }
            if let v = try number("idle-after-s") { p.idleAfterSeconds = v }
            return TrickleBackgroundPolicy(parameters: p)
        case .delayTarget:
            var p = DelayTargetBackgroundPolicy.Parameters()
            if let v = try number("target-ms") { p.targetQueueingDelayMilliseconds = v }
            if let text = values["target-path"] {
                guard let v = Double(text), v == 0 || (v >= 0.5 && v <= 8) else {
                    throw IntNWError.invalidArgument("delay-target target-path=\(text): expected 0 (off) or 0.5 to 8 times the path's RTT variation")
                }
                p.targetPathVariationMultiple = v
            }
            if let v = try number("ceiling-ms") { p.ceilingQueueingDelayMilliseconds = v }
            if let v = try number("max-scale") {
                guard v >= 1, v <= 64 else { throw IntNWError.invalidArgument("delay-target max-scale=\(v): expected 1 to 64") }
                p.maximumScale = v
            }
            if let v = try number("duty") {
                guard v <= 1 else { throw IntNWError.invalidArgument("delay-target duty=\(v): expected a share in (0, 1]") }
                p.dutyFraction = v
            }
            if let v = try number("duty-period-s") {
                guard v >= 0.1, v <= 60 else { throw IntNWError.invalidArgument("delay-target duty-period-s=\(v): expected 0.1 to 60 s") }
                p.dutyPeriodSeconds = v
            }
            if let text = values["pace"] {
                // 0 is allowed here (off), unlike the positive numbers above.
                guard let v = Double(text), v == 0 || (v >= 1 && v <= 4) else {
                    throw IntNWError.invalidArgument("delay-target pace=\(text): expected 0 (off) or a gain from 1 to 4")
                }
                p.pacingGain = v
            }
            if let text = values["probe"] {
                guard let v = Double(text), v == 0 || (v > 1 && v <= 4) else {
                    throw IntNWError.invalidArgument("delay-target probe=\(text): expected 0 (off) or a gain above 1, at most 4")
                }
                p.probeGain = v
            }
            if let text = values["window-slack"] {
                guard let v = Double(text), v >= 0, v <= 4 else {
                    throw IntNWError.invalidArgument("delay-target window-slack=\(text): expected 0 to 4 full segments")
                }
                p.windowSlackSegments = v
            }
            if let text = values["fall"] {
                switch text {
                case "horizon": p.estimateFallMargin = 0
                case "queueing": p.estimateFallMargin = LinkRateTracker.defaultFallMargin
                default: throw IntNWError.invalidArgument("delay-target fall=\(text): expected horizon or queueing")
                }
            }
            if let text = values["fall-margin"] {
                guard let v = Double(text), v >= 1.1, v <= 4 else {
                    throw IntNWError.invalidArgument("delay-target fall-margin=\(text): expected 1.1 to 4 (a ratio)")
                }
                guard values["fall"] != "horizon" else {
                    throw IntNWError.invalidArgument("delay-target fall-margin=\(text) needs fall=queueing (it is the margin of that rule)")
                }
                p.estimateFallMargin = v
            }
            if let text = values["probe-from"] {
                switch text {
                case "measured": p.probeFromWindow = false
                case "window": p.probeFromWindow = true
                default: throw IntNWError.invalidArgument("delay-target probe-from=\(text): expected measured or window")
                }
            }
            if let v = try number("probe-below") {
                guard v <= 1 else { throw IntNWError.invalidArgument("delay-target probe-below=\(v): expected a share of the target in (0, 1]") }
                p.probeBelowTargetShare = v
            }
            if let v = try number("pace-quantum-ms") {
                guard v > 0, v <= 1000 else { throw IntNWError.invalidArgument("delay-target pace-quantum-ms=\(v): expected (0, 1000] ms") }
                p.pacingQuantumMilliseconds = v
            }
            if let text = values["path-probe-rtts"] {
                guard let v = Double(text), v == 0 || (v >= 5 && v <= 1000) else {
                    throw IntNWError.invalidArgument("delay-target path-probe-rtts=\(text): expected 0 (off) or 5 to 1000 base RTTs")
                }
                p.pathProbeRTTs = v
            }
            if let text = values["kernel-backlog"] {
                switch text.lowercased() {
                case "hold": p.holdKernelBacklog = true
                case "ignore": p.holdKernelBacklog = false
                default: throw IntNWError.invalidArgument("delay-target kernel-backlog=\(text): expected hold or ignore")
                }
            }
            if let b = values["barrier"] {
                guard let v = DelayTargetBackgroundPolicy.Barrier(rawValue: b.lowercased()) else {
                    throw IntNWError.invalidArgument("delay-target barrier=\(b): expected acked, wire or sent")
                }
                p.barrier = v
            }
            return DelayTargetBackgroundPolicy(parameters: p)
        }
    }
}

/// A configuration problem found while building default options (no logger there yet): the
/// first background scheduler logs it once.
enum EnvironmentProblem {
    private static let pending = Mutex<String?>(nil)

    static func record(_ s: String) { pending.withLock { $0 = s } }

    static func take() -> String? { pending.withLock { p in defer { p = nil }; return p } }
}

extension String {
    var trimmingSpaces: String { Substring(self).trimmingSpaces }
}
