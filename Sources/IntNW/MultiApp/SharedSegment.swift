/// The one type that owns the multi-app shared-memory mapping (layout: `SharedLayout`). Everything
/// else sees safe values: interface slot numbers, counts, timestamps.
///
/// Over 400 lines on purpose: every raw-pointer access to the shared words stays in this one file,
/// so the unsafe surface can be reviewed in one place.
#if canImport(Glibc)
import Glibc
#endif
import Atomics
import LinuxSupport
import SystemPackage

/// Why the shared segment cannot be used. The process then keeps its scheduling state to itself
/// (multisockets of this process still coordinate; other processes are not seen).
public enum SharedStateError: Error, Equatable, Sendable, CustomStringConvertible {
    case system(call: String, name: String, errno: Errno)
    /// The segment exists but belongs to another user or others may read or write it.
    case foreign(name: String, detail: String)
    /// The segment has another layout (magic, version or size): it is not trusted.
    case incompatible(name: String, detail: String)
    /// The segment was created but its creator never published the layout (it died while
    /// initializing, or it is not an IntNW segment).
    case uninitialized(name: String)
    /// Every process slot is held by a live process.
    case full(name: String)

    public var description: String {
        switch self {
        case .system(let call, let name, let e):
            "shared scheduling segment \(name): \(call) failed: \(e) (errno \(e.rawValue))"
        case .foreign(let name, let d):
            "shared scheduling segment /dev/shm\(name) is not ours (\(d)); not used"
        case .incompatible(let name, let d):
            "shared scheduling segment /dev/shm\(name) has an unknown or corrupt layout (\(d)); not used (remove it once no IntNW process runs)"
        case .uninitialized(let name):
            "shared scheduling segment /dev/shm\(name) was never initialized; not used (remove it once no IntNW process runs)"
        case .full(let name):
            "shared scheduling segment \(name): all \(SharedLayout.processSlotCount) process slots are held by live processes"
        }
    }
}

// @unchecked: the shared words are atomics; slot/generation/heldMask are touched only by the owning scheduler under its loop lock.
final class SharedSegment: @unchecked Sendable {
    typealias Storage = UnsafeAtomic<UInt64>.Storage

    let name: String
    private let words: UnsafeMutablePointer<Storage>
    private let identity: ProcessIdentity
    /// This process's slot and the generation it claimed it with.
    private var slot = -1
    private var generation: UInt64 = 0
    /// Interface bits this process holds (restored if its slot was ever wrongly reclaimed).
    private var heldMask: UInt64 = 0
    /// Interface bits of this process's unsent mask (`SharedLayout.procUnsentMask`).
    private var heldUnsentMask: UInt64 = 0

    private init(name: String, words: UnsafeMutablePointer<Storage>, identity: ProcessIdentity) {
        self.name = name
        self.words = words
        self.identity = identity
    }

    deinit {
        if slot >= 0 {
            for i in 0..<SharedLayout.interfaceSlotCount where heldMask & (1 << UInt64(i)) != 0 {
                setContribution(false, interface: i)
            }
            word(SharedLayout.processSlot(slot) + SharedLayout.procUnsentMask).store(0, ordering: .sequentiallyConsistent)
            for i in 0..<SharedLayout.interfaceSlotCount {
                word(SharedLayout.backgroundEntry(process: slot, interface: i)).store(0, ordering: .relaxed)
                word(SharedLayout.deliveredEntry(process: slot, interface: i)).store(0, ordering: .relaxed)
            }
            let o = word(SharedLayout.processSlot(slot) + SharedLayout.procOwner)
            let cur = o.load(ordering: .sequentiallyConsistent)
            if SharedLayout.pid(ofOwner: cur) == identity.pid {
                _ = o.compareExchange(expected: cur,
                                      desired: SharedLayout.owner(pid: 0, generation: generation, mask: 0),
                                      ordering: .sequentiallyConsistent)
            }
        }
        munmap(UnsafeMutableRawPointer(words), SharedLayout.totalBytes)
    }

    @inline(__always) private func word(_ index: Int) -> UnsafeAtomic<UInt64> {
        UnsafeAtomic(at: words + index)
    }

    // MARK: - Opening

