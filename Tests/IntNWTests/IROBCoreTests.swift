import Testing
@testable import IntNW

private func begin(_ id: UInt64, _ len: UInt32, _ deps: DependencySpec, _ labels: Labels = .none) -> BeginIROB {
    BeginIROB(id: IROBID(id), labels: labels, length: len, dependencies: deps)
}

private func deliverWhole(_ r: inout IROBReceiver, _ b: BeginIROB, fill: UInt8 = 7) throws {
    _ = try r.begin(b, nowNs: 1)
    let bytes = [UInt8](repeating: fill, count: Int(b.length))
    _ = try bytes.withUnsafeBytes { try r.data(id: b.id, offset: 0, bytes: $0, nowNs: 2) }
}

private func releasedIDs(_ r: inout IROBReceiver) -> [UInt64] {
    let out = r.takeReleased()
    for x in out { r.consumed(length: x.bytes.count) }
    return out.map(\.id.rawValue)
}

@Suite("IROB receiver")
struct IROBReceiverTests {
    @Test("diamond dependencies release in dependency order whatever the arrival order")
    func diamond() throws {
        // 1 <- 2, 1 <- 3, {2,3} <- 4
        let irobs = [begin(1, 10, .explicit([])), begin(2, 10, .explicit([IROBID(1)])),
                     begin(3, 10, .explicit([IROBID(1)])), begin(4, 10, .explicit([IROBID(2), IROBID(3)]))]
        for order in [[3, 2, 1, 0], [0, 3, 1, 2], [1, 3, 0, 2], [2, 1, 3, 0]] {
            var r = IROBReceiver()
            var got: [UInt64] = []
            for i in order {
                try deliverWhole(&r, irobs[i])
                got += releasedIDs(&r)
            }
            #expect(got.count == 4 && Set(got) == [1, 2, 3, 4])
            #expect(got.first == 1 && got.last == 4, "order \(order) released \(got)")
        }
    }

    @Test("a dependency on an IROB not yet seen holds the dependent back")
    func unseenDependency() throws {
        var r = IROBReceiver()
        try deliverWhole(&r, begin(5, 3, .explicit([IROBID(3)])))
        #expect(releasedIDs(&r).isEmpty)
        // Unrelated independent IROBs pass.
        try deliverWhole(&r, begin(2, 3, .explicit([])))
        #expect(releasedIDs(&r) == [2])
        try deliverWhole(&r, begin(3, 3, .explicit([IROBID(2)])))
        #expect(releasedIDs(&r) == [3, 5])
        // An allEarlier IROB waits for the gap at 1 and 4.
        try deliverWhole(&r, begin(6, 1, .allEarlier))
        #expect(releasedIDs(&r).isEmpty)
        try deliverWhole(&r, begin(4, 1, .allEarlier))
        #expect(releasedIDs(&r).isEmpty)
        try deliverWhole(&r, begin(1, 1, .allEarlier))
        #expect(releasedIDs(&r) == [1, 4, 6])
        #expect(r.releaseFloor == 7)
    }

    @Test("duplicated and reordered DATA is delivered exactly once, byte-identical")
    func duplicates() throws {
        var r = IROBReceiver()
        let payload = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let b = begin(1, 1000, .allEarlier, .background)
        #expect(try r.begin(b, nowNs: 0) == .none)
        // Overlapping, out-of-order, repeated chunks.
        for (o, n) in [(500, 300), (0, 100), (50, 100), (500, 300), (100, 450), (790, 210)] {
            _ = try payload.withUnsafeBytes {
                try r.data(id: b.id, offset: UInt32(o), bytes: UnsafeRawBufferPointer(rebasing: $0[o..<(o + n)]), nowNs: 5)
            }
        }
        let out = r.takeReleased()
        #expect(out.count == 1 && out[0].bytes == payload && out[0].labels == .background)
        // Late duplicates: dropped and re-ACKed, never re-released.
        #expect(try r.begin(b, nowNs: 9) == .reAck(b.id))
        #expect(try payload.withUnsafeBytes { try r.data(id: b.id, offset: 0, bytes: $0, nowNs: 9) } == .reAck(b.id))
        #expect(r.takeReleased().isEmpty)
        #expect(r.takePendingAcks().map(\.id) == [b.id])
    }

