import Testing
import Foundation
import Logging
@testable import IntNW
#if canImport(Glibc)
import Glibc
import LinuxSupport
import SystemPackage
#endif

/// A segment name no other test or process uses; removed by `cleanup`.
func uniqueSegmentName(_ tag: String) -> String {
    "/intnw-isc-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

/// Writes a raw shared-memory object of `size` bytes whose first word is `firstWord`.
func writeRawSegment(_ name: String, size: Int, firstWord: UInt64?, mode: mode_t = 0o600) throws {
    let fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, mode)
    try #require(fd >= 0, "shm_open \(name): \(Errno.last)")
    defer { close(fd) }
    _ = fchmod(fd, mode)
    try #require(ftruncate(fd, off_t(size)) == 0)
    if let firstWord, size >= 8 {
        var w = firstWord
        #expect(pwrite(fd, &w, 8, 0) == 8)
    }
}

func quietLogger() -> Logger {
    var l = Logger(label: "test.sched")
    l.logLevel = .critical
    return l
}

/// The pid of a process that has exited (and been reaped).
func deadPID() throws -> UInt64 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/true")
    try p.run()
    p.waitUntilExit()
    return UInt64(p.processIdentifier)
}

@Suite("Shared multi-app segment")
struct SharedStateTests {
    @Test("a live foreign pid parked in the allocation lock word delays allocation by a bounded time, never forever")
    func parkedLockIsBounded() throws {
        let name = uniqueSegmentName("park")
        defer { SharedSegment.unlink(name: name) }
        let a = try SharedSegment.open(name: name)
        let b = try SharedSegment.open(name: name)
        let wifi = try #require(a.interfaceSlot(named: "wifi0"))
        // pid 1 is always alive (and is not this process): the lock looks held by a live process.
        a.lockWordForTesting = 1
        let start = ContinuousClock.now
        #expect(b.interfaceSlot(named: "cell0") == nil)
        let waited = ContinuousClock.now - start
        #expect(b.allocationLockTimedOut)
        #expect(waited >= .milliseconds(40) && waited < .seconds(2), "waited \(waited)")
        // Slots that exist are still found without the lock; the word is left to its holder.
        #expect(b.interfaceSlot(named: "wifi0") == wifi)
        #expect(a.lockWordForTesting == 1)
        // Once the holder lets go, allocation works again.
        a.lockWordForTesting = 0
        #expect(b.interfaceSlot(named: "cell0") != nil)
    }

    @Test("a second opener sees the published layout, the same interface slots, the latest FG time and the contributions")
    func sharing() throws {
        let name = uniqueSegmentName("share")
        defer { SharedSegment.unlink(name: name) }
        let a = try SharedSegment.open(name: name)
        let b = try SharedSegment.open(name: name)
        #expect(a.processSlot != b.processSlot)
        // Mode 0600, owned by us, exactly the layout's size.
        var st = stat()
        #expect(stat("/dev/shm\(name)", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600 && st.st_uid == geteuid() && Int(st.st_size) == SharedLayout.totalBytes)

        let cell = try #require(a.interfaceSlot(named: "cell0"))
        let wifi = try #require(a.interfaceSlot(named: "wifi0"))
        #expect(cell != wifi)
        #expect(b.interfaceSlot(named: "cell0") == cell && b.interfaceSlot(named: "wifi0") == wifi)
        // A 20-byte name (server side: names from peers) gets a slot of its own too.
        let long = try #require(a.interfaceSlot(named: "a-very-long-name-xyz"))
        #expect(long != cell && b.interfaceSlot(named: "a-very-long-name-xyz") == long)

        a.noteForeground(interface: cell, nowNs: 500)
        b.noteForeground(interface: cell, nowNs: 400)  // older: ignored
        #expect(b.lastForeground(interface: cell) == 500 && a.lastForeground(interface: wifi) == 0)

        a.setContribution(true, interface: cell)
        a.setContribution(true, interface: cell)  // idempotent
        #expect(b.foregroundCount(interface: cell) == 1)
        #expect(b.scanOthers(interface: cell).others == 1)
        #expect(a.scanOthers(interface: cell).others == 0)  // not itself
        #expect(b.scanOthers(interface: wifi).others == 0)
        b.setContribution(true, interface: cell)
        #expect(a.foregroundCount(interface: cell) == 2 && a.scanOthers(interface: cell).others == 1)
        a.setContribution(false, interface: cell)
        b.setContribution(false, interface: cell)
        #expect(a.foregroundCount(interface: cell) == 0 && b.scanOthers(interface: cell).others == 0)
        withExtendedLifetime((a, b)) {}
    }

