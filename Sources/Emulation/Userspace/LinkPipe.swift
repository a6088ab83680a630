#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Synchronization
import LinuxSupport
import SystemPackage

/// One direction of one emulated link: a thread that reads packets from the source TUN device, runs
/// them through a `DirectionEngine` and writes them to the destination TUN device on schedule.
///
/// The thread sleeps in `ppoll` with a nanosecond timeout until the next packet is due, a packet
/// arrives, or `update` kicks its eventfd. The monotonic clock is read once per wake-up.
// @unchecked: the engine is owned by the pipe's own thread; updates cross over in a Mutex, stop in an Atomic.
final class LinkPipe: @unchecked Sendable {
    let link: String
    let direction: LinkDirection
    private let sourceFD: Int32
    private let destinationFD: Int32
    private let wakeFD: Int32
    private var engine: DirectionEngine
    private let pending = Mutex<(DirectionParameters, Int)?>(nil)
    private let published: Mutex<(DirectionCounters, LatenessHistogram)>
    private let stopFlag = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let eventLog: EventLog?
    /// SCHED_FIFO priority of emulator threads (needs root; without it they run as normal threads).
    static let realtimePriority: Int32 = 50
    private(set) var realtimeGranted = false
    /// Packets read per wake-up at most, so a burst cannot push departures late.
    private let readBatch = 64

    init(link: String, direction: LinkDirection, sourceFD: Int32, destinationFD: Int32,
         parameters: DirectionParameters, queueLimitBytes: Int, arenaBytes: Int, seed: UInt64,
         maxPacketBytes: Int, eventLogPath: String?) throws {
        self.link = link
        self.direction = direction
        self.sourceFD = sourceFD
        self.destinationFD = destinationFD
        let w = cshims_eventfd()
        guard w >= 0 else { throw EmulatorError.system(call: "eventfd", errno: .last) }
        wakeFD = w
        let ring = PacketRing(arenaBytes: arenaBytes, descriptorCapacity: 1 << 16, maxPacketBytes: maxPacketBytes)
        engine = DirectionEngine(link: link, direction: direction, parameters: parameters,
                                 queueLimitBytes: queueLimitBytes, ring: ring, seed: seed)
        published = Mutex((DirectionCounters(link: link, direction: direction), LatenessHistogram()))
        eventLog = try eventLogPath.map { try EventLog(path: $0) }
    }

    deinit { close(wakeFD) }

    /// Hands new parameters to the thread; they apply at its next wake-up (immediately).
    func update(_ p: DirectionParameters, queueLimitBytes: Int) {
        pending.withLock { $0 = (p, queueLimitBytes) }
        _ = cshims_eventfd_kick(wakeFD)
    }

    var counters: DirectionCounters { published.withLock { $0.0 } }
    var lateness: LatenessHistogram { published.withLock { $0.1 } }

    func start() {
        let t = Thread { [self] in
            run()
            finished.signal()
        }
        t.name = "link-\(link)-\(direction.rawValue)"
        t.qualityOfService = .userInteractive
        t.start()
    }

    func stop() {
        stopFlag.store(true, ordering: .releasing)
        _ = cshims_eventfd_kick(wakeFD)
        finished.wait()
    }

    private func publish() {
        let snapshot = (engine.counters, engine.lateness)
        published.withLock { $0 = snapshot }
    }

    private func run() {
        // Default timer slack (50 µs) would blur departures: ask for the tightest wake-ups.
        _ = cshims_set_timer_slack_ns(1)
        // Packet departures are deadlines: a real-time thread wakes on time even while the machine
        // builds or runs the endpoints. It always blocks in ppoll, so it cannot starve the system.
        realtimeGranted = cshims_set_realtime_priority(LinkPipe.realtimePriority) == 0
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: engine.ring.maxPacketBytes, alignment: 64)
        defer { scratch.deallocate() }
        var fds = [pollfd(fd: sourceFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        var lastPublishNs: UInt64 = 0
        let dst = destinationFD
        let log = eventLog

        while !stopFlag.load(ordering: .acquiring) {
            var now = cshims_monotonic_ns()
            if fds[1].revents != 0 {
                _ = cshims_eventfd_drain(wakeFD)
                if let (p, q) = pending.withLock({ v -> (DirectionParameters, Int)? in defer { v = nil }; return v }) {
                    engine.update(p, queueLimitBytes: q, nowNs: now)
                }
            }
            if fds[0].revents != 0 {
                for _ in 0..<readBatch {
                    let target = engine.ring.reserve()
                    let buf = target ?? scratch
                    let n = read(sourceFD, buf.baseAddress, buf.count)
                    if n <= 0 { break }
                    if target == nil {
                        engine.countRingFull(length: n)
                        log?.drop(nowNs: now, bytes: n)
                        continue
                    }
                    let verdict = engine.admit(buf, length: n, nowNs: now)
                    if let log {
                        if verdict == .queued { log.arrival(nowNs: now, bytes: n) } else { log.drop(nowNs: now, bytes: n) }
                    }
                }
                now = cshims_monotonic_ns()
            }
            let nextTx = engine.serialize(nowNs: now)
            let nextDue = engine.deliver(nowNs: now) { bytes, arrivalNs in
                let ok = write(dst, bytes.baseAddress, bytes.count) == bytes.count
                if ok, let log { log.departure(nowNs: now, bytes: bytes.count, delayNs: now - arrivalNs) }
                return ok
            }
            if now &- lastPublishNs > 50_000_000 {
                publish()
                lastPublishNs = now
            }
            var timeout: Int64 = -1
            if let t = [nextTx, nextDue].compactMap({ $0 }).min() {
                timeout = t > now ? Int64(t - now) : 0
            }
            fds[0].revents = 0
            fds[1].revents = 0
            _ = fds.withUnsafeMutableBufferPointer { cshims_ppoll_ns($0.baseAddress, 2, timeout) }
        }
        publish()
        log?.close()
    }
}

/// Errors from the user-space emulator.
public enum EmulatorError: Error, CustomStringConvertible {
    case system(call: String, errno: Errno)
    case unknownLink(String)

    public var description: String {
        switch self {
        case .system(let call, let e): return "\(call): \(e)"
        case .unknownLink(let l): return "no emulated link named '\(l)'"
        }
    }
}