    @Test("protocol violations are typed errors")
    func violations() throws {
        var r = IROBReceiver()
        #expect(throws: ProtocolError.self) {
            _ = try [UInt8(1)].withUnsafeBytes { try r.data(id: IROBID(1), offset: 0, bytes: $0, nowNs: 0) }
        }
        _ = try r.begin(begin(1, 4, .allEarlier), nowNs: 0)
        #expect(throws: ProtocolError.self) { _ = try r.begin(begin(1, 5, .allEarlier), nowNs: 0) }
        #expect(throws: ProtocolError.self) {
            _ = try [UInt8](repeating: 0, count: 5).withUnsafeBytes { try r.data(id: IROBID(1), offset: 0, bytes: $0, nowNs: 0) }
        }
        #expect(throws: ProtocolError.self) { _ = try r.end(id: IROBID(1), length: 3) }
        #expect(throws: ProtocolError.self) { _ = try r.end(id: IROBID(2), length: 3) }
        #expect(throws: ProtocolError.self) { _ = try r.begin(begin(70_000, 1, .explicit([])), nowNs: 0) }
    }

    @Test("bounded buffering: backpressure while the app lags, hard limit when nothing can be released")
    func bounded() throws {
        let limits = ReceiveLimits(bufferBytes: 10_000, hardLimitBytes: 20_000, perIROBOverheadBytes: 100)
        var r = IROBReceiver(limits: limits)
        // Releasable IROBs past the soft bound: stop reading until the app consumes.
        for i in 1...3 { try deliverWhole(&r, begin(UInt64(i), 4_000, .allEarlier)) }
        #expect(!r.shouldRead)
        let out = r.takeReleased()
        for x in out { r.consumed(length: x.bytes.count) }
        #expect(r.shouldRead && r.bufferedBytes == 0)
        // Nothing releasable (4 missing): keep reading past the soft bound...
        for i in 5...7 { try deliverWhole(&r, begin(UInt64(i), 4_000, .allEarlier)) }
        #expect(r.shouldRead)
        // ...up to the hard limit, then the peer is in violation.
        try deliverWhole(&r, begin(8, 4_000, .allEarlier))
        #expect(throws: ProtocolError(.receiveBufferExceeded(limitBytes: 20_000))) {
            try deliverWhole(&r, begin(9, 4_000, .allEarlier))
        }
    }

    @Test("DATA_CHECK answers ACK for complete IROBs and RESEND_REQUEST for gaps")
    func dataCheck() throws {
        var r = IROBReceiver()
        try deliverWhole(&r, begin(1, 10, .allEarlier))
        _ = try r.begin(begin(2, 100, .allEarlier), nowNs: 0)
        _ = try [UInt8](repeating: 1, count: 10).withUnsafeBytes { try r.data(id: IROBID(2), offset: 20, bytes: $0, nowNs: 0) }
        let (ack, resend) = r.check([IROBID(1), IROBID(2), IROBID(3)])
        #expect(ack == [IROBID(1)])
        #expect(resend == [ResendRequest(id: IROBID(2), needsBegin: false, offset: 0, length: 20),
                           ResendRequest(id: IROBID(2), needsBegin: false, offset: 30, length: 70),
                           ResendRequest(id: IROBID(3), needsBegin: true, offset: 0, length: 0)])
    }
}

