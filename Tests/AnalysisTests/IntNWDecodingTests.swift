import Foundation
import Testing
@testable import Analysis
import IntNW
import ToyProtocol
import SyntheticTraffic

/// IntNW traffic built with IntNW's own encoder, analyzed from pcaps.
@Suite final class IntNWDecodingTests {
    let dir = tempDir("intnw")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    let session = SessionID(high: 0x1122_3344_5566_7788, low: 0x99AA_BBCC_DDEE_FF00)

    func hello(_ role: Role, network: UInt32, kind: NetworkKind) -> [UInt8] {
        Frame.hello(Hello(role: role, session: session, networkID: network, networkKind: kind, interfaceName: kind == .wifi ? "wifi0" : "cell0")).encoded()
    }

    /// BEGIN_IROB + DATA (in `pieces` frames) + END_IROB carrying one toy message.
    func irob(_ id: UInt64, labels: Labels, message: [UInt8], pieces: Int = 1) -> (begin: [UInt8], data: [[UInt8]], end: [UInt8]) {
        let begin = Frame.beginIROB(BeginIROB(id: IROBID(id), labels: labels, length: UInt32(message.count), dependencies: .allEarlier)).encoded()
        var data: [[UInt8]] = []
        let step = (message.count + pieces - 1) / pieces
        var o = 0
        while o < message.count {
            let n = min(step, message.count - o)
            data.append(Frame.data(DataChunk(id: IROBID(id), offset: UInt32(o), bytes: Array(message[o ..< o + n]))).encoded())
            o += n
        }
        return (begin, data, Frame.endIROB(id: IROBID(id), length: UInt32(message.count)).encoded())
    }

    @Test func fgLatencyAcrossTwoNetworksOfOneSession() throws {
        let wifiPath = dir + "/wifi0.pcap", cellPath = dir + "/cell0.pcap"
        let wifi = try SyntheticCapture(path: wifiPath), cell = try SyntheticCapture(path: cellPath)
        let w = SyntheticFlow(capture: wifi, client: (parseIPv4("198.18.1.2")!, 40100), server: (serverIP, 9000))
        let c = SyntheticFlow(capture: cell, client: (parseIPv4("198.18.2.2")!, 40101), server: (serverIP, 9000))
        w.handshake(at: t0)
        c.handshake(at: t0)
        w.send(fromClient: true, bytes: hello(.client, network: 1, kind: .wifi), at: t0 + 2 * ms)
        w.send(fromClient: false, bytes: hello(.server, network: 1, kind: .wifi), at: t0 + 3 * ms)
        c.send(fromClient: true, bytes: hello(.client, network: 2, kind: .cellular), at: t0 + 2 * ms)
        c.send(fromClient: false, bytes: hello(.server, network: 2, kind: .cellular), at: t0 + 4 * ms)

        // Request 1 goes out on WiFi; its reply comes back on cellular in two DATA frames.
        let r1 = irob(1, labels: .foreground, message: toy(.fgRequest, app: 5, seq: 1, payload: 104))
        w.send(fromClient: true, bytes: r1.begin + r1.data[0] + r1.end, at: t0 + 100 * ms)
        let p1 = irob(1, labels: .foreground | .small, message: toy(.fgReply, app: 5, seq: 1, payload: 2000), pieces: 2)
        c.send(fromClient: false, bytes: p1.begin + p1.data[0], at: t0 + 130 * ms)
        c.send(fromClient: false, bytes: p1.data[1] + p1.end, at: t0 + 145 * ms)

        // Request 2 starts on WiFi (BEGIN + first half), WiFi stalls, the whole IROB is re-sent on
        // cellular; the reply arrives on cellular.
        let r2 = irob(2, labels: .foreground, message: toy(.fgRequest, app: 5, seq: 2, payload: 104), pieces: 2)
        w.send(fromClient: true, bytes: r2.begin + r2.data[0], at: t0 + 200 * ms)
        c.send(fromClient: true, bytes: r2.begin + r2.data[0] + r2.data[1] + r2.end, at: t0 + 600 * ms)
        let p2 = irob(2, labels: .foreground, message: toy(.fgReply, app: 5, seq: 2, payload: 40))
        c.send(fromClient: false, bytes: p2.begin + p2.data[0] + p2.end, at: t0 + 700 * ms)

        // A BG IROB on WiFi carrying a bgChunk, and one mislabeled IROB (FG label, bgChunk inside).
        let b3 = irob(3, labels: .background, message: toy(.bgChunk, app: 5, seq: 0, payload: 3000), pieces: 3)
        w.send(fromClient: true, bytes: b3.begin + b3.data.flatMap { $0 } + b3.end, at: t0 + 800 * ms)
        let b4 = irob(4, labels: .foreground, message: toy(.bgChunk, app: 5, seq: 1, payload: 10))
        w.send(fromClient: true, bytes: b4.begin + b4.data[0] + b4.end, at: t0 + 900 * ms)
        try wifi.close()
        try cell.close()

        let meta = RunMetadata(apps: [.init(name: "fg", role: .fg, variant: .intnw, appId: 5, serverPorts: [9000])])
        let a = try Analyzer.analyze(TrialInput(name: "i", captures: [CaptureInput(path: wifiPath, interface: "wifi0"),
                                                                    CaptureInput(path: cellPath, interface: "cell0")], metadata: meta))
        #expect(a.result.intnwConnections == 2)
        #expect(a.result.connections.allSatisfy { $0.protocol == .intnw && $0.framingErrors == 0 && $0.app == "fg" })
        #expect(a.latencies.map(\.sequence) == [1, 2])
        // Reply 1's last byte arrived at +145 ms; request 1 left at +100 ms.
        #expect(a.latencies.first?.latencyNanoseconds == 45 * ms)
        // Request 2 first left at +200 ms (on WiFi), reply complete at +700 ms.
        #expect(a.latencies.last?.latencyNanoseconds == 500 * ms)
        let app = try #require(a.result.apps.first)
        #expect(app.messages["fgRequest"] == 2 && app.messages["fgReply"] == 2 && app.messages["bgChunk"] == 2)
        #expect(app.labelMismatches == 1)
        #expect(app.labeledBackground == 1)
        #expect(!a.warnings.contains { $0.contains("no IntNW traffic") })
        #expect(a.warnings.contains { $0.contains("labeled differently") })
    }

