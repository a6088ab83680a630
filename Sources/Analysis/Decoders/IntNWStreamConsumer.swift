import IntNWWire
import ToyProtocol

/// IROBs of one direction of one multisocket session, which may arrive over several TCP
/// connections (one per network) and be re-sent on another network after trouble.
final class IROBTable {
    struct IROB {
        var foreground: Bool?
        var startNanoseconds: UInt64
        var header = [UInt8](repeating: 0, count: ToyWire.headerLength)
        /// Which bytes of `header` were captured (bit k: byte k).
        var headerMask: UInt32 = 0
        /// Whether DATA covering the toy header arrived without its bytes (cut by the snap length):
        /// the IROB's app cannot be known, which is not a protocol error.
        var headerCut = false
        /// Received payload ranges, sorted and merged.
        var ranges: [Range<UInt64>] = []
        var totalLength: UInt64?
        var lastAvailableNanoseconds: UInt64 = 0
        var reported = false
        var connection: Int
        var fromA: Bool
        /// The app id of the toy header, once its 24 bytes are known.
        var appID: UInt32?
        /// DATA bytes seen before the header was known: booked to the app once it is.
        var unbooked: [(connection: Int, fromA: Bool, bytes: UInt64, time: UInt64)] = []

        /// Leading bytes of the toy header whose contents were captured.
        var headerBytesKnown: Int { (~headerMask).trailingZeroBitCount }

        var isComplete: Bool {
            guard let t = totalLength else { return false }
            if t == 0 { return true }
            return ranges.count == 1 && ranges[0].lowerBound == 0 && ranges[0].upperBound >= t
        }

        mutating func add(_ r: Range<UInt64>) { RangeMerge.insert(r, into: &ranges) }
    }

    var irobs: [UInt64: IROB] = [:]
    let log: MessageLog

    init(log: MessageLog) { self.log = log }

    func begin(id: UInt64, foreground: Bool?, length: UInt64?, start: UInt64, connection: Int, fromA: Bool) {
        if completed.contains(id) { return }
        highestID = max(highestID, id)
        var i = irobs[id] ?? IROB(foreground: foreground, startNanoseconds: start, connection: connection, fromA: fromA)
        i.foreground = i.foreground ?? foreground
        i.startNanoseconds = min(i.startNanoseconds, start)
        if i.totalLength == nil { i.totalLength = length }
        irobs[id] = i
    }

    /// IROBs already reported complete: later copies (re-sends on another network) are ignored
    /// for message reassembly (their bytes are still booked to the app: they crossed the wire).
    private var completed = Set<UInt64>()
    private var completedApp: [UInt64: UInt32] = [:]

    /// Books DATA payload bytes of IROB `id`, first captured at `time` on `connection`, to the app
    /// named by the IROB's toy header (held until the header is known).
    /// Bytes of an IROB this table does not know (its BEGIN_IROB and first DATA were not decoded)
    /// are unattributed.
    func book(id: UInt64, bytes: UInt64, time: UInt64, connection: Int, fromA: Bool) {
        guard bytes > 0 else { return }
        if let app = completedApp[id] ?? irobs[id]?.appID {
            log.bookAppBytes(connection: connection, fromA: fromA, appID: app, bytes: bytes, at: time)
        } else if irobs[id] != nil {
            irobs[id]!.unbooked.append((connection, fromA, bytes, time))
        } else {
            log.bookUnattributed(connection: connection, fromA: fromA, bytes: bytes)
        }
    }

    private func learnApp(_ i: inout IROB) {
        guard i.appID == nil, i.headerBytesKnown == ToyWire.headerLength,
              case .success(let h) = i.header.withUnsafeBytes({ ToyHeader.decodeResult($0) }) else { return }
        i.appID = h.appID
        for u in i.unbooked {
            log.bookAppBytes(connection: u.connection, fromA: u.fromA, appID: h.appID, bytes: u.bytes, at: u.time)
        }
        i.unbooked = []
    }

    /// Highest IROB id this table has seen begin or carry data.
    private var highestID: UInt64 = 0

    /// Whether a frame found while resynchronizing is consistent with what this session direction
    /// has shown: DATA and END_IROB of an IROB in progress (inside / equal to its declared length),
    /// a BEGIN_IROB of an IROB not yet complete (agreeing with an earlier BEGIN_IROB's length, and
    /// within 1024 ids of the highest seen).
    func confirms(_ event: IntNWWireEvent) -> Bool {
        switch event {
        case .beginIROB(let id, _, let length):
            guard id != 0, !completed.contains(id) else { return false }
            if highestID > 0 && id > highestID + 1024 { return false }
            if let t = irobs[id]?.totalLength, let l = length, t != l { return false }
            return true
        case .data(let id, let offset, let length, _):
            guard let i = irobs[id] else { return false }
            if let t = i.totalLength, offset + UInt64(length) > t { return false }
            return true
        case .endIROB(let id, let total):
            guard let i = irobs[id] else { return false }
            if let t = i.totalLength, t != total { return false }
            return true
        case .hello, .dataUnplaced, .other:
            return false
        }
    }

