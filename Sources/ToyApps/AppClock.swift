#if canImport(Glibc)
import Glibc
#endif

/// The two clocks the apps read.
///
/// Log timestamps are CLOCK_REALTIME because the analyzer compares them with pcap timestamps, which
/// are realtime. Schedules (request ticks, deadlines) use CLOCK_MONOTONIC so a clock step cannot
/// make a client burst or stall.
public enum AppClock {
    /// CLOCK_REALTIME in nanoseconds since the Unix epoch.
    @inline(__always)
    public static func realtimeNs() -> UInt64 { read(CLOCK_REALTIME) }

    /// CLOCK_MONOTONIC in nanoseconds (arbitrary origin).
    @inline(__always)
    public static func monotonicNs() -> UInt64 { read(CLOCK_MONOTONIC) }

    @inline(__always)
    private static func read(_ clock: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Whole nanoseconds in `seconds` (negative and NaN become 0).
    public static func nanoseconds(seconds: Double) -> UInt64 {
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return UInt64(min(seconds * 1e9, 1.8e19))
    }
}
