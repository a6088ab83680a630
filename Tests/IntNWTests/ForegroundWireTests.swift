import Testing
import Foundation
@testable import IntNW

/// `delay-target:barrier=wire`: which foreground data is not yet entirely sent, as a multisocket
/// tracks it (with fake connections) and publishes it to other multisockets and processes.
@Suite("Foreground on the wire")
struct ForegroundWireTests {
    @Test("an IROB is pending until every byte left the sender and every connection it went on reports nothing unsent")
    func tracker() {
        var t = ForegroundWireTracker()
        var unsent: [Int32: Int] = [7: 0, 8: 0]
        func probe() -> Bool { t.probe { unsent[$0] } }
        // Enqueued, no chunk yet: pending where the chooser would put it.
        t.enqueued(1, interface: "cell0")
        #expect(t.pendingInterfaces == ["cell0"])
        #expect(!probe() && t.pendingInterfaces == ["cell0"])  // nothing written yet: no probe result frees it
        // First chunk written, more in the sender: pending even though the socket has sent it
        // (catches releasing BG between the pieces of FG larger than one chunk).
        t.chunkQueued(1, interface: "cell0", fd: 7, isLast: false)
        #expect(!probe() && t.pendingInterfaces == ["cell0"])
        // Last chunk written, but the kernel still holds some unsent (congestion window full):
        // pending, and the caller must look again (catches barrier=sent's "written = sent").
        t.chunkQueued(1, interface: "cell0", fd: 7, isLast: true)
        unsent[7] = 3_000
        #expect(probe() && t.pendingInterfaces == ["cell0"])
        // Sent by the kernel: on the wire, though not yet acknowledged.
        unsent[7] = 0
        #expect(!probe() && t.pendingInterfaces.isEmpty)
        #expect(t.entries[1]?.stage == .onWire)
        // Re-sent after a connection failure: pending again until that copy left too.
        t.chunkQueued(1, interface: "cell0", fd: 8, isLast: true)
        unsent[8] = 100
        #expect(probe() && t.pendingInterfaces == ["cell0"])
        t.acknowledged(1)
        #expect(t.pendingInterfaces.isEmpty && t.entries.isEmpty && !probe())
    }

    @Test("chunks on two connections: pending until both sent; a gone connection keeps it pending until the ACK")
    func tracker2() {
        var t = ForegroundWireTracker()
        var unsent: [Int32: Int] = [7: 0, 9: 500]
        t.enqueued(2, interface: nil)
        #expect(t.pendingInterfaces.isEmpty)  // counts nowhere until it is sent somewhere (as the barrier)
        t.chunkQueued(2, interface: "cell0", fd: 7, isLast: false)
        t.chunkQueued(2, interface: "wlan0", fd: 9, isLast: true)
        #expect(t.probe { unsent[$0] } && t.pendingInterfaces == ["cell0", "wlan0"])
        unsent[9] = nil  // the WiFi connection closed with bytes unsent
        #expect(t.probe { unsent[$0] } && t.pendingInterfaces == ["cell0", "wlan0"])
        // A second IROB that did leave does not free the first one's interfaces.
        t.enqueued(3, interface: "cell0")
        t.chunkQueued(3, interface: "cell0", fd: 7, isLast: true)
        _ = t.probe { unsent[$0] }
        #expect(t.entries[3]?.stage == .onWire && t.pendingInterfaces == ["cell0", "wlan0"])
        t.acknowledged(2)
        #expect(t.pendingInterfaces.isEmpty)
    }

