/// Which of a multisocket's foreground IROBs are not yet entirely on the wire: bytes still queued
/// in the sender, in a connection's user-space buffer, or unsent in its kernel send queue
/// (SIOCOUTQNSD). `delay-target:barrier=wire` holds other multisockets' and processes' background
/// data only while some foreground data on the interface is in that state (docs/scheduling.md).
/// Pure bookkeeping: the caller says which chunks went where and answers "how many bytes of this
/// connection are not yet sent" (`probe`), so it is tested with fakes.
struct ForegroundWireTracker {
    enum Stage: Equatable {
        /// Some bytes are still in the sender's queue.
        case queued
        /// Every byte was handed to connections (`fds`); not yet confirmed sent by their kernels.
        case written
        /// Confirmed: nothing of it waits in any user-space buffer or kernel send queue of ours.
        case onWire
    }

    struct Entry: Equatable {
        /// Interfaces (shared keys) the IROB counts on: where the chooser would put it when it was
        /// enqueued, and every interface one of its chunks went out on.
        var interfaces: Set<String>
        /// Connections that carried a chunk of it.
        var fds: Set<Int32>
        var stage: Stage
    }

    private(set) var entries: [UInt64: Entry] = [:]

    /// A foreground IROB was enqueued; `interface` is where the chooser would put it (nil: none yet).
    mutating func enqueued(_ id: UInt64, interface: String?) {
        var e = entries[id] ?? Entry(interfaces: [], fds: [], stage: .queued)
        if let interface { e.interfaces.insert(interface) }
        entries[id] = e
    }

    /// A chunk of foreground IROB `id` was appended to connection `fd` on `interface`; `isLast`:
    /// the sender has nothing more of it (a chunk re-sent after a connection failed makes it
    /// pending again).
    mutating func chunkQueued(_ id: UInt64, interface: String, fd: Int32, isLast: Bool) {
        var e = entries[id] ?? Entry(interfaces: [], fds: [], stage: .queued)
        e.interfaces.insert(interface)
        e.fds.insert(fd)
        e.stage = isLast ? .written : .queued
        entries[id] = e
    }

    /// Foreground IROB `id` was acknowledged (or the multisocket gave it up).
    mutating func acknowledged(_ id: UInt64) { entries[id] = nil }

    mutating func removeAll() { entries.removeAll() }

    /// Interfaces on which some foreground IROB is not yet confirmed on the wire.
    var pendingInterfaces: Set<String> {
        var s: Set<String> = []
        for e in entries.values where e.stage != .onWire { s.formUnion(e.interfaces) }
        return s
    }

    /// Asks `unsent` (bytes of connection `fd` not yet sent: its user-space buffer plus the
    /// kernel's SIOCOUTQNSD; nil when the connection is gone or cannot be asked) about every
    /// written IROB's connections, and marks on the wire those whose connections all have nothing
    /// left to send. A connection that is gone keeps its IROBs pending (their chunks may be re-sent
    /// elsewhere; until then, or until acknowledged, they are not known to be on the wire).
    /// Returns whether some written IROB still waits (the caller looks again soon: nothing wakes
    /// it when a kernel queue drains).
    mutating func probe(unsent: (Int32) -> Int?) -> Bool {
        var cache: [Int32: Int?] = [:]
        var waiting = false
        for (id, e) in entries where e.stage == .written {
            var clear = true
            for fd in e.fds {
                let n: Int?
                if let c = cache[fd] { n = c } else { n = unsent(fd); cache[fd] = .some(n) }
                if n == nil || n! > 0 { clear = false; break }
            }
            if clear { entries[id]?.stage = .onWire } else { waiting = true }
        }
        return waiting
    }

    /// Whether some IROB has every byte handed to connections but is not yet confirmed sent.
    var hasWritten: Bool { entries.values.contains { $0.stage == .written } }
}