    @Test("a dead process's contribution and a reused pid's are reclaimed; live ones are not")
    func reclaim() throws {
        let name = uniqueSegmentName("reclaim")
        defer { SharedSegment.unlink(name: name) }
        let me = ProcessIdentity.current()
        #expect(me.startTicks > 0 && me.pidNamespaceInode > 0)
        let live = try SharedSegment.open(name: name)
        let dead = try deadPID()
        let ghost = try SharedSegment.open(name: name, identity: ProcessIdentity(pid: dead, startTicks: 42, pidNamespaceInode: me.pidNamespaceInode))
        // Our own pid, but a start time that is not ours: a previous process that had our pid.
        let reused = try SharedSegment.open(name: name, identity: ProcessIdentity(pid: me.pid, startTicks: me.startTicks + 1,
                                                                                  pidNamespaceInode: me.pidNamespaceInode))
        let cell = try #require(live.interfaceSlot(named: "cell0"))
        ghost.setContribution(true, interface: cell)
        reused.setContribution(true, interface: cell)
        #expect(live.foregroundCount(interface: cell) == 2)
        let scan = live.scanOthers(interface: cell)
        #expect(scan.others == 0)
        #expect(Set(scan.reclaimed) == [dead, me.pid])
        #expect(live.foregroundCount(interface: cell) == 0)
        // A second scan finds nothing more to reclaim.
        #expect(live.scanOthers(interface: cell).reclaimed.isEmpty)

        // A process of another PID namespace cannot be checked here: it counts as alive.
        let foreign = try SharedSegment.open(name: name, identity: ProcessIdentity(pid: dead, startTicks: 1, pidNamespaceInode: 1))
        foreign.setContribution(true, interface: cell)
        #expect(live.scanOthers(interface: cell).others == 1)
        foreign.setContribution(false, interface: cell)

        // A wrongly reclaimed live owner notices and restores its contribution on its next update.
        let wifi = try #require(live.interfaceSlot(named: "wifi0"))
        reused.setContribution(true, interface: wifi)  // its slot is gone: re-registers, restores cell0 too
        #expect(live.foregroundCount(interface: wifi) == 1 && live.foregroundCount(interface: cell) == 1)
        // Segments release their contributions when they go (ARC may end them after last use).
        withExtendedLifetime((ghost, reused, foreign)) {}
    }

    @Test("corrupt, foreign-version, wrong-size, world-readable and never-initialized segments are refused")
    func untrusted() throws {
        var names: [String] = []
        defer { for n in names { SharedSegment.unlink(name: n) } }
        func make(_ tag: String, size: Int, first: UInt64?, mode: mode_t = 0o600) throws -> String {
            let n = uniqueSegmentName(tag)
            names.append(n)
            try writeRawSegment(n, size: size, firstWord: first, mode: mode)
            return n
        }
        let full = SharedLayout.totalBytes
        let garbage = try make("garbage", size: full, first: 0xDEAD_BEEF_0000_0001)
        #expect(throws: SharedStateError.incompatible(name: garbage, detail: "magic 0xdeadbeef is not IntNW's")) {
            try SharedSegment.open(name: garbage, initWaitSeconds: 0.05)
        }
        let future = try make("future", size: full, first: SharedLayout.magic << 32 | 99)
        #expect(throws: SharedStateError.incompatible(name: future, detail: "layout version 99, this library knows \(SharedLayout.version)")) {
            try SharedSegment.open(name: future, initWaitSeconds: 0.05)
        }
        let small = try make("small", size: 4096, first: SharedLayout.magicAndVersion)
        #expect(throws: SharedStateError.incompatible(name: small, detail: "4096 bytes, layout v\(SharedLayout.version) needs \(full)")) {
            try SharedSegment.open(name: small, initWaitSeconds: 0.05)
        }
        // Right magic and size, but the header's slot counts disagree: not trusted either.
        let header = try make("header", size: full, first: SharedLayout.magicAndVersion)
        #expect(throws: SharedStateError.self) { try SharedSegment.open(name: header, initWaitSeconds: 0.05) }
        let open = try make("mode", size: full, first: SharedLayout.magicAndVersion, mode: 0o644)
        #expect(throws: SharedStateError.self) { try SharedSegment.open(name: open, initWaitSeconds: 0.05) }
        let empty = try make("empty", size: 0, first: nil)
        #expect(throws: SharedStateError.uninitialized(name: empty)) { try SharedSegment.open(name: empty, initWaitSeconds: 0.05) }
        let unpublished = try make("unpub", size: full, first: 0)
        #expect(throws: SharedStateError.uninitialized(name: unpublished)) {
            try SharedSegment.open(name: unpublished, initWaitSeconds: 0.05)
        }
        // Every error is one line that names the segment.
        for n in [garbage, future, small, empty] {
            do {
                _ = try SharedSegment.open(name: n, initWaitSeconds: 0.05)
            } catch {
                #expect(error.description.contains(n) && !error.description.contains("\n"))
            }
        }

        // The registry reports it and falls back to process-local coordination.
        let r = ForegroundRegistry(segmentName: garbage, logger: quietLogger())
        #expect(r.segment == nil && r.segmentError != nil)
        r.setForegroundOutstanding(true, interface: "cell0")
        #expect(r.view(interface: "cell0", selfOutstanding: false).otherMultisockets == 1)
        #expect(r.view(interface: "cell0", selfOutstanding: true).otherMultisockets == 0)
        r.setForegroundOutstanding(false, interface: "cell0")
        #expect(r.view(interface: "cell0", selfOutstanding: false).otherMultisockets == 0)
    }

    @Test("/proc/<pid>/stat parsing copes with spaces and parentheses in the command name")
    func statParsing() {
        let line = "1234 (we ird) (name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10\n"
        let s = ProcessIdentity.parseStat(Array(line.utf8)[...])
        #expect(s?.startTicks == 987_654 && s?.exited == false)
        let z = ProcessIdentity.parseStat(Array("9 (x) Z 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0".utf8)[...])
        #expect(z?.exited == true && z?.startTicks == 55)
        #expect(ProcessIdentity.parseStat(Array("garbage".utf8)[...]) == nil)
        #expect(ProcessIdentity.parseStat(Array("1 (x) S 1 2".utf8)[...]) == nil)
    }

    @Test("the segment is named per user and per network namespace")
    func naming() {
        #expect(SharedLayout.segmentName(uid: 0, namespaceInode: 4_026_531_840) == "/intnw-u0-n4026531840")
        #expect(SharedLayout.totalBytes % 8 == 0 && SharedLayout.interfaceSlotCount <= 32)
        // Regions follow one another without gaps: process slots, then the BG and delivered matrices.
        #expect(SharedLayout.processSlot(SharedLayout.processSlotCount) == SharedLayout.backgroundMatrixWord)
        #expect(SharedLayout.backgroundEntry(process: SharedLayout.processSlotCount, interface: 0) == SharedLayout.deliveredMatrixWord)
        #expect(SharedLayout.deliveredEntry(process: SharedLayout.processSlotCount, interface: 0) == SharedLayout.totalWords)
    }
}

