/// Random numbers that are identical on every machine for a given seed.
///
/// The trace generator must produce byte-identical traces everywhere (the shipped traces are checked
/// against a regeneration), so nothing here depends on the standard library's random algorithms (which
/// may change between Swift releases) or on the C library's `log`/`exp` (whose last bit can differ
/// between libm versions and CPUs). Only IEEE-754 `+ - * /` and `squareRoot()`, which are correctly
/// rounded everywhere, are used; Swift does not fuse or reorder floating-point operations on its own.
///
/// The project's one seeded generator: traces, synthetic captures, netem's per-update seeds and
/// randomized tests all use it (`RandomNumberGenerator`, so `Int.random(in:using:)` works too).
public struct DeterministicRNG: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// SplitMix64's output function on `value`: a well-mixed 64-bit hash (the first number a
    /// generator seeded with `value` returns).
    public static func mix(_ value: UInt64) -> UInt64 {
        var g = DeterministicRNG(seed: value)
        return g.next()
    }

    /// Next 64 random bits (Steele, Lea and Flood's SplitMix64 generator).
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func unit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Uniform in [low, high).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * unit()
    }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { unit() < p }

    /// Standard normal (Marsaglia's polar method: needs only log and sqrt).
    public mutating func normal() -> Double {
        while true {
            let u = 2 * unit() - 1
            let v = 2 * unit() - 1
            let s = u * u + v * v
            if s > 0 && s < 1 {
                return u * (-2 * DeterministicMath.log(s) / s).squareRoot()
            }
        }
    }

    /// Log-normal with the given median and shape `sigma` (standard deviation of the logarithm).
    public mutating func logNormal(median: Double, sigma: Double) -> Double {
        median * DeterministicMath.exp(sigma * normal())
    }
}

/// `log` and `exp` from basic arithmetic only, accurate to a few ulps, identical on every IEEE machine.
public enum DeterministicMath {
    private static let ln2 = 0.693_147_180_559_945_3
    // ln 2 split so that k * ln2Hi is exact for |k| < 2^20 (Cody and Waite): keeps large arguments accurate.
    private static let ln2Hi = 6.931_471_803_691_238_164_90e-01
    private static let ln2Lo = 1.908_214_929_270_587_700_02e-10
    private static let sqrt2 = 1.414_213_562_373_095_1

    /// Natural logarithm for finite x > 0 (returns -inf for 0 and NaN for negative or NaN input).
    public static func log(_ x: Double) -> Double {
        if x.isNaN || x < 0 { return .nan }
        if x == 0 { return -.infinity }
        if x.isInfinite { return .infinity }
        // x = m * 2^k with m in [1, 2); fold m into [sqrt(1/2), sqrt(2)) so the series converges fast.
        var k = Double(x.exponent)
        var m = x.significand
        if m > sqrt2 {
            m /= 2
            k += 1
        }
        // ln m = 2 artanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m-1)/(m+1), |s| < 0.172.
        let s = (m - 1) / (m + 1)
        let s2 = s * s
        var term = s
        var sum = s
        var n = 3.0
        for _ in 0..<14 {
            term *= s2
            sum += term / n
            n += 2
        }
        return k * ln2Hi + (2 * sum + k * ln2Lo)
    }

    /// e^x (overflows to +inf above ~709.78, underflows to 0 below ~-745).
    public static func exp(_ x: Double) -> Double {
        if x.isNaN { return .nan }
        if x > 709.78 { return .infinity }
        if x < -745.2 { return 0 }
        // x = k ln2 + r, |r| <= ln2/2; e^r by its Taylor series; scaling by 2^k is exact.
        let k = (x / ln2).rounded()
        let r = (x - k * ln2Hi) - k * ln2Lo
        var term = 1.0
        var sum = 1.0
        var n = 1.0
        for _ in 0..<22 {
            term *= r / n
            sum += term
            n += 1
        }
        let kInt = Int(k)
        if kInt < -1000 {
            // Scale in two steps so the intermediate stays normal.
            return Double(sign: .plus, exponent: kInt + 60, significand: sum) * 0x1p-60
        }
        return Double(sign: .plus, exponent: kInt, significand: sum)
    }
}
