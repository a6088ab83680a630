/// Scripted link failures as trace transforms (docs/testbed.md, Topology): a *blackout* (every packet
/// dropped; the replayer takes the carrier down only after its notification delay) and a *fade* (loss
/// rising, rate falling and RTT growing over a few seconds, then out of range). Both return a new
/// trace with finer slices inside the affected window; the rest of the trace is unchanged.

/// How a fade degrades a link on its way out (applied linearly over the fade, step by step).
public struct FadeProfile: Sendable, Equatable, Codable {
    /// Length of each slice inside the fade, seconds.
    public var stepSeconds: Double
    /// Loss fraction (0...1) reached in the fade's last step, per direction.
    public var finalLossFraction: Double
    /// Fraction of the original bandwidth left in the fade's last step (0 < x <= 1).
    public var finalRateFraction: Double
    /// Factor the RTT has grown by in the fade's last step (>= 1; weak signal means link-layer retries).
    public var finalRTTFactor: Double

    public init(stepSeconds: Double = 0.25, finalLossFraction: Double = 0.5, finalRateFraction: Double = 0.1,
                finalRTTFactor: Double = 2) {
        self.stepSeconds = stepSeconds
        self.finalLossFraction = finalLossFraction
        self.finalRateFraction = finalRateFraction
        self.finalRTTFactor = finalRTTFactor
    }
}

/// A scripted failure of one link, as given on the command line (`--fail`).
public enum LinkFailure: Sendable, Equatable {
    /// Every packet dropped from `atSeconds` for `durationSeconds`.
    case blackout(atSeconds: Double, durationSeconds: Double)
    /// Fade from `startSeconds` over `fadeSeconds`, then out of range for `outSeconds` (nil: until the
    /// end of the trace).
    case fade(startSeconds: Double, fadeSeconds: Double, outSeconds: Double?)

    /// The `--fail` syntax, for help texts.
    public static let syntax = """
        blackout@START+DURATION: from START s, the link drops every packet for DURATION s (its carrier \
        goes down only after the notification delay, and only if DURATION exceeds it). \
        fade@START+FADE[+OUT]: from START s, over FADE s, loss rises to 50%, bandwidth falls to 10% and \
        RTT doubles (in 0.25 s steps), then the link is out of range for OUT s (default: to the end of the trace).
        """

    /// Parses `blackout@30+10`, `fade@30+5` or `fade@30+5+20` (seconds; decimals allowed).
    public static func parse(_ spec: String) throws(TraceFailureError) -> LinkFailure {
        let parts = spec.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw .badSpec(spec, "expected KIND@START+DURATION") }
        let numbers = parts[1].split(separator: "+", omittingEmptySubsequences: false)
        var values: [Double] = []
        for n in numbers {
            guard let v = Double(n), v.isFinite, v >= 0 else { throw .badSpec(spec, "'\(n)' is not a non-negative number of seconds") }
            values.append(v)
        }
        switch parts[0].lowercased() {
        case "blackout":
            guard values.count == 2 else { throw .badSpec(spec, "blackout takes START+DURATION") }
            guard values[1] > 0 else { throw .badSpec(spec, "the blackout must last more than 0 s") }
            return .blackout(atSeconds: values[0], durationSeconds: values[1])
        case "fade":
            guard values.count == 2 || values.count == 3 else { throw .badSpec(spec, "fade takes START+FADE or START+FADE+OUT") }
            guard values[1] > 0 else { throw .badSpec(spec, "the fade must last more than 0 s") }
            if values.count == 3 && values[2] <= 0 { throw .badSpec(spec, "OUT must be more than 0 s") }
            return .fade(startSeconds: values[0], fadeSeconds: values[1], outSeconds: values.count == 3 ? values[2] : nil)
        default:
            throw .badSpec(spec, "unknown failure '\(parts[0])' (blackout or fade)")
        }
    }

    /// The trace with this failure applied to `link`.
    public func apply(to trace: Trace, link: String = "wifi") throws(TraceFailureError) -> Trace {
        switch self {
        case .blackout(let at, let d): try trace.withBlackout(link: link, atSeconds: at, durationSeconds: d)
        case .fade(let s, let f, let out): try trace.withFade(link: link, startSeconds: s, fadeSeconds: f, outSeconds: out)
        }
    }
}

/// A failure that cannot be applied (bad syntax, unknown link, window outside the trace).
public enum TraceFailureError: Error, Equatable, Sendable, CustomStringConvertible {
    case badSpec(String, String)
    case unknownLink(String, available: [String])
    case outsideTrace(startSeconds: Double, durationSeconds: Double)
    case invalidParameter(String)

    public var description: String {
        switch self {
        case .badSpec(let s, let why): "failure '\(s)': \(why)"
        case .unknownLink(let l, let have): "failure on link '\(l)': the trace has links \(have.joined(separator: ", "))"
        case .outsideTrace(let s, let d): "failure at \(s) s starts at or after the trace's end (\(d) s)"
        case .invalidParameter(let why): "failure: \(why)"
        }
    }
}

