/// The layout of the multi-app scheduling segment, defined here and nowhere else (docs/scheduling.md,
/// "Multi-app shared state"). Every field is one 64-bit word updated with atomic
/// operations; offsets below are word indices from the start of the mapping.
///
/// ```
/// header (8 words)
///   0  magic (high 32 bits) | layout version (low 32): stored LAST by the creator (release), so a
///      reader that sees it (acquire) sees every other initialized word
///   1  total size of the segment, bytes
///   2  interface slot count
///   3  process slot count
///   4  pid of the creator (diagnostics)
///   5  slot-allocation lock: 0 or the pid of the holder (a dead holder's lock is taken over)
///   6-7 reserved (0)
/// interface slots (interfaceSlotCount x 8 words), one per local interface name
///   0  state: 0 free, 1 ready (the name below is valid)
///   1-2 interface name, 16 bytes, NUL padded (longer names: 8-byte prefix + 8-byte FNV-1a hash)
///   3  monotonic ns (CLOCK_MONOTONIC, system-wide) of the last foreground activity, any process
///   4  count of processes with foreground data enqueued or unacknowledged on this interface
///   5-7 reserved (0)
/// process slots (processSlotCount x 8 words), one per IntNW process using the segment
///   0  owner word: pid (bits 42-63) | generation (bits 32-41) | interface mask (bits 0-31);
///      pid 0 = free. Bit i of the mask: this process contributes 1 to interface slot i's count.
///   1  generation (bits 48-63, low 10 bits of the owner word's) | process start time in clock
///      ticks since boot (bits 0-47), written by the owner right after claiming: a reclaimer
///      compares it with /proc/<pid>/stat to tell a live process from a reused pid
///   2  inode of the owner's PID namespace (pids of another PID namespace cannot be checked)
///   3  unsent mask (layout version 3): bit i set while some multisocket of the owner has foreground
///      data on interface i not yet entirely sent (queued in user space or unsent in a kernel send
///      queue, SIOCOUTQNSD). Set before the owner's mask bit i, meaningful only where that bit is
///      set; cleared when the slot is claimed. `delay-target:barrier=wire` waits only for these.
///   4-7 reserved (0)
/// background matrix (processSlotCount x interfaceSlotCount words), entry [j][i] at
/// `backgroundEntry(process: j, interface: i)`, written only by the owner of process slot j:
///   monotonic ms of the write, modulo 2^28 (bits 36-63) | background bytes this process has in
///   kernel send queues (unacknowledged) on interface i (bits 0-35). An entry older than
///   `backgroundFreshMilliseconds` no longer counts (its writer stopped deciding: it has no
///   background data, or it died); the interface-wide background budget is the sum of the fresh
///   entries.
/// delivered matrix (processSlotCount x interfaceSlotCount words), entry [j][i] at
/// `deliveredEntry(process: j, interface: i)`, written only by the owner of process slot j: bytes
///   the kernel reported acknowledged (TCP_INFO bytes_acked) on the connections of slot j's
///   background-sending multisockets on interface i, cumulative. The sum over processes, sampled
///   over time, is the interface's delivery rate (the background link estimate).
/// ```
///
/// The count in an interface slot is a fast path: 0 means no process has foreground data there.
/// Owners increment it before setting their mask bit and clear the bit before decrementing, so the
/// count never falls below the number of set bits; the truth, when it is not 0, is a scan of the
/// live owners' masks (which also reclaims dead ones).
enum SharedLayout {
    /// "INWS".
    static let magic: UInt64 = 0x494E_5753
    /// Bump whenever any offset, size or meaning above changes.
    static let version: UInt64 = 3
    static var magicAndVersion: UInt64 { magic << 32 | version }

    static let headerWords = 8
    static let interfaceSlotCount = 32
    static let interfaceSlotWords = 8
    static let processSlotCount = 128
    static let processSlotWords = 8

    static var totalWords: Int {
        deliveredMatrixWord + processSlotCount * interfaceSlotCount
    }
    static var totalBytes: Int { totalWords * 8 }

    // Header words.
    static let magicWord = 0
    static let sizeWord = 1
    static let interfaceCountWord = 2
    static let processCountWord = 3
    static let creatorWord = 4
    static let lockWord = 5

    // Interface slot fields.
    static func interfaceSlot(_ i: Int) -> Int { headerWords + i * interfaceSlotWords }
    static let ifState = 0
    static let ifName0 = 1
    static let ifName1 = 2
    static let ifLastForeground = 3
    static let ifForegroundCount = 4