@Suite("Background scheduler")
struct BackgroundSchedulerTests {
    static func options(_ policy: any BackgroundPolicy, segment: String) -> MultiSocketOptions {
        var o = MultiSocketOptions(backgroundPolicy: policy, logger: quietLogger())
        o.sharedSchedulingSegment = .named(segment)
        return o
    }

    static func status(_ name: String = "cell0", lastFG: UInt64 = 0) -> NetworkStatus {
        NetworkStatus(networkID: 2, kind: .cellular, interfaceName: name, usable: true, troubled: false,
                      estimate: NetworkEstimate(rttMilliseconds: 200, bandwidthBytesPerSecond: 64_000, source: .measured),
                      bytesSent: 0, bytesReceived: 0, lastForegroundActivityNs: lastFG)
    }

    @Test("FG enqueued on one multisocket holds BG of another on the same interface until it is ACKed; counted, never for its own FG")
    func barrier() throws {
        let seg = uniqueSegmentName("barrier")
        defer { SharedSegment.unlink(name: seg) }
        let always = ExclusiveBackgroundPolicy(excludedKinds: [])  // sends whenever the barrier allows
        let fg = BackgroundScheduler(options: Self.options(always, segment: seg), role: .client, log: quietLogger())
        let bg = BackgroundScheduler(options: Self.options(always, segment: seg), role: .client, log: quietLogger())
        let now: UInt64 = 5_000_000_000
        func decide(_ s: BackgroundScheduler, _ iface: String = "cell0") -> BackgroundDecision {
            s.decide(network: Self.status(iface), otherUsableNetworks: 0, fd: -1, userQueuedBytes: 0, nowNs: now)
        }
        if case .send = decide(bg) {} else { Issue.record("BG held with no FG anywhere") }

        fg.foregroundEnqueued(IROBID(1), interface: "cell0")
        #expect(decide(bg) == .wait(untilNs: now + 10_000_000))
        #expect(decide(bg, "wifi0") != .wait(untilNs: now + 10_000_000))  // other interfaces are free
        if case .send = decide(fg) {} else { Issue.record("a multisocket waited for its own FG") }
        // Sent (chunk by chunk) and still unACKed: still held; a second FG IROB keeps it held after the first ACK.
        fg.observe(.sent(id: IROBID(1), networkID: 2, bytes: 128, nowNs: now), interface: "cell0")
        fg.foregroundEnqueued(IROBID(2), interface: nil)
        fg.observe(.sent(id: IROBID(2), networkID: 2, bytes: 128, nowNs: now), interface: "cell0")
        fg.observe(.acknowledged(id: IROBID(1), nowNs: now), interface: nil)
        #expect(decide(bg) == .wait(untilNs: now + 10_000_000))
        fg.observe(.acknowledged(id: IROBID(2), nowNs: now), interface: nil)
        if case .send = decide(bg) {} else { Issue.record("BG still held after every FG IROB was ACKed") }
        #expect(bg.stats.held(.foregroundElsewhere) == 2 && bg.stats.decisions == 5 && bg.stats.grants == 3)
        #expect(bg.stats.sharedSegmentError == nil)

        // A closed multisocket stops counting whatever it had outstanding.
        fg.foregroundEnqueued(IROBID(3), interface: "cell0")
        #expect(decide(bg) == .wait(untilNs: now + 10_000_000))
        fg.close()
        if case .send = decide(bg) {} else { Issue.record("BG held by a closed multisocket") }

        // Permissive ignores the barrier.
        let perm = BackgroundScheduler(options: Self.options(PermissiveBackgroundPolicy(), segment: seg), role: .client, log: quietLogger())
        let fg2 = BackgroundScheduler(options: Self.options(always, segment: seg), role: .client, log: quietLogger())
        fg2.foregroundEnqueued(IROBID(1), interface: "cell0")
        #expect(perm.decide(network: Self.status(), otherUsableNetworks: 0, fd: -1, userQueuedBytes: 0, nowNs: now) != .wait(untilNs: now + 10_000_000))
        fg2.close()
    }