    @Test func frameSpreadOverSegmentsIsDatedByItsFirstByte() throws {
        let path = dir + "/spread.pcap"
        let cap = try SyntheticCapture(path: path)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40300), server: (serverIP, 9200))
        f.mss = 10  // every frame spans three or more segments
        f.handshake(at: t0)
        f.send(fromClient: true, bytes: hello(.client, network: 1, kind: .wifi), at: t0 + ms, gapNanoseconds: ms)
        f.send(fromClient: false, bytes: hello(.server, network: 1, kind: .wifi), at: t0 + 10 * ms, gapNanoseconds: ms)
        let r = irob(1, labels: .foreground, message: toy(.fgRequest, app: 8, seq: 0, payload: 104))
        let last = f.send(fromClient: true, bytes: r.begin + r.data[0] + r.end, at: t0 + 100 * ms, gapNanoseconds: 5 * ms)
        let p = irob(1, labels: .foreground, message: toy(.fgReply, app: 8, seq: 0, payload: 40))
        let replyStart = last + 20 * ms
        f.send(fromClient: false, bytes: p.begin + p.data[0] + p.end, at: replyStart, gapNanoseconds: 2 * ms)
        try cap.close()
        let a = try Analyzer.analyze(TrialInput(name: "s", captures: [CaptureInput(path: path)]))
        #expect(a.latencies.count == 1)
        // From the request's first segment to the segment carrying the reply's last DATA byte.
        let lastDataByte = p.begin.count + p.data[0].count - 1
        let replyDone = replyStart + UInt64(lastDataByte / 10) * 2 * ms
        #expect(a.latencies.first?.latencyNanoseconds == replyDone - (t0 + 100 * ms))
    }

    @Test func corruptIntNWStreamIsReportedNotFatal() throws {
        let path = dir + "/bad.pcap"
        let cap = try SyntheticCapture(path: path)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40200), server: (serverIP, 9100))
        f.handshake(at: t0)
        f.send(fromClient: true, bytes: hello(.client, network: 1, kind: .wifi), at: t0 + ms)
        // A frame with type 0x33 (unknown, below the extension range): a protocol error.
        f.send(fromClient: true, bytes: [0, 0, 0, 3, 0x33, 1, 2] + Array(repeating: 0xEE, count: 50), at: t0 + 2 * ms)
        try cap.close()
        let a = try Analyzer.analyze(TrialInput(name: "b", captures: [CaptureInput(path: path)]))
        let conn = try #require(a.result.connections.first)
        #expect(conn.protocol == .intnw)
        #expect(conn.framingErrors == 1)
        #expect(conn.firstFramingError?.contains("IntNW framing error") == true)
    }

    /// One multisocket, FG and BG apps (ids 1 and 2), two networks. A BG IROB starts on WiFi and
    /// its second half goes out on cellular, where only FG messages complete. The cellular
    /// connection carries both apps' bytes: the old rule ("a connection where one app's messages
    /// complete is that app's") booked BG's 6,000 cellular bytes to FG -- seen in a vehicular
    /// bgpolicy run, FG 139 kB where its requests were 2.7 kB (the dissector's figure).
    @Test func bgBytesOfAnIROBSplitAcrossNetworksAreNotBookedToFG() throws {
        let wifiPath = dir + "/split-wifi0.pcap", cellPath = dir + "/split-cell0.pcap"
        let wifi = try SyntheticCapture(path: wifiPath), cell = try SyntheticCapture(path: cellPath)
        let w = SyntheticFlow(capture: wifi, client: (parseIPv4("198.18.1.2")!, 40110), server: (serverIP, 9010))
        let c = SyntheticFlow(capture: cell, client: (parseIPv4("198.18.2.2")!, 40111), server: (serverIP, 9010))
        w.handshake(at: t0)
        c.handshake(at: t0)
        w.send(fromClient: true, bytes: hello(.client, network: 1, kind: .wifi), at: t0 + 2 * ms)
        c.send(fromClient: true, bytes: hello(.client, network: 2, kind: .cellular), at: t0 + 2 * ms)
        // BG IROB 1: 12,024 bytes in two DATA frames, the first (with the toy header) on WiFi.
        let b = irob(1, labels: .background, message: toy(.bgChunk, app: 2, seq: 0, payload: 12_000), pieces: 2)
        w.send(fromClient: true, bytes: b.begin + b.data[0], at: t0 + 10 * ms)
        c.send(fromClient: true, bytes: b.begin + b.data[1] + b.end, at: t0 + 20 * ms)
        // FG requests complete on cellular only.
        for k in 0 ..< 3 {
            let r = irob(UInt64(2 + k), labels: .foreground, message: toy(.fgRequest, app: 1, seq: UInt64(k), payload: 104))
            c.send(fromClient: true, bytes: r.begin + r.data[0] + r.end, at: t0 + UInt64(100 + 100 * k) * ms)
        }
        try wifi.close()
        try cell.close()
        let meta = RunMetadata(apps: [.init(name: "fg", role: .fg, variant: .intnw, appId: 1),
                                      .init(name: "bg", role: .bg, variant: .intnw, appId: 2)])
        let a = try Analyzer.analyze(TrialInput(name: "s", captures: [CaptureInput(path: wifiPath, interface: "wifi0"),
                                                                    CaptureInput(path: cellPath, interface: "cell0")], metadata: meta))
        let fg = try #require(a.result.apps.first { $0.name == "fg" })
        let bg = try #require(a.result.apps.first { $0.name == "bg" })
        #expect(fg.throughput.uplinkBytes == 3 * 128, "FG's own requests only")
        #expect(bg.throughput.uplinkBytes == 12_024, "both halves of the BG IROB")
        let cellConn = try #require(a.result.connections.first { $0.interface == "cell0" })
        #expect(cellConn.app == "fg+bg")
        #expect(a.result.accountingViolations == 0)
    }

    @Test func helloRecognition() {
        let h = hello(.client, network: 1, kind: .wifi)
        h.withUnsafeBytes { raw in
            #expect(IntNWWireDecoding.recognizesHello(raw) == true)
            #expect(IntNWWireDecoding.recognizesHello(UnsafeRawBufferPointer(rebasing: raw[0 ..< 6])) == nil)
        }
        toy(.fgRequest, app: 1, seq: 1, payload: 0).withUnsafeBytes { #expect(IntNWWireDecoding.recognizesHello($0) == false) }
    }
}