    @Test("published across processes: the unsent bit counts only with the FG bit, per interface, and a new owner starts clean")
    func segmentBits() throws {
        let name = uniqueSegmentName("wire")
        defer { SharedSegment.unlink(name: name) }
        let a = try SharedSegment.open(name: name)
        let b = try SharedSegment.open(name: name)
        let cell = try #require(a.interfaceSlot(named: "cell0"))
        let wifi = try #require(a.interfaceSlot(named: "wifi0"))
        a.setUnsent(true, interface: cell)
        // Unsent without FG outstanding counts nowhere (the scan looks at FG holders only).
        #expect(b.scanOthers(interface: cell).othersUnsent == 0)
        a.setContribution(true, interface: cell)
        a.setContribution(true, interface: wifi)
        var scan = b.scanOthers(interface: cell)
        #expect(scan.others == 1 && scan.othersUnsent == 1)
        scan = b.scanOthers(interface: wifi)
        #expect(scan.others == 1 && scan.othersUnsent == 0)  // per interface
        #expect(a.scanOthers(interface: cell).othersUnsent == 0)  // never itself
        a.setUnsent(false, interface: cell)
        scan = b.scanOthers(interface: cell)
        #expect(scan.others == 1 && scan.othersUnsent == 0)  // sent, still unACKed
        a.setUnsent(true, interface: cell)
        let slot = a.processSlot
        // The process goes: its slot, unsent bits included, no longer holds anyone back; the next
        // owner of the slot does not inherit them.
        _ = consume a
        #expect(b.scanOthers(interface: cell).others == 0)
        let c = try SharedSegment.open(name: name)
        #expect(c.processSlot == slot)
        c.setContribution(true, interface: cell)
        scan = b.scanOthers(interface: cell)
        #expect(scan.others == 1 && scan.othersUnsent == 0)
        withExtendedLifetime((b, c)) {}
    }

    @Test("two multisockets: BG with barrier=wire waits while the other's FG is unsent, goes once its socket reports it sent, before the ACK")
    func schedulers() throws {
        let seg = uniqueSegmentName("wiresched")
        defer { SharedSegment.unlink(name: seg) }
        let wire = try BackgroundPolicies.parse("delay-target:barrier=wire")
        let acked = try BackgroundPolicies.parse("delay-target:barrier=acked")
        let fg = BackgroundScheduler(options: BackgroundSchedulerTests.options(ExclusiveBackgroundPolicy(excludedKinds: []), segment: seg),
                                     role: .client, log: quietLogger())
        let bg = BackgroundScheduler(options: BackgroundSchedulerTests.options(wire, segment: seg), role: .client, log: quietLogger())
        let bgAcked = BackgroundScheduler(options: BackgroundSchedulerTests.options(acked, segment: seg), role: .client, log: quietLogger())
        var now: UInt64 = 5_000_000_000
        // Whether a decision now is held by the barrier (the two BG schedulers also share the
        // interface's BG budget, so one's grant may hold the other for the window: not this).
        func held(_ s: BackgroundScheduler) -> Bool {
            now += 1_000_000
            let before = s.stats.held(.foregroundElsewhere)
            _ = s.decide(network: BackgroundSchedulerTests.status(), otherUsableNetworks: 0, fd: -1, userQueuedBytes: 0, nowNs: now)
            return s.stats.held(.foregroundElsewhere) > before
        }
        #expect(!held(bg))
        var unsent: [Int32: Int] = [7: 128]
        fg.foregroundEnqueued(IROBID(1), interface: "cell0")
        #expect(fg.foregroundUnsent(on: "cell0") && held(bg) && held(bgAcked))
        fg.foregroundChunkQueued(IROBID(1), interface: "cell0", fd: 7, isLast: true)
        fg.observe(.sent(id: IROBID(1), networkID: 2, bytes: 128, nowNs: now), interface: "cell0", fd: 7)
        // Written to the socket, not yet sent by the kernel: still held; the FG side must look again.
        #expect(fg.checkForegroundOnWire { unsent[$0] })
        #expect(held(bg))
        unsent[7] = 0
        #expect(!fg.checkForegroundOnWire { unsent[$0] })
        #expect(!fg.foregroundUnsent(on: "cell0") && fg.outstandingForeground(on: "cell0") == 1)
        // Sent, unACKed: the wire barrier lets BG go; the note's (acked) barrier still holds.
        #expect(!held(bg))
        #expect(held(bgAcked))
        // A second FG IROB holds it again; the ACK of both ends every barrier.
        fg.foregroundEnqueued(IROBID(2), interface: "cell0")
        #expect(held(bg))
        fg.observe(.acknowledged(id: IROBID(1), nowNs: now), interface: nil)
        fg.observe(.acknowledged(id: IROBID(2), nowNs: now), interface: nil)
        #expect(!held(bg) && !held(bgAcked) && !fg.foregroundUnsent(on: "cell0"))
        // Closing with FG unsent releases it.
        fg.foregroundEnqueued(IROBID(3), interface: "cell0")
        #expect(held(bg))
        fg.close()
        #expect(!held(bg))
        #expect(bg.stats.held(.foregroundElsewhere) == 4)
    }
}