@Suite("IROB sender")
struct IROBSenderTests {
    @Test("chunks, BEGIN per connection, END on the last chunk, ACK slides the window")
    func chunking() throws {
        var s = IROBSender(limits: SendLimits(windowBytes: 1000, maxIROBBytes: 1000, maxChunkBytes: 100, perIROBOverheadBytes: 0))
        let id = s.enqueue([UInt8](repeating: 1, count: 250), labels: .foreground, dependencies: .allEarlier)
        #expect(id == IROBID(1))
        let c1 = s.nextChunk(labels: .foreground, maxBytes: 1000, on: ConnectionID(1), nowNs: 1)!
        #expect(c1.begin != nil && c1.range == 0..<100 && !c1.isLast)
        let c2 = s.nextChunk(labels: .foreground, maxBytes: 1000, on: ConnectionID(1), nowNs: 2)!
        #expect(c2.begin == nil && c2.range == 100..<200)
        let c3 = s.nextChunk(labels: .foreground, maxBytes: 1000, on: ConnectionID(2), nowNs: 3)!
        #expect(c3.begin != nil && c3.range == 200..<250 && c3.isLast)
        #expect(s.nextChunk(labels: .foreground, maxBytes: 1000, on: ConnectionID(1), nowNs: 4) == nil)
        #expect(!s.canEnqueue(length: 800))
        // Connection 1 dies: its 200 bytes go back, connection 2's stay placed.
        #expect(s.connectionFailed(ConnectionID(1)) == [id])
        #expect(s.unsentForegroundBytes == 200)
        let c4 = s.nextChunk(labels: .foreground, maxBytes: 1000, on: ConnectionID(2), nowNs: 5)!
        #expect(c4.begin == nil && c4.range == 0..<100)
        let sample = s.acknowledge(id)
        #expect(sample?.resent == true && sample?.lengthBytes == 250)
        #expect(s.canEnqueue(length: 800) && s.windowUsedBytes == 0 && s.lowestUnacked == 2)
        #expect(s.acknowledge(id) == nil)
    }

    @Test("dependencies must name earlier IROBs")
    func validation() {
        var s = IROBSender()
        #expect(throws: IROBSender.EnqueueError.badDependency(IROBID(1))) {
            try s.validate(length: 1, dependencies: .explicit([IROBID(1)]))
        }
        _ = s.enqueue([1], labels: .none, dependencies: .allEarlier)
        #expect(throws: Never.self) { try s.validate(length: 1, dependencies: .explicit([IROBID(1)])) }
        #expect(throws: IROBSender.EnqueueError.tooLarge(17 << 20)) { try s.validate(length: 17 << 20, dependencies: .allEarlier) }
    }
}

/// Sender and receiver joined by simulated connections that reorder across connections,
/// duplicate frames, die (losing what was in flight and unacknowledged ACKs) and come back.
@Suite("IROB end to end (simulated transport)")
struct IROBPropertyTests {
    struct Conn {
        var id: ConnectionID
        var inFlight: [Frame] = []
    }