@Suite struct IntNWAdapterTests {
    /// A stream with every frame type, DATA of several sizes (0 bytes, under and over 24 bytes).
    static func stream() -> (bytes: [UInt8], frames: [Frame]) {
        let s = SessionID(high: 1, low: 2)
        var frames: [Frame] = [
            .hello(Hello(role: .client, session: s, networkID: 7, networkKind: .wifi, interfaceName: "wifi0")),
            .beginIROB(BeginIROB(id: IROBID(1), labels: .background, length: 30, dependencies: .explicit([]))),
            .data(DataChunk(id: IROBID(1), offset: 0, bytes: Array(0 ..< 10))),
            .data(DataChunk(id: IROBID(1), offset: 10, bytes: Array(10 ..< 30))),
            .endIROB(id: IROBID(1), length: 30),
            .ping(nonce: 9), .pong(nonce: 9, holdMicroseconds: 5),
            .ack(Ack(cumulative: 2, entries: [AckEntry(id: IROBID(1), holdMicroseconds: 3)])),
            .data(DataChunk(id: IROBID(2), offset: 5, bytes: [])),
            .resendRequest(ResendRequest(id: IROBID(2), needsBegin: true, offset: 0, length: 4)),
            .dataCheck(ids: [IROBID(1), IROBID(2)]),
            .downInterface(networkID: 7),
            .goodbye(Goodbye(reason: .closed, lastID: 2)),
        ]
        frames.insert(.data(DataChunk(id: IROBID(3), offset: 0, bytes: (0 ..< 5000).map { UInt8(truncatingIfNeeded: $0) })), at: 5)
        return (frames.flatMap { $0.encoded() }, frames)
    }