    // Process slot fields.
    static func processSlot(_ j: Int) -> Int {
        headerWords + interfaceSlotCount * interfaceSlotWords + j * processSlotWords
    }
    static let procOwner = 0
    static let procStart = 1
    static let procPidNamespace = 2
    static let procUnsentMask = 3

    // Background matrix.
    static var backgroundMatrixWord: Int { headerWords + interfaceSlotCount * interfaceSlotWords + processSlotCount * processSlotWords }
    static func backgroundEntry(process j: Int, interface i: Int) -> Int { backgroundMatrixWord + j * interfaceSlotCount + i }
    static var deliveredMatrixWord: Int { backgroundMatrixWord + processSlotCount * interfaceSlotCount }
    static func deliveredEntry(process j: Int, interface i: Int) -> Int { deliveredMatrixWord + j * interfaceSlotCount + i }
    static let backgroundBytesMask: UInt64 = (1 << 36) - 1
    static let backgroundTimeShift: UInt64 = 36
    static let backgroundTimeMask: UInt64 = (1 << 28) - 1
    /// How long a background entry counts after it was written, milliseconds. Writers refresh it at
    /// every background decision (every 10 ms while background waits).
    static let backgroundFreshMilliseconds: UInt64 = 300
    static func background(bytes: UInt64, nowMs: UInt64) -> UInt64 {
        (nowMs & backgroundTimeMask) << backgroundTimeShift | min(bytes, backgroundBytesMask)
    }
    /// The bytes of entry `w` if it is fresh at `nowMs`, else 0.
    static func freshBackgroundBytes(_ w: UInt64, nowMs: UInt64) -> UInt64 {
        isFreshBackground(w, nowMs: nowMs) ? w & backgroundBytesMask : 0
    }
    /// Whether entry `w` was written within `backgroundFreshMilliseconds` of `nowMs` (its writer
    /// is deciding about background data there, whatever it has in flight).
    static func isFreshBackground(_ w: UInt64, nowMs: UInt64) -> Bool {
        let age = (nowMs &- (w >> backgroundTimeShift)) & backgroundTimeMask
        return w != 0 && age <= backgroundFreshMilliseconds
    }

    // Owner word packing.
    static let maskBits: UInt64 = 0xFFFF_FFFF
    static let generationShift: UInt64 = 32
    static let generationMask: UInt64 = 0x3FF
    static let pidShift: UInt64 = 42
    /// Linux pid_max is at most 2^22.
    static let pidLimit: UInt64 = 1 << 22

    static func owner(pid: UInt64, generation: UInt64, mask: UInt64) -> UInt64 {
        pid << pidShift | (generation & generationMask) << generationShift | mask & maskBits
    }
    static func pid(ofOwner w: UInt64) -> UInt64 { w >> pidShift }
    static func generation(ofOwner w: UInt64) -> UInt64 { w >> generationShift & generationMask }
    static func mask(ofOwner w: UInt64) -> UInt64 { w & maskBits }

    // Start word packing.
    static let startTicksMask: UInt64 = (1 << 48) - 1
    static func start(generation: UInt64, ticks: UInt64) -> UInt64 { (generation & 0xFFFF) << 48 | ticks & startTicksMask }
    static func generation(ofStart w: UInt64) -> UInt64 { w >> 48 }
    static func ticks(ofStart w: UInt64) -> UInt64 { w & startTicksMask }

    /// The two name words of an interface name.
    static func nameWords(_ name: String) -> (UInt64, UInt64) {
        let bytes = Array(name.utf8)
        func pack(_ b: ArraySlice<UInt8>) -> UInt64 {
            var w: UInt64 = 0
            for (k, x) in b.prefix(8).enumerated() { w |= UInt64(x) << (8 * UInt64(k)) }
            return w
        }
        if bytes.count <= 16 {
            return (pack(bytes[0..<min(8, bytes.count)]), bytes.count > 8 ? pack(bytes[8...]) : 0)
        }
        // Linux interface names are at most 15 bytes; longer ones only come from a peer's HELLO
        // (server side). Prefix + FNV-1a hash keeps them apart well enough for that.
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for x in bytes { h = (h ^ UInt64(x)) &* 0x0000_0100_0000_01B3 }
        return (pack(bytes[0..<8]), h | 1 << 63)
    }

    /// `/intnw-u<uid>-n<netns inode>`: per user and per network namespace (the testbed's teardown
    /// removes `/dev/shm/intnw-*-n<inode>*` of the namespaces it deletes).
    static func segmentName(uid: UInt32, namespaceInode: UInt64) -> String { "/intnw-u\(uid)-n\(namespaceInode)" }
}
