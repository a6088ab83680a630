#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// When a trial's replay started, on both clocks, so a recipe can place trace times (seconds since the
/// replay start) on the apps' CLOCK_REALTIME log timestamps. Written as `replay-start.json` in the
/// trial directory.
public struct ReplayStartRecord: Codable, Sendable, Equatable {
    /// CLOCK_MONOTONIC ns of the replay start (`TraceReplayer.startNs`).
    public var monotonicNs: UInt64
    /// The same instant on CLOCK_REALTIME, ns since the Unix epoch.
    public var realtimeNs: UInt64

    public static let fileName = "replay-start.json"

    /// The record for a replay that started at `startMonotonicNs`, using the clocks' current offset.
    public static func now(startMonotonicNs: UInt64) -> ReplayStartRecord {
        func read(_ c: clockid_t) -> UInt64 {
            var ts = timespec()
            clock_gettime(c, &ts)
            return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
        }
        let mono = read(CLOCK_MONOTONIC), real = read(CLOCK_REALTIME)
        return ReplayStartRecord(monotonicNs: startMonotonicNs, realtimeNs: real &- (mono &- min(mono, startMonotonicNs)))
    }

    public func write(to directory: String) throws {
        let data = try JSONEncoder().encode(self)
        try data.write(to: URL(fileURLWithPath: "\(directory)/\(Self.fileName)"))
    }

    public static func read(from directory: String) throws -> ReplayStartRecord {
        try JSONDecoder().decode(ReplayStartRecord.self, from: Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(fileName)")))
    }

    /// Seconds since the replay start of a CLOCK_REALTIME timestamp (negative before it).
    public func seconds(realtimeNs t: UInt64) -> Double { Double(Int64(bitPattern: t &- realtimeNs)) / 1e9 }
}

extension TrialPlan {
    /// In a value of `environment`, stands for the trial's directory (e.g.
    /// `INTNW_TROUBLE_LOG={trial}/trouble-%p.jsonl`); the trial runner substitutes it.
    public static let trialDirectoryPlaceholder = "{trial}"
}
