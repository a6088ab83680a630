import Histogram

/// Latency distribution of one app, in milliseconds. Percentiles come from an HdrHistogram with
/// 3 significant digits (1 µs resolution at the low end); count, mean, min and max are exact.
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: Int
    public var meanMs: Double
    public var stddevMs: Double
    public var minMs: Double
    public var p50Ms: Double
    public var p95Ms: Double
    public var p99Ms: Double
    public var maxMs: Double
}

/// A mean across trials with its 95% confidence interval. With a single trial there is no
/// interval (`halfWidth`, `low`, `high`, `method` nil). The interval is Student t (two-sided) unless
/// the quantity cannot be negative and the t interval would reach below zero: then it is a
/// percentile bootstrap of the mean (10,000 resamples, fixed seed), which stays inside the
/// observed range; `method` says which, `halfWidth` is then nil (the interval is asymmetric).
public struct MeanWithCI: Codable, Sendable, Equatable {
    public var mean: Double
    public var halfWidth: Double?
    public var low: Double?
    public var high: Double?
    /// Sample standard deviation (n − 1), nil for one sample.
    public var stddev: Double?
    public var n: Int
    /// `student-t` or `bootstrap-percentile`; nil when there is no interval.
    public var method: String?

    public init(mean: Double, halfWidth: Double?, low: Double?, high: Double?, stddev: Double?, n: Int, method: String? = nil) {
        self.mean = mean
        self.halfWidth = halfWidth
        self.low = low
        self.high = high
        self.stddev = stddev
        self.n = n
        self.method = method ?? (low == nil ? nil : "student-t")
    }

    /// "12.3 [10.1, 14.5] (95% CI, Student t, n=3)", or "12.3 (n=1, no interval)".
    public func formatted(_ f: (Double) -> String) -> String {
        guard let low, let high else { return "\(f(mean)) (n=\(n), no interval)" }
        let m = method == "student-t" ? "Student t" : "bootstrap"
        return "\(f(mean)) [\(f(low)), \(f(high))] (95% CI, \(m), n=\(n))"
    }
}

public enum Statistics {
    /// Summarizes latencies given in nanoseconds; nil when there are none.
    public static func latencySummary(nanoseconds values: [UInt64]) -> LatencySummary? {
        guard !values.isEmpty else { return nil }
        // 1 µs .. 1 h at 3 significant digits; values outside are clamped into range.
        var h = Histogram<UInt64>(lowestDiscernibleValue: 1000, highestTrackableValue: 3_600_000_000_000,
                                  numberOfSignificantValueDigits: .three)
        var sum = 0.0, minV = UInt64.max, maxV: UInt64 = 0
        for v in values {
            _ = h.record(min(v, h.highestTrackableValue))
            sum += Double(v)
            minV = min(minV, v)
            maxV = max(maxV, v)
        }
        let n = Double(values.count)
        let mean = sum / n
        var ss = 0.0
        for v in values { ss += (Double(v) - mean) * (Double(v) - mean) }
        let sd = values.count > 1 ? (ss / (n - 1)).squareRoot() : 0
        func ms(_ ns: Double) -> Double { ns / 1_000_000 }
        // HdrHistogram reports the highest value equivalent to the bucket; clamp into [min, max]
        // so a percentile never lies outside what was observed.
        func pct(_ p: Double) -> Double { ms(Double(min(max(h.valueAtPercentile(p), minV), maxV))) }
        return LatencySummary(count: values.count, meanMs: ms(mean), stddevMs: ms(sd), minMs: ms(Double(minV)),
                              p50Ms: pct(50), p95Ms: pct(95), p99Ms: pct(99), maxMs: ms(Double(maxV)))
    }

    /// Jain's fairness index (Σx)² / (n·Σx²): 1 when all equal, 1/n when one takes everything.
    /// nil for no values or all zeros.
    public static func jainIndex(_ xs: [Double]) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.reduce(0, +)
        let s2 = xs.reduce(0) { $0 + $1 * $1 }
        guard s2 > 0 else { return nil }
        return s * s / (Double(xs.count) * s2)
    }

    /// Mean with a 95% confidence interval for a quantity that cannot be negative (a rate, a
    /// latency, a byte count): Student t when its lower bound is ≥ 0, otherwise a percentile
    /// bootstrap of the mean.
    public static func nonNegativeMeanWithCI(_ xs: [Double]) -> MeanWithCI? {
        guard var c = meanWithCI(xs), let low = c.low, low < 0 else { return meanWithCI(xs) }
        let (lo, hi) = bootstrapMeanInterval(xs)
        c.low = lo
        c.high = hi
        c.halfWidth = nil
        c.method = "bootstrap-percentile"
        return c
    }

    /// 2.5th and 97.5th percentiles of the means of 10,000 resamples (with replacement), with a
    /// fixed seed so reports are reproducible.
    public static func bootstrapMeanInterval(_ xs: [Double], resamples: Int = 10_000) -> (Double, Double) {
        guard xs.count > 1 else { return (xs.first ?? 0, xs.first ?? 0) }
        var state: UInt64 = 0x1234_5678_9ABC_DEF0
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var means = [Double](repeating: 0, count: resamples)
        let n = UInt64(xs.count)
        for r in 0 ..< resamples {
            var sum = 0.0
            for _ in 0 ..< xs.count { sum += xs[Int(next() % n)] }
            means[r] = sum / Double(xs.count)
        }
        means.sort()
        return (means[Int(0.025 * Double(resamples))], means[min(resamples - 1, Int(0.975 * Double(resamples)))])
    }

    /// Mean with a 95% Student-t confidence interval; nil for no values.
    public static func meanWithCI(_ xs: [Double]) -> MeanWithCI? {
        guard !xs.isEmpty else { return nil }
        let n = Double(xs.count)
        let mean = xs.reduce(0, +) / n
        guard xs.count > 1 else { return MeanWithCI(mean: mean, halfWidth: nil, low: nil, high: nil, stddev: nil, n: 1) }
        let sd = (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot()
        let hw = studentT975(degreesOfFreedom: xs.count - 1) * sd / n.squareRoot()
        return MeanWithCI(mean: mean, halfWidth: hw, low: mean - hw, high: mean + hw, stddev: sd, n: xs.count)
    }

    private static let t975: [Double] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ]
    private static let t975Tail: [(df: Double, t: Double)] = [(30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980), (.infinity, 1.960)]

    /// The 0.975 quantile of Student's t distribution (95% two-sided), from the standard table;
    /// beyond 30 degrees of freedom interpolated linearly in 1/df.
    public static func studentT975(degreesOfFreedom df: Int) -> Double {
        precondition(df >= 1, "degrees of freedom must be ≥ 1")
        if df <= 30 { return t975[df - 1] }
        let x = 1 / Double(df)
        for k in 0 ..< t975Tail.count - 1 {
            let (d0, t0) = t975Tail[k], (d1, t1) = t975Tail[k + 1]
            if Double(df) <= d1 {
                let x0 = 1 / d0, x1 = d1.isInfinite ? 0 : 1 / d1
                return t0 + (t1 - t0) * (x0 - x) / (x0 - x1)
            }
        }
        return 1.960
    }
}
