/// Process-wide foreground state of one network namespace: what every client multisocket of this
/// process publishes and consults before sending background data on an interface. Backed by the
/// shared segment (other processes) when it can be used; otherwise by process-local state only.
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// Which shared segment client multisockets coordinate through.
public enum SharedSchedulingSegment: Sendable, Equatable {
    /// `/intnw-u<uid>-n<inode of the network namespace the multisocket's sockets live in>`.
    case perNamespace
    /// A segment of this name (tests, or a deliberate group of processes). Starts with "/".
    case named(String)
    /// No cross-process coordination; multisockets of this process still coordinate.
    case processLocal
}

// @unchecked: the per-interface dictionaries are touched only under `lock` (a Mutex guarding no value of its own).
final class ForegroundRegistry: @unchecked Sendable {
    /// What a multisocket sees about an interface before sending background data.
    struct View {
        /// Latest foreground activity on the interface by anyone (monotonic ns; 0: never).
        var lastForegroundNs: UInt64
        /// Other multisockets of this process with foreground data enqueued or unACKed on it.
        var otherMultisockets: Int
        /// Other live processes with foreground data enqueued or unACKed on it.
        var otherProcesses: Int
        /// Of those, the ones whose foreground data there is not yet entirely sent (in user space
        /// or unsent in a kernel send queue): what `delay-target:barrier=wire` waits for.
        var otherMultisocketsUnsent: Int = 0
        var otherProcessesUnsent: Int = 0
        /// Dead processes whose contributions this look reclaimed.
        var reclaimedPIDs: [UInt64]
    }

    private static let registries = Mutex<[String: ForegroundRegistry]>([:])

    /// The registry of segment `choice` for sockets living in the namespace at `namespacePath`
    /// (nil: this process's own namespace). One per process and segment; `logger` reports the
    /// outcome of opening it (once).
    static func registry(for choice: SharedSchedulingSegment, namespacePath: String?, logger: Logger) -> ForegroundRegistry {
        let key: String
        switch choice {
        case .processLocal:
            key = ""
        case .named(let n):
            key = n
        case .perNamespace:
            if let inode = ProcessIdentity.inode(of: namespacePath ?? "/proc/self/ns/net") {
                key = SharedLayout.segmentName(uid: UInt32(geteuid()), namespaceInode: inode)
            } else {
                logger.error("cannot read the network namespace inode of \(namespacePath ?? "/proc/self/ns/net"); background scheduling coordinates within this process only")
                key = ""
            }
        }
        return registries.withLock { registries in
            if let r = registries[key] { return r }
            let r = ForegroundRegistry(segmentName: key.isEmpty ? nil : key, logger: logger)
            registries[key] = r
            return r
        }
    }

    private let lock = Mutex(())
    let segment: SharedSegment?
    /// Why the segment is not used, when a segment was asked for.
    let segmentError: SharedStateError?
    private var slots: [String: Int?] = [:]
    private var sessionsWithForeground: [String: Int] = [:]
    private var sessionsWithUnsent: [String: Int] = [:]
    private var lastForeground: [String: UInt64] = [:]
    private let logger: Logger

    init(segmentName: String?, logger: Logger) {
        self.logger = logger
        guard let segmentName else {
            segment = nil
            segmentError = nil
            return
        }
        do {
            segment = try SharedSegment.open(name: segmentName)
            segmentError = nil
            logger.debug("shared scheduling segment opened", metadata: ["segment": "\(segmentName)"])
        } catch {
            segment = nil
            segmentError = error
            logger.error("\(error); background scheduling coordinates within this process only")
        }
    }

    /// The segment slot of `interface` (cached; nil when there is no segment or no free slot).
    private func slot(_ interface: String) -> Int? {
        guard let segment else { return nil }
        if let s = slots[interface] { return s }
        let s = segment.interfaceSlot(named: interface)
        if s == nil, segment.allocationLockTimedOut {
            logger.warning("shared scheduling segment's allocation lock is held by a live process for over \(Int(SharedSegment.allocationLockTimeoutSeconds * 1000)) ms; \(interface) coordinates within this process only",
                           metadata: ["segment": "\(segment.name)"])
        } else if s == nil {
            logger.warning("shared scheduling segment has no free interface slot; \(interface) coordinates within this process only",
                           metadata: ["segment": "\(segment.name)"])
        }
        slots[interface] = .some(s)
        return s
    }

    /// A multisocket starts (`true`) or stops having foreground data enqueued or unACKed on
    /// `interface`. The process's contribution to the shared count follows the first and last.
    func setForegroundOutstanding(_ on: Bool, interface: String) {
        lock.withLock { _ in
            let before = sessionsWithForeground[interface, default: 0]
            let after = max(0, before + (on ? 1 : -1))
            sessionsWithForeground[interface] = after == 0 ? nil : after
            if (before == 0) != (after == 0), let s = slot(interface) {
                segment?.setContribution(after > 0, interface: s)
            }
        }
    }

    /// A multisocket starts (`true`) or stops having foreground data on `interface` that is not
    /// yet entirely sent. Multisockets set it before `setForegroundOutstanding(true, ...)` (readers
    /// must never see foreground outstanding without it while it is unsent).
    func setForegroundUnsent(_ on: Bool, interface: String) {
        lock.withLock { _ in
            let before = sessionsWithUnsent[interface, default: 0]
            let after = max(0, before + (on ? 1 : -1))
            sessionsWithUnsent[interface] = after == 0 ? nil : after
            if (before == 0) != (after == 0), let s = slot(interface) {
                segment?.setUnsent(after > 0, interface: s)
            }
        }
    }