    func data(id: UInt64, offset: UInt64, length: Int, prefix: UnsafeRawBufferPointer, start: UInt64, end: UInt64,
              connection: Int, fromA: Bool) {
        if completed.contains(id) { return }
        highestID = max(highestID, id)
        var i = irobs[id] ?? IROB(foreground: nil, startNanoseconds: start, connection: connection, fromA: fromA)
        i.startNanoseconds = min(i.startNanoseconds, start)
        if offset < UInt64(ToyWire.headerLength) {
            let n = min(ToyWire.headerLength - Int(offset), prefix.count, length)
            if n > 0 {
                for k in 0 ..< n {
                    i.header[Int(offset) + k] = prefix[k]
                    i.headerMask |= 1 << (Int(offset) + k)
                }
            }
            if n < min(ToyWire.headerLength - Int(offset), length) { i.headerCut = true }
        }
        i.add(offset ..< offset + UInt64(max(length, 0)))
        learnApp(&i)
        i.lastAvailableNanoseconds = max(i.lastAvailableNanoseconds, end)
        irobs[id] = i
        completeIfDone(id)
    }

    func end(id: UInt64, totalLength: UInt64, at end: UInt64, connection: Int, fromA: Bool) {
        if completed.contains(id) { return }
        var i = irobs[id] ?? IROB(foreground: nil, startNanoseconds: end, connection: connection, fromA: fromA)
        i.totalLength = totalLength
        i.lastAvailableNanoseconds = max(i.lastAvailableNanoseconds, end)
        irobs[id] = i
        completeIfDone(id)
    }

    private func completeIfDone(_ id: UInt64) {
        guard let i = irobs[id], !i.reported, i.isComplete else { return }
        report(id, i, complete: true)
        for u in i.unbooked { log.bookUnattributed(connection: u.connection, fromA: u.fromA, bytes: u.bytes) }
        irobs[id] = nil
        completed.insert(id)
        if let app = i.appID { completedApp[id] = app }
    }

    private func report(_ id: UInt64, _ i: IROB, complete: Bool) {
        guard i.headerBytesKnown == ToyWire.headerLength else {
            // A toy header the snap length cut is a capture limit (its bytes are unattributed),
            // not a protocol error.
            if !i.headerCut { log.error(connection: i.connection, "IROB \(id) ended without a complete toy header") }
            return
        }
        switch i.header.withUnsafeBytes({ ToyHeader.decodeResult($0) }) {
        case .success(let h):
            log.append(MessageRecord(connection: i.connection, fromA: i.fromA, header: h,
                                     startNanoseconds: i.startNanoseconds,
                                     endNanoseconds: complete ? i.lastAvailableNanoseconds : nil,
                                     damaged: false, irobID: id, irobForeground: i.foreground))
        case .failure(let e):
            log.error(connection: i.connection, "IROB \(id) payload is not a toy message: \(e)")
        }
    }

    /// End of capture: IROBs that started but never completed are reported as incomplete.
    /// DATA bytes held for an app never learned (the toy header was not captured) are unattributed.
    func finish() {
        for (id, i) in irobs where !i.reported && i.headerBytesKnown == ToyWire.headerLength {
            report(id, i, complete: false)
        }
        for i in irobs.values {
            for u in i.unbooked { log.bookUnattributed(connection: u.connection, fromA: u.fromA, bytes: u.bytes) }
        }
        irobs.removeAll()
    }
}

/// Decodes one direction of an IntNW connection: frames → IROBs → toy messages.
final class IntNWStreamConsumer: StreamConsumer {
    private let parser: any IntNWFrameParser
    private var timeline = ChunkTimeline()
    private let registry: IntNWSessionRegistry
    /// Set by this direction's HELLO: the session and whether this direction is client → server.
    private var sessionTable: IROBTable?
    private(set) var fromClient: Bool?
    private let log: MessageLog
    private let connection: Int
    private let fromA: Bool
    private var failed = false
    private var ownTable: IROBTable
    private(set) var frames = 0
    private(set) var otherFrames: [String: Int] = [:]
    /// Frames decoded, by type name (HELLO, BEGIN_IROB, DATA, END_IROB, ACK, ...).
    private(set) var framesByType: [String: Int] = [:]

    /// Whether the connection is seen by a server-side capture (its IROBs are tracked apart from the
    /// client side's, which sees the same session).
    private let serverSide: Bool

    init(parser: any IntNWFrameParser, registry: IntNWSessionRegistry, log: MessageLog, connection: Int, fromA: Bool, serverSide: Bool = false) {
        self.serverSide = serverSide
        self.parser = parser
        self.registry = registry
        self.log = log
        self.connection = connection
        self.fromA = fromA
        self.ownTable = IROBTable(log: log)
        parser.setResyncCheck { [unowned self] event in self.table.confirms(event) }
    }