    /// Opens (or creates) segment `name` (e.g. `/intnw-u0-n4026531840`), validates it and claims a
    /// process slot. `initWaitSeconds` bounds the wait for a concurrent creator to publish it.
    static func open(name: String, identity: ProcessIdentity = .current(),
                     initWaitSeconds: Double = 1) throws(SharedStateError) -> SharedSegment {
        let size = SharedLayout.totalBytes
        var created = false
        var fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            created = true
            // umask may only remove bits; make sure the owner can read and write.
            _ = fchmod(fd, 0o600)
            if ftruncate(fd, off_t(size)) != 0 {
                let e = Errno.last
                close(fd)
                shm_unlink(name)
                throw .system(call: "ftruncate", name: name, errno: e)
            }
        } else if Errno.last == .fileExists {
            fd = shm_open(name, O_RDWR | O_CLOEXEC, 0)
            if fd < 0 { throw .system(call: "shm_open", name: name, errno: .last) }
        } else {
            throw .system(call: "shm_open", name: name, errno: .last)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .system(call: "fstat", name: name, errno: .last) }
        if st.st_uid != geteuid() {
            throw .foreign(name: name, detail: "owned by uid \(st.st_uid), this process runs as uid \(geteuid())")
        }
        if st.st_mode & 0o077 != 0 {
            throw .foreign(name: name, detail: "mode \(String(st.st_mode & 0o777, radix: 8)) lets other users in")
        }
        let deadline = monotonicSeconds() + initWaitSeconds
        if !created {
            // A concurrent creator may not have sized it yet.
            while st.st_size == 0 && monotonicSeconds() < deadline {
                usleep(1_000)
                if fstat(fd, &st) != 0 { throw .system(call: "fstat", name: name, errno: .last) }
            }
            if st.st_size == 0 { throw .uninitialized(name: name) }
            if Int(st.st_size) != size {
                throw .incompatible(name: name, detail: "\(st.st_size) bytes, layout v\(SharedLayout.version) needs \(size)")
            }
        }
        guard let raw = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), raw != MAP_FAILED else {
            throw .system(call: "mmap", name: name, errno: .last)
        }
        let words = raw.bindMemory(to: Storage.self, capacity: SharedLayout.totalWords)
        let seg = SharedSegment(name: name, words: words, identity: identity)
        if created {
            seg.word(SharedLayout.sizeWord).store(UInt64(size), ordering: .relaxed)
            seg.word(SharedLayout.interfaceCountWord).store(UInt64(SharedLayout.interfaceSlotCount), ordering: .relaxed)
            seg.word(SharedLayout.processCountWord).store(UInt64(SharedLayout.processSlotCount), ordering: .relaxed)
            seg.word(SharedLayout.creatorWord).store(identity.pid, ordering: .relaxed)
            // Published last: whoever sees it sees everything above.
            seg.word(SharedLayout.magicWord).store(SharedLayout.magicAndVersion, ordering: .releasing)
        } else {
            var magic = seg.word(SharedLayout.magicWord).load(ordering: .acquiring)
            while magic == 0 && monotonicSeconds() < deadline {
                usleep(1_000)
                magic = seg.word(SharedLayout.magicWord).load(ordering: .acquiring)
            }
            if magic == 0 { throw .uninitialized(name: name) }
            try seg.validateHeader(magic)
        }
        try seg.register()
        return seg
    }

    private func validateHeader(_ magic: UInt64) throws(SharedStateError) {
        if magic >> 32 != SharedLayout.magic {
            throw .incompatible(name: name, detail: "magic 0x\(String(magic >> 32, radix: 16)) is not IntNW's")
        }
        if magic & 0xFFFF_FFFF != SharedLayout.version {
            throw .incompatible(name: name, detail: "layout version \(magic & 0xFFFF_FFFF), this library knows \(SharedLayout.version)")
        }
        let fields: [(String, Int, UInt64)] = [
            ("size", SharedLayout.sizeWord, UInt64(SharedLayout.totalBytes)),
            ("interface slots", SharedLayout.interfaceCountWord, UInt64(SharedLayout.interfaceSlotCount)),
            ("process slots", SharedLayout.processCountWord, UInt64(SharedLayout.processSlotCount)),
        ]
        for (what, index, expected) in fields {
            let v = word(index).load(ordering: .relaxed)
            if v != expected { throw .incompatible(name: name, detail: "\(what) \(v), expected \(expected)") }
        }
    }

    /// Removes segment `name` (tests; the testbed removes its namespaces' segments itself).
    static func unlink(name: String) { shm_unlink(name) }

    private static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    // MARK: - Process slots

    private func ownerWord(_ j: Int) -> UnsafeAtomic<UInt64> { word(SharedLayout.processSlot(j) + SharedLayout.procOwner) }

    /// Claims a free process slot (reclaiming dead owners' slots if none is free).
    private func register() throws(SharedStateError) {
        for _ in 0..<2 {
            for j in 0..<SharedLayout.processSlotCount {
                let w = ownerWord(j)
                let o = w.load(ordering: .acquiring)
                guard SharedLayout.pid(ofOwner: o) == 0 else { continue }
                let gen = (SharedLayout.generation(ofOwner: o) + 1) & SharedLayout.generationMask
                let mine = SharedLayout.owner(pid: identity.pid, generation: gen, mask: 0)
                if w.compareExchange(expected: o, desired: mine, ordering: .sequentiallyConsistent).exchanged {
                    let base = SharedLayout.processSlot(j)
                    word(base + SharedLayout.procPidNamespace).store(identity.pidNamespaceInode, ordering: .relaxed)
                    // A previous owner's unsent bits are not ours (our mask is still 0: they count nowhere).
                    word(base + SharedLayout.procUnsentMask).store(0, ordering: .sequentiallyConsistent)
                    word(base + SharedLayout.procStart).store(SharedLayout.start(generation: gen, ticks: identity.startTicks),
                                                              ordering: .releasing)
                    // A previous owner's background entries are not ours.
                    for i in 0..<SharedLayout.interfaceSlotCount {
                        word(SharedLayout.backgroundEntry(process: j, interface: i)).store(0, ordering: .relaxed)
                        word(SharedLayout.deliveredEntry(process: j, interface: i)).store(0, ordering: .relaxed)
                    }
                    slot = j
                    generation = gen
                    return
                }
            }
            for j in 0..<SharedLayout.processSlotCount where j != slot {
                let o = ownerWord(j).load(ordering: .acquiring)
                if SharedLayout.pid(ofOwner: o) != 0 && !ownerAlive(j, o) { _ = reclaim(j, o) }
            }
        }
        throw .full(name: name)
    }

    /// Whether the owner recorded in slot `j` (owner word `o`) still runs. A slot whose start word
    /// is not yet written for this claim counts as alive (its owner is between two stores).
    private func ownerAlive(_ j: Int, _ o: UInt64) -> Bool {
        let base = SharedLayout.processSlot(j)
        let s = word(base + SharedLayout.procStart).load(ordering: .acquiring)
        if SharedLayout.generation(ofStart: s) & SharedLayout.generationMask != SharedLayout.generation(ofOwner: o) { return true }
        return identity.isAlive(pid: SharedLayout.pid(ofOwner: o), startTicks: SharedLayout.ticks(ofStart: s),
                                pidNamespaceInode: word(base + SharedLayout.procPidNamespace).load(ordering: .relaxed))
    }

    /// Frees slot `j` of a dead owner and takes back its contributions. Returns the pid reclaimed,
    /// or nil if someone else changed the slot first.
    private func reclaim(_ j: Int, _ o: UInt64) -> UInt64? {
        let freed = SharedLayout.owner(pid: 0, generation: SharedLayout.generation(ofOwner: o), mask: 0)
        guard ownerWord(j).compareExchange(expected: o, desired: freed, ordering: .sequentiallyConsistent).exchanged else {
            return nil
        }
        var mask = SharedLayout.mask(ofOwner: o)
        while mask != 0 {
            let i = mask.trailingZeroBitCount
            mask &= mask - 1
            decrementCount(i)
        }
        return SharedLayout.pid(ofOwner: o)
    }

    /// Applies `change` to this process's mask. Returns false if our slot had been taken from us
    /// (another process judged us dead and took back our contributions): then a new slot is
    /// claimed with every contribution in `heldMask` restored instead.
    private func applyOwnMask(_ change: (UInt64) -> UInt64) -> Bool {
        while true {
            let w = ownerWord(slot)
            let o = w.load(ordering: .acquiring)
            guard SharedLayout.pid(ofOwner: o) == identity.pid, SharedLayout.generation(ofOwner: o) == generation else {
                try? reRegister()
                return false
            }
            let next = o & ~SharedLayout.maskBits | change(o) & SharedLayout.maskBits
            if w.compareExchange(expected: o, desired: next, ordering: .sequentiallyConsistent).exchanged { return true }
        }
    }

    private func reRegister() throws(SharedStateError) {
        slot = -1
        try register()
        // Unsent bits before the mask bits they qualify.
        word(SharedLayout.processSlot(slot) + SharedLayout.procUnsentMask).store(heldUnsentMask, ordering: .sequentiallyConsistent)
        var mask = heldMask
        while mask != 0 {
            let i = mask.trailingZeroBitCount
            mask &= mask - 1
            word(SharedLayout.interfaceSlot(i) + SharedLayout.ifForegroundCount).wrappingIncrement(ordering: .sequentiallyConsistent)
        }
        let w = ownerWord(slot)
        let o = w.load(ordering: .acquiring)
        w.store(o | heldMask, ordering: .sequentiallyConsistent)
    }

    // MARK: - Interface slots

    /// Longest wait for the slot-allocation lock, seconds. A holder keeps it for microseconds; a
    /// live process that parks its pid in the lock word (a bug, or a hostile process of the same
    /// user) must not hang every IntNW process, so after this the allocation is given up.
    static let allocationLockTimeoutSeconds = 0.05
    /// Set once an allocation gave up on the lock (see `allocationLockTimeoutSeconds`).
    private(set) var allocationLockTimedOut = false

    /// Serializes slot allocation between processes; a dead holder's lock is taken over. Nil when
    /// a live holder keeps it longer than `allocationLockTimeoutSeconds`.
    private func withAllocationLock<R>(_ body: () -> R) -> R? {
        let lock = word(SharedLayout.lockWord)
        let deadline = Self.monotonicSeconds() + Self.allocationLockTimeoutSeconds
        var spins = 0
        while true {
            let (done, holder) = lock.compareExchange(expected: 0, desired: identity.pid, ordering: .acquiring)
            if done { break }
            spins += 1
            if spins % 32 == 0 {
                // Our own pid as holder can only be a dead predecessor: we never nest.
                if holder == identity.pid || !identity.isAlive(pid: holder, startTicks: 0, pidNamespaceInode: 0) {
                    _ = lock.compareExchange(expected: holder, desired: 0, ordering: .relaxed)
                } else if Self.monotonicSeconds() > deadline {
                    allocationLockTimedOut = true
                    return nil
                }
                usleep(100)
            }
        }
        defer { lock.store(0, ordering: .releasing) }
        return body()
    }

    /// Tests only: the raw slot-allocation lock word (0 or the holder's pid).
    var lockWordForTesting: UInt64 {
        get { word(SharedLayout.lockWord).load(ordering: .relaxed) }
        set { word(SharedLayout.lockWord).store(newValue, ordering: .relaxed) }
    }

    private func findInterface(_ n0: UInt64, _ n1: UInt64) -> Int? {
        for i in 0..<SharedLayout.interfaceSlotCount {
            let base = SharedLayout.interfaceSlot(i)
            guard word(base + SharedLayout.ifState).load(ordering: .acquiring) == 1 else { continue }
            if word(base + SharedLayout.ifName0).load(ordering: .relaxed) == n0
                && word(base + SharedLayout.ifName1).load(ordering: .relaxed) == n1 { return i }
        }
        return nil
    }

    /// The slot of interface `name`, claimed if it has none yet; nil when all slots are taken.
    func interfaceSlot(named name: String) -> Int? {
        let (n0, n1) = SharedLayout.nameWords(name)
        if let i = findInterface(n0, n1) { return i }
        let claimed: Int?? = withAllocationLock {
            if let i = findInterface(n0, n1) { return i }
            for i in 0..<SharedLayout.interfaceSlotCount {
                let base = SharedLayout.interfaceSlot(i)
                guard word(base + SharedLayout.ifState).load(ordering: .acquiring) == 0 else { continue }
                word(base + SharedLayout.ifName0).store(n0, ordering: .relaxed)
                word(base + SharedLayout.ifName1).store(n1, ordering: .relaxed)
                word(base + SharedLayout.ifState).store(1, ordering: .releasing)
                return i
            }
            return nil
        }
        return claimed ?? nil
    }

    // MARK: - Foreground state

    /// Records foreground activity on interface slot `i` at `nowNs` (keeps the latest).
    func noteForeground(interface i: Int, nowNs: UInt64) {
        let w = word(SharedLayout.interfaceSlot(i) + SharedLayout.ifLastForeground)
        var cur = w.load(ordering: .relaxed)
        while cur < nowNs {
            let (done, seen) = w.compareExchange(expected: cur, desired: nowNs, ordering: .relaxed)
            if done { return }
            cur = seen
        }
    }

    /// Monotonic ns of the latest foreground activity on slot `i`, any process (0: never).
    func lastForeground(interface i: Int) -> UInt64 {
        word(SharedLayout.interfaceSlot(i) + SharedLayout.ifLastForeground).load(ordering: .relaxed)
    }

    /// The published count of processes with foreground data on slot `i` (may include processes
    /// that died without being reclaimed yet).
    func foregroundCount(interface i: Int) -> UInt64 {
        word(SharedLayout.interfaceSlot(i) + SharedLayout.ifForegroundCount).load(ordering: .sequentiallyConsistent)
    }

    private func decrementCount(_ i: Int) {
        let w = word(SharedLayout.interfaceSlot(i) + SharedLayout.ifForegroundCount)
        var cur = w.load(ordering: .sequentiallyConsistent)
        while cur > 0 {
            let (done, seen) = w.compareExchange(expected: cur, desired: cur - 1, ordering: .sequentiallyConsistent)
            if done { return }
            cur = seen
        }
    }

    /// Starts or ends this process's contribution to slot `i`'s count (the barrier of the
    /// multi-app design (docs/scheduling.md): on while any multisocket here has foreground data enqueued or unACKed).
    func setContribution(_ on: Bool, interface i: Int) {
        guard slot >= 0 else { return }
        let bit: UInt64 = 1 << UInt64(i)
        guard on != (heldMask & bit != 0) else { return }
        if on {
            // Count first, bit second: the count never falls below the number of bits set.
            word(SharedLayout.interfaceSlot(i) + SharedLayout.ifForegroundCount).wrappingIncrement(ordering: .sequentiallyConsistent)
            heldMask |= bit
            // A re-registration counted this bit again: take our first increment back.
            if !applyOwnMask({ $0 | bit }) { decrementCount(i) }
        } else {
            heldMask &= ~bit
            // If our slot had been reclaimed, the reclaimer already took this bit's count back.
            if applyOwnMask({ $0 & ~bit }) { decrementCount(i) }
        }
    }

    /// Sets or clears this process's unsent bit for slot `i` (`SharedLayout.procUnsentMask`): some
    /// multisocket here has foreground data on it not yet entirely sent. Callers set it before
    /// their contribution (`setContribution`), so that no reader sees foreground outstanding
    /// without it while it is unsent.
    func setUnsent(_ on: Bool, interface i: Int) {
        guard slot >= 0 else { return }
        let bit: UInt64 = 1 << UInt64(i)
        guard on != (heldUnsentMask & bit != 0) else { return }
        if on { heldUnsentMask |= bit } else { heldUnsentMask &= ~bit }
        let o = ownerWord(slot).load(ordering: .acquiring)
        guard SharedLayout.pid(ofOwner: o) == identity.pid, SharedLayout.generation(ofOwner: o) == generation else {
            // Our slot was taken from us: claim a new one, which restores both masks.
            try? reRegister()
            return
        }
        word(SharedLayout.processSlot(slot) + SharedLayout.procUnsentMask).store(heldUnsentMask, ordering: .sequentiallyConsistent)
    }

    /// What the scan of process slots found for one interface.
    struct Scan {
        /// Live processes other than this one with foreground data on the interface.
        var others: Int
        /// Those of `others` whose foreground data there is not yet entirely sent (unsent bit set).
        var othersUnsent: Int = 0
        /// Pids of dead processes whose contributions were taken back during the scan.
        var reclaimed: [UInt64]
    }

    /// Counts the other live processes with foreground data on slot `i`, reclaiming dead ones.
    func scanOthers(interface i: Int) -> Scan {
        var scan = Scan(others: 0, reclaimed: [])
        guard foregroundCount(interface: i) > 0 else { return scan }
        let bit: UInt64 = 1 << UInt64(i)
        for j in 0..<SharedLayout.processSlotCount where j != slot {
            let o = ownerWord(j).load(ordering: .acquiring)
            guard SharedLayout.pid(ofOwner: o) != 0, SharedLayout.mask(ofOwner: o) & bit != 0 else { continue }
            if ownerAlive(j, o) {
                scan.others += 1
                if word(SharedLayout.processSlot(j) + SharedLayout.procUnsentMask).load(ordering: .sequentiallyConsistent) & bit != 0 {
                    scan.othersUnsent += 1
                }
            } else if let pid = reclaim(j, o) {
                scan.reclaimed.append(pid)
            }
        }
        return scan
    }

    // MARK: - Background budget

    /// Publishes the background bytes this process has in kernel send queues on slot `i`.
    func publishBackground(bytes: Int, interface i: Int, nowNs: UInt64) {
        guard slot >= 0 else { return }
        word(SharedLayout.backgroundEntry(process: slot, interface: i))
            .store(SharedLayout.background(bytes: UInt64(max(0, bytes)), nowMs: nowNs / 1_000_000), ordering: .relaxed)
    }

    /// Background bytes other processes published as in kernel send queues on slot `i`, counting
    /// only fresh entries of occupied process slots.
    func otherBackground(interface i: Int, nowNs: UInt64) -> Int {
        let nowMs = nowNs / 1_000_000
        var total: UInt64 = 0
        for j in 0..<SharedLayout.processSlotCount where j != slot {
            let w = word(SharedLayout.backgroundEntry(process: j, interface: i)).load(ordering: .relaxed)
            guard w != 0, SharedLayout.pid(ofOwner: ownerWord(j).load(ordering: .relaxed)) != 0 else { continue }
            total += SharedLayout.freshBackgroundBytes(w, nowMs: nowMs)
        }
        return Int(min(total, UInt64(Int.max)))
    }

    /// How many other processes published a fresh background entry on slot `i` (they are
    /// deciding about background data there, with or without bytes in flight).
    func otherBackgroundWriters(interface i: Int, nowNs: UInt64) -> Int {
        let nowMs = nowNs / 1_000_000
        var n = 0
        for j in 0..<SharedLayout.processSlotCount where j != slot {
            let w = word(SharedLayout.backgroundEntry(process: j, interface: i)).load(ordering: .relaxed)
            guard SharedLayout.isFreshBackground(w, nowMs: nowMs),
                  SharedLayout.pid(ofOwner: ownerWord(j).load(ordering: .relaxed)) != 0 else { continue }
            n += 1
        }
        return n
    }

    /// Publishes the cumulative bytes this process's background-sending connections had acknowledged
    /// on slot `i`.
    func publishDelivered(bytes: UInt64, interface i: Int) {
        guard slot >= 0 else { return }
        word(SharedLayout.deliveredEntry(process: slot, interface: i)).store(bytes, ordering: .relaxed)
    }

    /// The sum of the cumulative acknowledged bytes other processes published on slot `i`.
    func otherDelivered(interface i: Int) -> UInt64 {
        var total: UInt64 = 0
        for j in 0..<SharedLayout.processSlotCount where j != slot {
            let w = word(SharedLayout.deliveredEntry(process: j, interface: i)).load(ordering: .relaxed)
            guard w != 0, SharedLayout.pid(ofOwner: ownerWord(j).load(ordering: .relaxed)) != 0 else { continue }
            total &+= w
        }
        return total
    }

    /// This process's slot index (tests and diagnostics).
    var processSlot: Int { slot }
}