    @Test("anticipatory in one multisocket waits for FG activity seen by another (the shared last-FG time)")
    func sharedTimestamp() throws {
        let seg = uniqueSegmentName("stamp")
        defer { SharedSegment.unlink(name: seg) }
        let fg = BackgroundScheduler(options: Self.options(AnticipatoryBackgroundPolicy(), segment: seg), role: .client, log: quietLogger())
        let bg = BackgroundScheduler(options: Self.options(AnticipatoryBackgroundPolicy(), segment: seg), role: .client, log: quietLogger())
        let t: UInt64 = 100_000_000_000
        fg.observe(.received(id: IROBID(1), networkID: 2, nowNs: t), interface: "cell0")
        let d = bg.decide(network: Self.status(), otherUsableNetworks: 0, fd: -1, userQueuedBytes: 0, nowNs: t + 300_000_000)
        #expect(d == .wait(untilNs: t + 800_000_001))
        #expect(bg.stats.held(.foregroundRecent) == 1)
        let later = bg.decide(network: Self.status(), otherUsableNetworks: 0, fd: -1, userQueuedBytes: 0, nowNs: t + 900_000_000)
        #expect(later == .send(maxBytes: 4_000))
    }

    @Test("socket-buffer discipline: no grant the kernel could not take whole; the server side shares nothing")
    func discipline() throws {
        let seg = uniqueSegmentName("disc")
        defer { SharedSegment.unlink(name: seg) }
        let s = BackgroundScheduler(options: Self.options(PermissiveBackgroundPolicy(), segment: seg), role: .client, log: quietLogger())
        let lowat = MultiSocketOptions().notSentLowWatermarkBytes
        let now: UInt64 = 1_000_000_000
        // Grants are bounded by the room below TCP_NOTSENT_LOWAT, less what waits in user space.
        #expect(s.decide(network: Self.status(), otherUsableNetworks: 0, fd: -1, userQueuedBytes: 1_000, nowNs: now)
                == .send(maxBytes: lowat - 1_000 - BackgroundScheduler.frameOverheadBytes))
        #expect(s.decide(network: Self.status(), otherUsableNetworks: 0, fd: -1, userQueuedBytes: lowat, nowNs: now)
                == .wait(untilNs: now + 10_000_000))
        #expect(s.stats.held(.kernelBufferFull) == 1)

        let server = BackgroundScheduler(options: Self.options(ExclusiveBackgroundPolicy(excludedKinds: []), segment: seg),
                                         role: .server, log: quietLogger())
        let client = BackgroundScheduler(options: Self.options(ExclusiveBackgroundPolicy(excludedKinds: []), segment: seg),
                                         role: .client, log: quietLogger())
        client.foregroundEnqueued(IROBID(1), interface: "cell0")
        if case .send = server.decide(network: Self.status(), otherUsableNetworks: 0, fd: -1, userQueuedBytes: 0, nowNs: now) {} else {
            Issue.record("a server session waited for a client-side multisocket")
        }
        client.close()
    }
}