    /// Foreground data was sent or received on `interface` at `nowNs`.
    func noteForeground(interface: String, nowNs: UInt64) {
        lock.withLock { _ in
            if lastForeground[interface, default: 0] < nowNs { lastForeground[interface] = nowNs }
            if let s = slot(interface) { segment?.noteForeground(interface: s, nowNs: nowNs) }
        }
    }

    /// The interface as a multisocket sees it; `selfOutstanding` (`selfUnsent`) says whether that
    /// multisocket itself is one of those with foreground data (not yet sent) there: it does not
    /// wait for itself.
    func view(interface: String, selfOutstanding: Bool, selfUnsent: Bool = false) -> View {
        lock.withLock { _ in
            var v = View(lastForegroundNs: lastForeground[interface, default: 0],
                         otherMultisockets: max(0, sessionsWithForeground[interface, default: 0] - (selfOutstanding ? 1 : 0)),
                         otherProcesses: 0, reclaimedPIDs: [])
            v.otherMultisocketsUnsent = max(0, sessionsWithUnsent[interface, default: 0] - (selfUnsent ? 1 : 0))
            if let s = slot(interface), let segment {
                v.lastForegroundNs = max(v.lastForegroundNs, segment.lastForeground(interface: s))
                let scan = segment.scanOthers(interface: s)
                v.otherProcesses = scan.others
                v.otherProcessesUnsent = scan.othersUnsent
                v.reclaimedPIDs = scan.reclaimed
            }
            return v
        }
    }

    // MARK: - Interface-wide background budget

    /// Per interface: background bytes each multisocket of this process last reported in kernel
    /// send queues, with when.
    private var background: [String: [ObjectIdentifier: (bytes: Int, atNs: UInt64)]] = [:]

    /// Multisocket `owner` has `bytes` of background data unacknowledged in kernel send queues on
    /// `interface` (0 when it has none). The process's sum of fresh reports goes to the segment.
    func reportBackground(owner: ObjectIdentifier, interface: String, bytes: Int, nowNs: UInt64) {
        lock.withLock { _ in
            background[interface, default: [:]][owner] = (max(0, bytes), nowNs)
            if let s = slot(interface), let segment {
                segment.publishBackground(bytes: processBackground(interface, except: nil, nowNs: nowNs), interface: s, nowNs: nowNs)
            }
        }
    }

    /// Background bytes in kernel send queues on `interface` that are not `owner`'s: other
    /// multisockets of this process and, through the segment, other processes.
    func backgroundElsewhere(owner: ObjectIdentifier, interface: String, nowNs: UInt64) -> Int {
        lock.withLock { _ in
            var total = processBackground(interface, except: owner, nowNs: nowNs)
            if let s = slot(interface), let segment { total += segment.otherBackground(interface: s, nowNs: nowNs) }
            return total
        }
    }

    /// How many multisockets other than `owner` (in this process, and other processes through the
    /// segment, each counted once) decide about background data on `interface` now: a path
    /// probe's drain must leave them time to find the interface drained too.
    func backgroundWritersElsewhere(owner: ObjectIdentifier, interface: String, nowNs: UInt64) -> Int {
        lock.withLock { _ in
            let freshNs = SharedLayout.backgroundFreshMilliseconds * 1_000_000
            var n = background[interface, default: [:]].filter { $0.key != owner && ($0.value.atNs >= nowNs || nowNs - $0.value.atNs <= freshNs) }.count
            if let s = slot(interface), let segment { n += segment.otherBackgroundWriters(interface: s, nowNs: nowNs) }
            return n
        }
    }

    /// The multisocket `owner` is gone: its background reports stop counting.
    func forgetBackground(owner: ObjectIdentifier) {
        lock.withLock { _ in
            for key in background.keys { background[key]?[owner] = nil }
            for key in delivered.keys { if let d = delivered[key]?.removeValue(forKey: owner) { retiredDelivered[key, default: 0] &+= d } }
        }
    }

    /// Per interface: cumulative bytes acknowledged on each multisocket's background-sending
    /// connections, and what multisockets that closed had (so the process's sum never goes back).
    private var delivered: [String: [ObjectIdentifier: UInt64]] = [:]
    private var retiredDelivered: [String: UInt64] = [:]

    /// Multisocket `owner`'s cumulative acknowledged bytes on `interface`; returns the interface's
    /// total over every multisocket of this process and every other process (a counter: its
    /// growth over time is the interface's delivery rate).
    func reportDelivered(owner: ObjectIdentifier, interface: String, cumulativeBytes: UInt64) -> UInt64 {
        lock.withLock { _ in
            delivered[interface, default: [:]][owner] = cumulativeBytes
            let mine = delivered[interface, default: [:]].values.reduce(retiredDelivered[interface, default: 0], &+)
            guard let s = slot(interface), let segment else { return mine }
            segment.publishDelivered(bytes: mine, interface: s)
            return mine &+ segment.otherDelivered(interface: s)
        }
    }

    private func processBackground(_ interface: String, except: ObjectIdentifier?, nowNs: UInt64) -> Int {
        let freshNs = SharedLayout.backgroundFreshMilliseconds * 1_000_000
        var total = 0
        for (owner, e) in background[interface, default: [:]] where owner != except && (e.atNs >= nowNs || nowNs - e.atNs <= freshNs) {
            total += e.bytes
        }
        return total
    }

    /// The segment's published count for `interface` (tests and diagnostics).
    func publishedCount(interface: String) -> UInt64? {
        lock.withLock { _ in
            guard let s = slot(interface), let segment else { return nil }
            return segment.foregroundCount(interface: s)
        }
    }
}
