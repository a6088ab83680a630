/// How late this host wakes a thread set up as the user-space emulator's link threads are (timer
/// slack 1 ns, real-time priority when granted, `ppoll` with a nanosecond timeout), measured
/// before an experiment so that a host whose timers stall is named before its trials are judged
/// invalid one by one. A VM whose timer interrupts come late (an idle 1 ms sleep overshooting
/// by 2.6 ms was seen on the project's machine) makes the emulator's departures late by as much,
/// and the trial's fidelity guard then discards it.
import CShims
import Foundation
import Synchronization

public enum HostTimerCheck {
    public struct Reading: Sendable, Equatable {
        /// Wake-ups measured, and the sleep each asked for.
        public var wakeUps: Int
        public var intervalNanoseconds: UInt64
        /// The lateness (actual - requested wake-up) that 99% of the wake-ups did not exceed, and
        /// the largest, microseconds.
        public var p99Microseconds: Int
        public var maxMicroseconds: Int
        /// Whether the thread got real-time priority (as the emulator's threads ask for).
        public var realtime: Bool

        public init(wakeUps: Int, intervalNanoseconds: UInt64 = 1_000_000, p99Microseconds: Int, maxMicroseconds: Int, realtime: Bool) {
            self.wakeUps = wakeUps
            self.intervalNanoseconds = intervalNanoseconds
            self.p99Microseconds = p99Microseconds
            self.maxMicroseconds = maxMicroseconds
            self.realtime = realtime
        }

        /// "1000 sleeps of 1 ms woke up to 85 µs late (p99; largest 267 µs" (the caller closes it).
        public var openSummary: String {
            let ms = Double(intervalNanoseconds) / 1e6
            let interval = ms == ms.rounded() ? "\(Int(ms)) ms" : "\(ms) ms"
            return "\(wakeUps) sleeps of \(interval) woke up to \(p99Microseconds) µs late (p99; largest \(maxMicroseconds) µs"
        }
    }

    /// Sleeps `wakeUps` times for `intervalNanoseconds` each on a thread of its own and reads how
    /// late each wake-up came (about `wakeUps` x `intervalNanoseconds` in all: 1 s by default).
    public static func measure(wakeUps: Int = 1000, intervalNanoseconds: UInt64 = 1_000_000) -> Reading {
        let n = max(1, wakeUps)
        let result = ResultBox()
        let done = DispatchSemaphore(value: 0)
        let t = Thread {
            _ = cshims_set_timer_slack_ns(1)
            let realtime = cshims_set_realtime_priority(LinkPipe.realtimePriority) == 0
            var histogram = LatenessHistogram()
            for _ in 0..<n {
                let due = cshims_monotonic_ns() + intervalNanoseconds
                _ = cshims_ppoll_ns(nil, 0, Int64(intervalNanoseconds))
                let now = cshims_monotonic_ns()
                histogram.record(nanoseconds: now > due ? now - due : 0)
            }
            result.set(Reading(wakeUps: n, intervalNanoseconds: intervalNanoseconds, p99Microseconds: histogram.percentileMicroseconds(0.99),
                               maxMicroseconds: Int(histogram.maxNanoseconds / 1000), realtime: realtime))
            done.signal()
        }
        t.name = "host-timer-check"
        t.qualityOfService = .userInteractive
        t.start()
        done.wait()
        return result.get()
    }

    /// Hands the reading from the measuring thread to the caller.
    private final class ResultBox: Sendable {
        private let reading = Mutex(Reading(wakeUps: 0, p99Microseconds: 0, maxMicroseconds: 0, realtime: false))
        func set(_ r: Reading) { reading.withLock { $0 = r } }
        func get() -> Reading { reading.withLock { $0 } }
    }
}