extension Trace {
    /// Drops every packet on `link` from `atSeconds` for `durationSeconds` (clipped at the trace's
    /// end): its bandwidth is 0 there, which the replayer treats as out of range, taking the carrier
    /// down only after the notification delay.
    public func withBlackout(link: String = "wifi", atSeconds: Double, durationSeconds: Double) throws(TraceFailureError) -> Trace {
        guard durationSeconds > 0, durationSeconds.isFinite else { throw .invalidParameter("blackout duration must be > 0 s") }
        let out = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)
        var t = try overriding(link: link, fromSeconds: atSeconds, toSeconds: atSeconds + durationSeconds, stepSeconds: nil) { _, _ in out }
        t.source = source + " + blackout \(link)@\(Self.short(atSeconds))+\(Self.short(durationSeconds))"
        return t
    }

    /// Fades `link` out from `startSeconds` over `fadeSeconds` in `profile.stepSeconds` slices (loss
    /// rising, bandwidth falling, RTT growing linearly to the profile's final values), then keeps it out
    /// of range for `outSeconds` (nil: until the trace ends).
    public func withFade(link: String = "wifi", startSeconds: Double, fadeSeconds: Double, outSeconds: Double? = nil,
                         profile: FadeProfile = FadeProfile()) throws(TraceFailureError) -> Trace {
        guard fadeSeconds > 0, fadeSeconds.isFinite else { throw .invalidParameter("fade length must be > 0 s") }
        guard profile.stepSeconds > 0, profile.stepSeconds.isFinite else { throw .invalidParameter("fade step must be > 0 s") }
        guard (0...1).contains(profile.finalLossFraction) else { throw .invalidParameter("fade loss must be within 0...1") }
        guard profile.finalRateFraction > 0, profile.finalRateFraction <= 1 else { throw .invalidParameter("fade rate fraction must be within (0, 1]") }
        guard profile.finalRTTFactor >= 1, profile.finalRTTFactor.isFinite else { throw .invalidParameter("fade RTT factor must be >= 1") }
        if let o = outSeconds, !(o > 0 && o.isFinite) { throw .invalidParameter("out-of-range time after a fade must be > 0 s") }
        var t = try overriding(link: link, fromSeconds: startSeconds, toSeconds: startSeconds + fadeSeconds,
                               stepSeconds: profile.stepSeconds) { c, f in
            var d = c
            guard c.hasBandwidth else { return c } // already out: a fade cannot bring it back
            let rate = 1 - f * (1 - profile.finalRateFraction)
            d.downBytesPerSecond = c.downBytesPerSecond * rate
            d.upBytesPerSecond = c.upBytesPerSecond * rate
            d.lossFraction = min(1, c.lossFraction + (profile.finalLossFraction - c.lossFraction) * f)
            d.rttMilliseconds = c.rttMilliseconds * (1 + (profile.finalRTTFactor - 1) * f)
            return d
        }
        let outEnd = outSeconds.map { startSeconds + fadeSeconds + $0 } ?? durationSeconds
        if startSeconds + fadeSeconds < durationSeconds && outEnd > startSeconds + fadeSeconds {
            t = try t.withBlackout(link: link, atSeconds: startSeconds + fadeSeconds, durationSeconds: outEnd - startSeconds - fadeSeconds)
        }
        t.source = source + " + fade \(link)@\(Self.short(startSeconds))+\(Self.short(fadeSeconds))"
            + (outSeconds.map { "+\(Self.short($0))" } ?? "")
        return t
    }

    /// Replaces the conditions of `link` in `[fromSeconds, toSeconds)` (clipped at the trace's end):
    /// slice boundaries are added at both ends and, with `stepSeconds`, every step inside, and each
    /// affected slice gets `transform(original conditions at its start, fraction)`, where fraction is
    /// the step's position in the window, 1/n ... 1 for n steps (1 without steps). Other links and
    /// times are untouched.
    public func overriding(link: String, fromSeconds: Double, toSeconds: Double, stepSeconds: Double?,
                           _ transform: (LinkConditions, Double) -> LinkConditions) throws(TraceFailureError) -> Trace {
        guard let li = links.firstIndex(of: link) else { throw .unknownLink(link, available: links) }
        guard fromSeconds.isFinite, fromSeconds >= 0, toSeconds > fromSeconds else {
            throw .invalidParameter("failure window \(fromSeconds)...\(toSeconds) s is empty or negative")
        }
        guard fromSeconds < durationSeconds else { throw .outsideTrace(startSeconds: fromSeconds, durationSeconds: durationSeconds) }
        let end = min(toSeconds, durationSeconds)
        let epsilon = 1e-9
        var steps = 1
        var cuts: [Double] = slices.map(\.startSeconds) + [fromSeconds]
        if end < durationSeconds { cuts.append(end) }
        if let step = stepSeconds {
            steps = max(1, Int(((toSeconds - fromSeconds) / step - epsilon).rounded(.up)))
            for k in 1..<max(1, steps) where fromSeconds + Double(k) * step < end - epsilon {
                cuts.append(fromSeconds + Double(k) * step)
            }
        }
        cuts.sort()
        var starts: [Double] = []
        for c in cuts where starts.last.map({ c - $0 > epsilon }) ?? true { starts.append(c) }
        var out: [TraceSlice] = []
        for s in starts {
            var conditions = slices[sliceIndex(at: s + epsilon)].conditions
            if s >= fromSeconds - epsilon && s < end - epsilon {
                let k = stepSeconds.map { Int(((s - fromSeconds) / $0 + epsilon).rounded(.down)) } ?? 0
                let fraction = min(1, Double(k + 1) / Double(steps))
                conditions[li] = transform(conditions[li], fraction)
            }
            out.append(TraceSlice(startSeconds: s, conditions: conditions))
        }
        return Trace(links: links, slices: out, durationSeconds: durationSeconds, source: source)
    }

    private static func short(_ x: Double) -> String {
        x == x.rounded() ? String(Int(x)) : String(x)
    }
}