    @Test(arguments: [1, 2, 3, 5, 16, 17, 18, 100, 100_000])
    func anyChunkingGivesTheSameFramesAndOffsets(chunk: Int) {
        let (bytes, frames) = Self.stream()
        let adapter = IntNWFrameDecoderAdapter()
        var events: [(String, UInt64, UInt64)] = []
        bytes.withUnsafeBytes { raw in
            var i = 0
            while i < raw.count {
                let n = min(chunk, raw.count - i)
                let err = adapter.consume(UnsafeRawBufferPointer(rebasing: raw[i ..< i + n])) { e, s, end in
                    switch e {
                    case .data(let id, let o, let len, let p): events.append(("data \(id) \(o) \(len) \(Array(p.prefix(3)))", s, end))
                    case .hello(_, let low, let c): events.append(("hello \(low) \(c)", s, end))
                    case .beginIROB(let id, let fg, let l): events.append(("begin \(id) \(String(describing: fg)) \(String(describing: l))", s, end))
                    case .endIROB(let id, let l): events.append(("end \(id) \(l)", s, end))
                    case .other(let name): events.append((name, s, end))
                    case .dataUnplaced(let id, let len): events.append(("unplaced \(String(describing: id)) \(len)", s, end))
                    }
                }
                #expect(err == nil)
                i += n
            }
        }
        #expect(events.count == frames.count)
        var pos: UInt64 = 0
        for (k, f) in frames.enumerated() where k < events.count {
            #expect(events[k].1 == pos)
            pos += UInt64(f.encodedLength)
            #expect(events[k].2 == pos)
        }
        #expect(events.map(\.0).contains("data 3 0 5000 [0, 1, 2]"))
        #expect(events.map(\.0).contains("data 2 5 0 []"))
        #expect(events.map(\.0).contains("begin 1 Optional(false) Optional(30)"))
        #expect(events.map(\.0).contains("hello 2 true"))
    }

