import Testing
import ToyProtocol
@testable import ToyApps

@Suite("Request/answer pairing")
struct PairingTests {
    @Test("answers complete entries in any order; send and answer may come in either order")
    func outOfOrder() {
        var t = InFlightTable(capacity: 4)
        for s in 0 ..< 4 as Range<UInt64> {
            let ok = t.insert(sequence: s, bytes: 100 + Int(s))
            #expect(ok)
        }
        #expect(t.isFull)
        let fifth = t.insert(sequence: 4, bytes: 1)
        #expect(!fifth, "a fifth entry must not overwrite an outstanding one")
        do {
            let r = t.markSent(sequence: 0, atNs: 10)
            #expect(r == nil)
        }
        do {
            let r = t.markSent(sequence: 2, atNs: 12)
            #expect(r == nil)
        }
        // Answer before the send was recorded: held until markSent.
        do {
            let r = t.markAnswered(sequence: 1, atNs: 30, bytes: 24)
            #expect(r == .awaitingSend)
        }
        let late = t.markSent(sequence: 1, atNs: 11)
        #expect(late?.sendNs == 11 && late?.answerNs == 30 && late?.bytes == 101)
        guard case .completed(let e2) = t.markAnswered(sequence: 2, atNs: 40, bytes: 24) else {
            Issue.record("seq 2 should complete")
            return
        }
        #expect(e2.sequence == 2 && e2.sendNs == 12 && e2.answerNs == 40 && e2.answerBytes == 24)
        #expect(t.count == 2)
        // The freed slots take the next sequence numbers.
        let five = t.insert(sequence: 5, bytes: 1), six = t.insert(sequence: 6, bytes: 1)
        #expect(five && six)
        #expect(t.isFull)
    }

    @Test("duplicate, stale and unknown answers are reported as unknown and change nothing")
    func unknown() {
        var t = InFlightTable(capacity: 2)
        t.insert(sequence: 0, bytes: 1)
        _ = t.markSent(sequence: 0, atNs: 1)
        do {
            let r = t.markAnswered(sequence: 2, atNs: 5, bytes: 1)
            #expect(r == .unknown, "same slot, different sequence")
        }
        do {
            let r = t.markAnswered(sequence: 1, atNs: 5, bytes: 1)
            #expect(r == .unknown, "empty slot")
        }
        guard case .completed = t.markAnswered(sequence: 0, atNs: 5, bytes: 1) else {
            Issue.record("seq 0 should complete")
            return
        }
        do {
            let r = t.markAnswered(sequence: 0, atNs: 6, bytes: 1)
            #expect(r == .unknown, "duplicate")
        }
        #expect(t.isEmpty)
    }

    @Test("a second answer while the send is still unrecorded is a duplicate")
    func duplicateBeforeSend() {
        var t = InFlightTable(capacity: 1)
        t.insert(sequence: 9, bytes: 1)
        do {
            let r = t.markAnswered(sequence: 9, atNs: 5, bytes: 1)
            #expect(r == .awaitingSend)
        }
        do {
            let r = t.markAnswered(sequence: 9, atNs: 6, bytes: 1)
            #expect(r == .unknown)
        }
        let sent = t.markSent(sequence: 9, atNs: 2)
        #expect(sent?.answerNs == 5)
    }

    @Test("out-of-order answers: a table with room can still have the next sequence's slot taken")
    func slotTakenThoughNotFull() {
        // Catches a sender that waits only for "not full": chunk 4 would be sent while chunk 0
        // (same slot) is still outstanding, untracked, and its ack reported as unexpected.
        var t = InFlightTable(capacity: 4)
        for s in 0 ..< 4 as Range<UInt64> {
            let ok = t.insert(sequence: s, bytes: 10)
            #expect(ok)
            let early = t.markSent(sequence: s, atNs: 1)
            #expect(early == nil)
        }
        for s in 1 ..< 4 as Range<UInt64> {
            guard case .completed = t.markAnswered(sequence: s, atNs: 2, bytes: 1) else {
                Issue.record("answer \(s) did not complete its entry"); continue
            }
        }
        #expect(!t.isFull)
        #expect(!t.canInsert(sequence: 4), "slot of 4 still holds outstanding 0")
        #expect(t.canInsert(sequence: 5))
        guard case .completed = t.markAnswered(sequence: 0, atNs: 3, bytes: 1) else {
            Issue.record("answer 0 did not complete its entry"); return
        }
        #expect(t.canInsert(sequence: 4))
    }

    @Test("drain returns what is outstanding, oldest first")
    func drain() {
        var t = InFlightTable(capacity: 3)
        for s in [5, 3, 4] as [UInt64] { t.insert(sequence: s, bytes: 1) }
        let drained = t.drain()
        #expect(drained.map(\.sequence) == [3, 4, 5])
        #expect(t.isEmpty)
    }
}

@Suite("FG request schedule")
struct RequestScheduleTests {
    @Test("on time: requests follow the grid")
    func onTime() {
        var s = RequestSchedule(startNs: 1000, intervalNs: 100)
        #expect(s.firstDueNs == 1000)
        #expect(s.next(afterAnswerAtNs: 1020) == 1100)
        #expect(s.next(afterAnswerAtNs: 1150) == 1200)
        #expect(s.lateSends == 0)
    }

    @Test("a late answer sends the next request at once, skips missed ticks, keeps the phase")
    func late() {
        var s = RequestSchedule(startNs: 0, intervalNs: 100)
        // Reply to request 0 arrives at 350: ticks 100, 200, 300 passed.
        #expect(s.next(afterAnswerAtNs: 350) == 350)
        #expect(s.lateSends == 1)
        // The next request returns to the grid.
        #expect(s.next(afterAnswerAtNs: 360) == 400)
        // Answer exactly on the grid point is on time.
        #expect(s.next(afterAnswerAtNs: 500) == 500)
        #expect(s.lateSends == 1)
    }

    @Test("a grid tied to an outside origin: the first point at or after the app is ready, so apps started apart share a phase")
    func alignedStart() {
        // Origin 1000, interval 100: an app ready at 1234 starts at 1300, one ready at 1300 at 1300,
        // one ready before the origin at the origin.
        #expect(RequestSchedule.alignedStart(originNs: 1000, intervalNs: 100, notBeforeNs: 1234) == 1300)
        #expect(RequestSchedule.alignedStart(originNs: 1000, intervalNs: 100, notBeforeNs: 1300) == 1300)
        #expect(RequestSchedule.alignedStart(originNs: 1000, intervalNs: 100, notBeforeNs: 900) == 1000)
        // Two apps ready 0.43 s apart on a 2 s grid send at the same instants.
        let o: UInt64 = 50_000_000_000, i: UInt64 = 2_000_000_000
        let a = RequestSchedule.alignedStart(originNs: o, intervalNs: i, notBeforeNs: o + 3_020_000_000)
        let b = RequestSchedule.alignedStart(originNs: o, intervalNs: i, notBeforeNs: o + 3_450_000_000)
        #expect(a == o + 4_000_000_000 && a == b)
    }
}