    /// What the parser could not decode (all zero for a complete capture).
    var decodingStats: IntNWDecodingStats { parser.decodingStats }

    /// The session's table when a HELLO named it, otherwise this direction's own (a capture
    /// that started after the HELLO).
    private var table: IROBTable { sessionTable ?? ownTable }

    func consume(_ bytes: UnsafeRawBufferPointer, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        guard !failed else { return }
        timeline.record(offset: offset, firstSeenNanoseconds: firstSeenNanoseconds)
        run(firstSeenNanoseconds, availableNanoseconds) { handler in parser.consume(bytes, handler) }
    }

    func truncated(length: UInt64, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        guard !failed else { return }
        // Present on the wire, contents unknown: DATA payload is stepped over (and booked).
        timeline.record(offset: offset, firstSeenNanoseconds: firstSeenNanoseconds)
        run(firstSeenNanoseconds, availableNanoseconds) { handler in parser.skip(Int(length), handler) }
    }

    private func run(_ firstSeenNanoseconds: UInt64, _ availableNanoseconds: UInt64,
                     _ feed: ((IntNWWireEvent, UInt64, UInt64) -> Void) -> String?) {
        // Chunk times are kept back to the start of the frame in progress: prune only past frames
        // that completed.
        var lastEnd: UInt64?
        let error = feed { event, frameStart, frameEnd in
            frames += 1
            lastEnd = frameEnd
            let start = timeline.firstSeen(at: frameStart) ?? firstSeenNanoseconds
            switch event {
            case .hello(let high, let low, let client):
                framesByType["HELLO", default: 0] += 1
                if sessionTable == nil {
                    sessionTable = registry.table(sessionHigh: high, sessionLow: low, fromClient: client, serverSide: serverSide)
                    fromClient = client
                }
            case .beginIROB(let id, let fg, let length):
                framesByType["BEGIN_IROB", default: 0] += 1
                table.begin(id: id, foreground: fg, length: length, start: start, connection: connection, fromA: fromA)
            case .data(let id, let o, let length, let prefix):
                framesByType["DATA", default: 0] += 1
                log.bookIROBBytes(connection: connection, fromA: fromA, irob: id, bytes: UInt64(length))
                table.data(id: id, offset: o, length: length, prefix: prefix, start: start, end: availableNanoseconds,
                           connection: connection, fromA: fromA)
                // The payload is the frame's last `length` bytes: booked to the app at the time
                // each part of it was first captured.
                let t = table
                timeline.forEachPart(from: frameEnd - UInt64(length), to: frameEnd) { bytes, time in
                    t.book(id: id, bytes: bytes, time: time, connection: connection, fromA: fromA)
                }
            case .dataUnplaced(let id?, let length):
                // The snap length cut this DATA frame's offset: its payload is booked to the IROB's
                // app, but cannot be placed inside the IROB.
                log.bookIROBBytes(connection: connection, fromA: fromA, irob: id, bytes: UInt64(length))
                let t = table
                timeline.forEachPart(from: frameEnd - UInt64(length), to: frameEnd) { bytes, time in
                    t.book(id: id, bytes: bytes, time: time, connection: connection, fromA: fromA)
                }
            case .dataUnplaced(nil, _):
                break
            case .endIROB(let id, let total):
                framesByType["END_IROB", default: 0] += 1
                table.end(id: id, totalLength: total, at: availableNanoseconds, connection: connection, fromA: fromA)
            case .other(let name):
                otherFrames[name, default: 0] += 1
                framesByType[name, default: 0] += 1
            }
        }
        if let e = lastEnd { timeline.prune(before: e) }
        if let e = error {
            failed = true
            log.error(connection: connection, "IntNW framing error: \(e)")
        }
    }

    func gap(length: UInt64, offset: UInt64, availableNanoseconds: UInt64) {
        // The frame in progress is lost; the parser resynchronizes on a later confirmed frame.
        guard !failed else { return }
        timeline.recordAbsent(offset: offset)
        run(availableNanoseconds, availableNanoseconds) { handler in parser.gap(Int(length), handler) }
    }

    func finish(atNanoseconds: UInt64) {
        ownTable.finish()
    }
}

/// IROB tables per (session, direction) for the whole analysis.
final class IntNWSessionRegistry {
    private var tables: [Key: IROBTable] = [:]
    private let log: MessageLog
    private struct Key: Hashable { var high: UInt64; var low: UInt64; var fromClient: Bool; var serverSide: Bool }

    init(log: MessageLog) { self.log = log }

    func table(sessionHigh: UInt64, sessionLow: UInt64, fromClient: Bool, serverSide: Bool = false) -> IROBTable {
        let k = Key(high: sessionHigh, low: sessionLow, fromClient: fromClient, serverSide: serverSide)
        if let t = tables[k] { return t }
        let t = IROBTable(log: log)
        tables[k] = t
        return t
    }

    func finish() { for t in tables.values { t.finish() } }
}