    /// The snap length cuts `cut` (a range of stream bytes, present but unknown) out of the stream,
    /// wherever it falls: inside a DATA payload, a frame header, a length field. Decoding never
    /// stops; every frame it reports is a true frame at its true position (nothing is invented);
    /// it resumes at the first frame after the cut it can confirm; and each DATA payload byte is
    /// either booked (placed or unplaced) or counted as unattributed. The old decoder stopped for
    /// good at a cut header.
    @Test func cutFramingResumesAtAConfirmedFrame() throws {
        let (bytes, frames) = Self.stream()
        var truth: [String: (UInt64, UInt64)] = [:]
        var starts: [UInt64] = []
        var pos: UInt64 = 0
        for f in frames {
            starts.append(pos)
            if case .data(let d) = f { truth["data \(d.id.rawValue) \(d.offset) \(d.bytes.count)"] = (pos, pos + UInt64(f.encodedLength)) }
            pos += UInt64(f.encodedLength)
        }
        let payloadTotal = frames.reduce(0) { if case .data(let d) = $1 { return $0 + d.bytes.count }; return $0 }
        var cuts: [Range<Int>] = []
        for a in stride(from: 0, to: bytes.count, by: 3) { for len in [1, 3, 4, 9, 40, 300, 2000] where a + len <= bytes.count { cuts.append(a ..< a + len) } }
        var resumedAfterLengthCut = 0
        for cut in cuts {
            let adapter = IntNWFrameDecoderAdapter()
            // Confirms DATA / END of the IROBs this stream has (1 and 2 begun; 3 and 2 carry data).
            adapter.setResyncCheck { e in
                switch e {
                case .data(let id, _, _, _), .endIROB(let id, _): return [1, 2, 3].contains(id)
                case .beginIROB: return true
                default: return false
                }
            }
            var placed = 0, unplaced = 0
            var events: [(String, UInt64, UInt64)] = []
            let handler: (IntNWWireEvent, UInt64, UInt64) -> Void = { e, s, end in
                switch e {
                case .data(let id, let o, let len, _):
                    placed += len
                    events.append(("data \(id) \(o) \(len)", s, end))
                case .dataUnplaced(let id, let len):
                    unplaced += len
                    if let id { events.append(("unplaced \(id) \(len)", s, end)) }
                default: events.append(("frame", s, end))
                }
            }
            try bytes.withUnsafeBytes { raw in
                #expect(adapter.consume(UnsafeRawBufferPointer(rebasing: raw[0 ..< cut.lowerBound]), handler) == nil)
                #expect(adapter.skip(cut.count, handler) == nil, "cut \(cut)")
                let err = adapter.consume(UnsafeRawBufferPointer(rebasing: raw[cut.upperBound...]), handler)
                try #require(err == nil, "cut \(cut): \(err!)")
            }
            // Every event is a frame boundary of the true stream; DATA events are the true ones.
            for (name, s, end) in events {
                #expect(starts.contains(s) && (starts.contains(end) || end == UInt64(bytes.count)), "cut \(cut): \(name) at \(s)..<\(end)")
                if name.hasPrefix("data") { #expect(truth[name].map { $0 == (s, end) } == true, "cut \(cut): invented \(name)") }
                if name.hasPrefix("unplaced") { #expect(truth.values.contains { $0 == (s, end) }, "cut \(cut): \(name)") }
            }
            let st = adapter.decodingStats
            #expect(placed + unplaced <= payloadTotal)
            #expect(UInt64(placed + unplaced) + st.unattributedBytes >= UInt64(payloadTotal), "cut \(cut): payload neither booked nor unattributed")
            #expect(st.resynchronized <= st.framingLost)
            // After the cut, the first confirmable frame (DATA of IROB 3 or 2) is decoded whole.
            let firstConfirmable = frames.indices.first { k in
                guard starts[k] >= UInt64(cut.upperBound) else { return false }
                if case .data = frames[k] { return true }
                return false
            }
            if let k = firstConfirmable, case .data(let d) = frames[k] {
                #expect(events.contains { $0.0 == "data \(d.id.rawValue) \(d.offset) \(d.bytes.count)" }, "cut \(cut): did not resume by frame \(k)")
                if st.framingLost > 0 { resumedAfterLengthCut += 1 }
            }
        }
        #expect(resumedAfterLengthCut > 50, "the cuts exercised lost framing: \(resumedAfterLengthCut)")
    }

    @Test func hostileBytesFailOnceAndStayFailed() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0 ..< 300 {
            let adapter = IntNWFrameDecoderAdapter()
            var bytes = (0 ..< 300).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            bytes[0] = 0; bytes[1] = 0  // plausible lengths so bodies get parsed
            bytes[4] = UInt8.random(in: 1 ... 12, using: &rng)
            var results: [String?] = []
            bytes.withUnsafeBytes { raw in
                for k in stride(from: 0, to: 300, by: 7) {
                    results.append(adapter.consume(UnsafeRawBufferPointer(rebasing: raw[k ..< min(k + 7, 300)]), { _, _, _ in }))
                }
            }
            // Once an error is reported, every later call reports the same one.
            if let first = results.firstIndex(where: { $0 != nil }) {
                #expect(results[first...].allSatisfy { $0 == results[first] })
            }
        }
        // A length field beyond the protocol limit is always an error.
        let adapter = IntNWFrameDecoderAdapter()
        let huge: [UInt8] = [0x7F, 0xFF, 0xFF, 0xFF, 3]
        huge.withUnsafeBytes { raw in
            #expect(adapter.consume(raw) { _, _, _ in }?.contains("out of range") == true)
        }
    }
}
