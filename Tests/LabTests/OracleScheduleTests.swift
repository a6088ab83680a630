import Analysis
import Emulation
import Foundation
@testable import Lab
import Testing

/// `oracle.txt` is the capacity schedule the analyzer judges every bin against (and what
/// `--estimator oracle` hands to IntNW): it must list what the replayer applies, also past the
/// trace's end, where the replayer loops the trace.
@Suite("oracle schedule follows the replay")
struct OracleScheduleTests {
    /// Two slices: 4,000 B/s up, then 100 B/s up (below the shaper's 1 kB/s floor); 2 s long.
    static let trace: Trace = {
        let fast = LinkConditions(downBytesPerSecond: 8000, upBytesPerSecond: 4000, rttMilliseconds: 10)
        let slow = LinkConditions(downBytesPerSecond: 200, upBytesPerSecond: 100, rttMilliseconds: 10)
        return Trace(slices: [TraceSlice(startSeconds: 0, conditions: [fast, fast]), TraceSlice(startSeconds: 1, conditions: [slow, slow])],
                     durationSeconds: 2, source: "test")
    }()

    /// Catches: a schedule that lists the trace once while the replay (a trial draining past the
    /// trace's end) loops it, so the bins after the end were judged against the last slice (a
    /// drive's bins at 600-601 s: 86-94 kB "above" a 79.5 kB/s last slice while the emulator
    /// already ran the first slice's 94.5 kB/s again).
    @Test("a replay longer than the trace: the schedule loops it as the replayer does")
    func loopsLikeTheReplayer() throws {
        let replayer = TraceReplayer(trace: Self.trace, linkNames: ["wifi", "cellular"], shaper: NullShaper(),
                                     notifyDelaySeconds: 2, durationSeconds: 3.5, logger: .init(label: "t"))
        let starts = replayer.timeline().compactMap { $0.event == .slice ? (seconds: $0.seconds, slice: $0.slice) : nil }
        #expect(starts.map(\.seconds) == [0, 1, 2, 3] && starts.map(\.slice) == [0, 1, 0, 1])
        let spec = TopologySpec(prefix: "x")
        let text = BackgroundEstimates.oracleText(trace: Self.trace, spec: spec, startMonotonicNs: 0, sliceStarts: starts)
        let cell = spec.links.first { $0.name == "cellular" }!.interface
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("link \(cell) ") }
        // Catches also: the trace's raw rate where the shaper applies its floor (a drive's cellular
        // "0 B/s" seconds carried 1.5-2.9 kB through the 1 kB/s floor and were flagged).
        #expect(lines == ["link \(cell) 0.0 4000.0 8000.0 10.0 1", "link \(cell) 1.0 1000.0 1000.0 10.0 1",
                          "link \(cell) 2.0 4000.0 8000.0 10.0 1", "link \(cell) 3.0 1000.0 1000.0 10.0 1"])
        // The analyzer's allowance for the bin [2 s, 3 s) is the first slice's rate again.
        let dir = NSTemporaryDirectory() + "ian-oracle-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try text.write(toFile: dir + "/oracle.txt", atomically: true, encoding: .utf8)
        try #"{"realtimeNs": 1000000000000}"#.write(toFile: dir + "/replay-start.json", atomically: true, encoding: .utf8)
        let schedule = try #require(CapacitySchedule.load(runDirectory: dir))
        let allowed = try #require(schedule.allowedBytes(interface: cell, uplink: true, fromNanoseconds: 1_000_000_000_000 + 2_000_000_000,
                                                         toNanoseconds: 1_000_000_000_000 + 3_000_000_000))
        #expect(allowed >= 4000 && allowed < 4000 + 1500 + 50, "allowance \(allowed) B for a 4,000 B/s second")
        // Without the replay's slice starts the trace is listed once (the old schedule).
        let once = BackgroundEstimates.oracleText(trace: Self.trace, spec: spec, startMonotonicNs: 0)
        #expect(once.split(separator: "\n").filter { $0.hasPrefix("link \(cell) ") }.count == 2)
    }
}

/// A shaper that applies nothing (the replayer's timeline is all this test needs).
private final class NullShaper: Shaper {
    let kind = ShaperKind.userspace
    func attach(topology: TopologySpec) throws {}
    func apply(link: String, direction: LinkDirection, parameters: DirectionParameters) throws {}
    func setCarrier(link: String, up: Bool) throws {}
    func counters() -> [DirectionCounters] { [] }
    func detach() {}
}
