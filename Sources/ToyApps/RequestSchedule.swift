/// When an FG client sends its requests: on a fixed grid `start + k × interval` (monotonic ns).
///
/// A request is sent only after the previous one was answered. If the answer arrives after the next
/// grid point, the next request goes out as soon as the answer arrives; grid points missed in the
/// meantime are skipped (no burst to catch up) and later requests return to the grid's phase.
public struct RequestSchedule: Sendable, Equatable {
    /// Monotonic ns of the first request.
    public let startNs: UInt64
    public let intervalNs: UInt64
    /// Grid index of the most recent request.
    public private(set) var tick: UInt64 = 0
    /// Requests sent late because the previous answer came after their grid point.
    public private(set) var lateSends: UInt64 = 0

    public init(startNs: UInt64, intervalNs: UInt64) {
        precondition(intervalNs > 0, "request interval must be positive")
        self.startNs = startNs
        self.intervalNs = intervalNs
    }

    /// When the first request is due.
    public var firstDueNs: UInt64 { startNs }

    /// The first point of the grid `originNs + k × intervalNs` (k ≥ 0) at or after `notBeforeNs`:
    /// where a client whose grid is tied to an outside clock (a trace's replay) starts, so that
    /// clients started at different moments send at the same phase of that clock.
    public static func alignedStart(originNs: UInt64, intervalNs: UInt64, notBeforeNs: UInt64) -> UInt64 {
        precondition(intervalNs > 0, "request interval must be positive")
        guard notBeforeNs > originNs else { return originNs }
        let k = (notBeforeNs - originNs + intervalNs - 1) / intervalNs
        return originNs &+ k &* intervalNs
    }

    /// After the previous request was answered at `nowNs`: when the next one is due (never
    /// earlier than its grid point; `nowNs` itself when the grid point has passed).
    public mutating func next(afterAnswerAtNs nowNs: UInt64) -> UInt64 {
        tick += 1
        let due = startNs &+ tick &* intervalNs
        if due >= nowNs { return due }
        lateSends += 1
        // The request sent now takes the place of the latest grid point already passed.
        tick = (nowNs - startNs) / intervalNs
        return nowNs
    }
}
