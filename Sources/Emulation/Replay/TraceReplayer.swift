#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Logging
import Synchronization

/// One thing the replayer did, for the run record.
public struct ReplayEvent: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable { case slice, carrierDown, carrierUp }
    public var kind: Kind
    /// Index of the trace slice (for `slice`), or of the slice that caused a carrier change.
    public var slice: Int
    public var link: String?
    /// Scheduled time, seconds since replay start.
    public var scheduledSeconds: Double
    /// How late it was applied, microseconds.
    public var lateMicroseconds: Double
}

/// Replays a trace in real time against a `Shaper`: at each slice boundary every link direction gets
/// its complete parameter set; WiFi loss becomes a carrier-down only after `notifyDelaySeconds`
/// (the OS notices long after TCP has stalled, see docs/trouble-detection.md), and WiFi's return brings
/// the carrier straight back. Runs on its own thread, sleeping on absolute CLOCK_MONOTONIC deadlines.
// @unchecked: state shared with the replay thread is in Mutex/Atomic; the rest is set before the thread starts.
public final class TraceReplayer: @unchecked Sendable {
    public let trace: Trace
    /// Link names of the trace mapped onto topology link names, by position.
    public let linkNames: [String]
    public let notifyDelaySeconds: Double
    /// Total replay time; a longer duration than the trace loops it.
    public let durationSeconds: Double
    private let shaper: Shaper
    private let logger: Logger
    private let stopFlag = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let eventsLock = Mutex<[ReplayEvent]>([])
    private let eventLogFD: Int32
    /// CLOCK_MONOTONIC ns when replay started (0 before `start`).
    public private(set) var startNs: UInt64 = 0
    /// Called on the replay thread after each carrier change (link name, up); set before `start`. It
    /// must return at once (hand the work to another thread): the replay thread is on a deadline.
    public var onCarrierChange: (@Sendable (String, Bool) -> Void)?

    public init(trace: Trace, linkNames: [String], shaper: Shaper, notifyDelaySeconds: Double,
                durationSeconds: Double? = nil, eventLogPath: String? = nil, logger: Logger) {
        self.trace = trace
        self.linkNames = linkNames
        self.shaper = shaper
        self.notifyDelaySeconds = notifyDelaySeconds
        self.durationSeconds = durationSeconds ?? trace.durationSeconds
        self.logger = logger
        eventLogFD = eventLogPath.map { open($0, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644) } ?? -1
    }

    deinit { if eventLogFD >= 0 { close(eventLogFD) } }

    /// Every event applied so far.
    public var events: [ReplayEvent] { eventsLock.withLock { $0 } }

    /// The parameters slice `s` implies for every link direction.
    public func parameters(for slice: TraceSlice) -> [(link: String, direction: LinkDirection, params: DirectionParameters)] {
        var out: [(String, LinkDirection, DirectionParameters)] = []
        for (i, name) in linkNames.enumerated() where i < slice.conditions.count {
            let available = trace.isAvailable(link: i, in: slice)
            for d in LinkDirection.allCases {
                out.append((name, d, DirectionParameters.from(slice.conditions[i], direction: d, available: available)))
            }
        }
        return out
    }

    /// The replay timeline: slice applications and carrier changes, sorted by time (seconds since start).
    /// A WiFi outage longer than the notification delay takes the carrier down `notifyDelaySeconds`
    /// after it starts and brings it back the moment WiFi returns; a shorter one never reaches the OS.
    public func timeline() -> [(seconds: Double, event: ReplayEvent.Kind, slice: Int, link: String?)] {
        var out: [(seconds: Double, event: ReplayEvent.Kind, slice: Int, link: String?)] = []
        // Slice starts, looping the trace until the duration is covered.
        var starts: [(seconds: Double, slice: Int)] = []
        var offset = 0.0
        repeat {
            for (si, slice) in trace.slices.enumerated() where offset + slice.startSeconds < durationSeconds {
                starts.append((offset + slice.startSeconds, si))
            }
            offset += trace.durationSeconds
        } while offset < durationSeconds && trace.durationSeconds > 0
        for s in starts { out.append((s.seconds, .slice, s.slice, nil)) }

        for li in linkNames.indices where trace.kind(ofLink: li) == .wifi {
            var outageStart: (seconds: Double, slice: Int)?
            func closeOutage(at end: Double) {
                guard let o = outageStart, end - o.seconds > notifyDelaySeconds else { return }
                let down = o.seconds + notifyDelaySeconds
                guard down < durationSeconds else { return }
                out.append((down, .carrierDown, o.slice, linkNames[li]))
                if end < durationSeconds { out.append((end, .carrierUp, o.slice, linkNames[li])) }
            }
            for s in starts {
                let available = trace.isAvailable(link: li, in: trace.slices[s.slice])
                if !available && outageStart == nil { outageStart = s }
                if available && outageStart != nil {
                    closeOutage(at: s.seconds)
                    outageStart = nil
                }
            }
            closeOutage(at: .infinity)
        }
        // Stable order: at equal times a slice applies before the carrier changes it causes.
        return out.enumerated().sorted {
            $0.element.seconds != $1.element.seconds ? $0.element.seconds < $1.element.seconds : $0.offset < $1.offset
        }.map(\.element)
    }