    @Test("exactly-once, byte-identical, dependency order, under loss of connections and duplicates",
          arguments: [1, 2, 3, 4])
    func randomized(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var sender = IROBSender(limits: SendLimits(windowBytes: 1 << 20, maxIROBBytes: 64 << 10, maxChunkBytes: 700))
        var receiver = IROBReceiver()
        var conns = [Conn(id: ConnectionID(1)), Conn(id: ConnectionID(2))]
        var nextConn: UInt32 = 3
        var sent: [UInt64: (bytes: [UInt8], deps: DependencySpec, labels: Labels)] = [:]
        var releaseIndex: [UInt64: Int] = [:]
        var delivered: [Frame] = []
        let total = 300
        var now: UInt64 = 1
        var decoders: [UInt32: FrameDecoder] = [:]

        func drainReleased() {
            for x in receiver.takeReleased() {
                if releaseIndex[x.id.rawValue] != nil { Issue.record("released twice: \(x.id)") }
                releaseIndex[x.id.rawValue] = releaseIndex.count
                if x.bytes != sent[x.id.rawValue]?.bytes { Issue.record("bytes differ for \(x.id)") }
                if x.labels != sent[x.id.rawValue]?.labels { Issue.record("labels differ for \(x.id)") }
                receiver.consumed(length: x.bytes.count)
            }
        }
        func deliver(_ f: Frame, on c: ConnectionID) throws {
            // Through the real codec, one byte stream per connection.
            decoders[c.rawValue, default: FrameDecoder()].feed(f.encoded())
            let g = try decoders[c.rawValue]!.next()!
            if case .data = g {} else if g != f { Issue.record("codec changed a frame") }
            switch g {
            case .beginIROB(let b): _ = try receiver.begin(b, nowNs: now)
            case .data(let chunk):
                _ = try chunk.bytes.withUnsafeBytes { try receiver.data(id: chunk.id, offset: chunk.offset, bytes: $0, nowNs: now) }
            case .endIROB(let id, let len): _ = try receiver.end(id: id, length: len)
            default: Issue.record("unexpected frame \(g)")
            }
            drainReleased()
        }

        while releaseIndex.count < total {
            now += 1
            let quiet = !sender.hasUnsent && conns.allSatisfy { $0.inFlight.isEmpty }
            var action = rng.next() % 100
            if quiet { action = sender.lastAssignedID < UInt64(total) ? 0 : 97 }
            if action < 25, sender.lastAssignedID < UInt64(total) {
                let size = Int(rng.next() % 3000)
                let bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                let deps: DependencySpec
                let k = sender.lastAssignedID
                switch rng.next() % 3 {
                case 0: deps = .allEarlier
                case 1: deps = .explicit([])
                default:
                    deps = k == 0 ? .explicit([]) : .explicit((0..<(rng.next() % 4)).map { _ in IROBID(1 + rng.next() % k) })
                }
                let labels: Labels = rng.next() & 1 == 0 ? .foreground : .background | .large
                guard sender.canEnqueue(length: size) else { continue }
                try sender.validate(length: size, dependencies: deps)
                let id = sender.enqueue(bytes, labels: labels, dependencies: deps)
                sent[id.rawValue] = (bytes, sender.unacked[id.rawValue]!.begin.dependencies, labels)
            } else if action < 55 {
                // Sender puts a chunk on a random connection.
                let ci = Int(rng.next() % UInt64(conns.count))
                let heads = sender.queueHeads.sorted { $0.id < $1.id }
                guard let h = heads.first else { continue }
                if let chunk = sender.nextChunk(labels: h.labels, maxBytes: 1 + Int(rng.next() % 2000), on: conns[ci].id, nowNs: now) {
                    if let b = chunk.begin { conns[ci].inFlight.append(.beginIROB(b)) }
                    let bytes = sender.withBytes(of: chunk.id) { Array($0[Int(chunk.range.lowerBound)..<Int(chunk.range.upperBound)]) }!
                    if !chunk.range.isEmpty {
                        conns[ci].inFlight.append(.data(DataChunk(id: chunk.id, offset: chunk.range.lowerBound, bytes: bytes)))
                    }
                    if chunk.isLast { conns[ci].inFlight.append(.endIROB(id: chunk.id, length: UInt32(sent[chunk.id.rawValue]!.bytes.count))) }
                }
            } else if action < 90 {
                // Deliver the head frame of a random connection (FIFO per connection).
                let ci = Int(rng.next() % UInt64(conns.count))
                guard !conns[ci].inFlight.isEmpty else { continue }
                let f = conns[ci].inFlight.removeFirst()
                try deliver(f, on: conns[ci].id)
                delivered.append(f)
                // ACKs come back (on a connection that may die: 10% are lost).
                for a in receiver.takePendingAcks() where rng.next() % 10 != 0 { _ = sender.acknowledge(a.id) }
            } else if action < 95, let f = delivered.randomElement(using: &rng) {
                // A duplicate of something already delivered (e.g. a resend that crossed an ACK).
                try deliver(f, on: ConnectionID(999))
            } else if action < 97 {
                // A connection dies: what was in flight is lost; the sender requeues.
                let ci = Int(rng.next() % UInt64(conns.count))
                let dead = conns[ci].id
                conns[ci] = Conn(id: ConnectionID(nextConn))
                nextConn += 1
                decoders[dead.rawValue] = nil
                sender.connectionFailed(dead)
            } else if sender.lastAssignedID == UInt64(total), !sender.hasUnsent, conns.allSatisfy({ $0.inFlight.isEmpty }) {
                // Quiescent with lost ACKs: DATA_CHECK what is unacknowledged.
                let ids = sender.unacked.keys.sorted().prefix(Wire.maxListEntries).map { IROBID($0) }
                let (ack, resend) = receiver.check(ids)
                for a in ack { _ = sender.acknowledge(a) }
                for r in resend { sender.resend(r) }
            }
        }
        #expect(releaseIndex.count == total)
        // Every dependency was released before its dependent.
        for (id, info) in sent {
            let mine = releaseIndex[id]!
            switch info.deps {
            case .allEarlier:
                for d in 1..<id { #expect(releaseIndex[d]! < mine, "\(id) released before \(d)") }
            case .explicit(let ds):
                for d in ds { #expect(releaseIndex[d.rawValue]! < mine, "\(id) released before \(d)") }
            }
        }
    }
}