    /// Applies slice 0 immediately (so the links are shaped before anything runs) without starting.
    public func applyInitial() throws {
        for p in parameters(for: trace.slices[0]) {
            try shaper.apply(link: p.link, direction: p.direction, parameters: p.params)
        }
    }

    /// Starts replaying on a dedicated thread.
    public func start() {
        startNs = cshims_monotonic_ns()
        let plan = timeline()
        let t = Thread { [self] in
            _ = cshims_set_timer_slack_ns(1)
            // Slice boundaries are due within 1 ms: like the link threads, wake on time under load.
            _ = cshims_set_realtime_priority(LinkPipe.realtimePriority - 5)
            run(plan)
            finished.signal()
        }
        t.name = "trace-replayer"
        t.start()
    }

    /// Blocks until the replay reaches its duration or `stop` is called.
    public func wait() { finished.wait(); finished.signal() }

    /// Whether replay has finished.
    public var isFinished: Bool {
        if finished.wait(timeout: .now()) == .success { finished.signal(); return true }
        return false
    }

    public func stop() { stopFlag.store(true, ordering: .releasing) }

    private func sleep(untilNs deadline: UInt64) -> Bool {
        // Sleep in short steps so stop() is honoured promptly.
        while true {
            if stopFlag.load(ordering: .acquiring) { return false }
            let now = cshims_monotonic_ns()
            if now >= deadline { return true }
            _ = cshims_sleep_until_ns(min(deadline, now + 100_000_000))
        }
    }

    private func run(_ plan: [(seconds: Double, event: ReplayEvent.Kind, slice: Int, link: String?)]) {
        for item in plan {
            let due = startNs + UInt64(item.seconds * 1e9)
            guard sleep(untilNs: due) else { return }
            let late = Double(cshims_monotonic_ns() &- due) / 1000
            do {
                switch item.event {
                case .slice:
                    for p in parameters(for: trace.slices[item.slice]) {
                        try shaper.apply(link: p.link, direction: p.direction, parameters: p.params)
                    }
                case .carrierDown:
                    try shaper.setCarrier(link: item.link!, up: false)
                    onCarrierChange?(item.link!, false)
                case .carrierUp:
                    try shaper.setCarrier(link: item.link!, up: true)
                    onCarrierChange?(item.link!, true)
                }
            } catch {
                logger.error("replay: applying \(item.event.rawValue) at \(item.seconds) s failed: \(error)")
            }
            let ev = ReplayEvent(kind: item.event, slice: item.slice, link: item.link,
                                 scheduledSeconds: item.seconds, lateMicroseconds: late)
            eventsLock.withLock { $0.append(ev) }
            record(ev)
        }
        _ = sleep(untilNs: startNs + UInt64(durationSeconds * 1e9))
    }

    private func record(_ ev: ReplayEvent) {
        let what: String
        switch ev.kind {
        case .slice:
            let s = trace.slices[ev.slice]
            what = "slice \(ev.slice) " + linkNames.indices.map { i in
                let c = s.conditions[i]
                return "\(linkNames[i])=\(trace.isAvailable(link: i, in: s) ? "\(Int(c.downBytesPerSecond))/\(Int(c.upBytesPerSecond))B/s \(c.rttMilliseconds)ms" : "out")"
            }.joined(separator: " ")
        case .carrierDown: what = "\(ev.link!) carrier down (notification delay \(notifyDelaySeconds) s)"
        case .carrierUp: what = "\(ev.link!) carrier up"
        }
        logger.debug("replay t=\(String(format: "%.3f", ev.scheduledSeconds)) s (+\(Int(ev.lateMicroseconds)) µs): \(what)")
        if eventLogFD >= 0, let data = try? JSONEncoder().encode(ev) {
            var line = data
            line.append(0x0A)
            _ = line.withUnsafeBytes { write(eventLogFD, $0.baseAddress, $0.count) }
        }
    }
}
