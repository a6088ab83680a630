import Testing
@testable import IntNW

@Suite("Wire protocol")
struct WireProtocolTests {
    @Test("every frame type round-trips")
    func roundTrip() throws {
        let frames = sampleFrames()
        // Every frame type code appears at least once.
        let codes = Set(frames.map(\.typeCode))
        for t in FrameType.allCases { #expect(codes.contains(t.rawValue), "missing \(t)") }
        for f in frames {
            let bytes = f.encoded()
            #expect(bytes.count == f.encodedLength)
            var d = FrameDecoder()
            d.feed(bytes)
            let back = try d.next()
            #expect(back == f)
            #expect(try d.next() == nil)
            #expect(d.bufferedByteCount == 0)
        }
    }

    @Test("a stream of frames decodes identically whatever the chunking")
    func arbitraryChunking() throws {
        let frames = sampleFrames()
        let stream = frames.flatMap { $0.encoded() }
        var rng = SplitMix64(seed: 1)
        for split in 1...stream.count {
            // Fixed-size chunks of every size, and random chunk sizes.
            for randomized in [false, true] {
                var d = FrameDecoder()
                var out: [Frame] = []
                var i = 0
                while i < stream.count {
                    let n = randomized ? Int.random(in: 1...split, using: &rng) : split
                    let end = min(stream.count, i + n)
                    d.feed(Array(stream[i..<end]))
                    while let f = try d.next() { out.append(f) }
                    i = end
                }
                #expect(out == frames)
            }
        }
    }

    @Test("writeDataHeader + payload equals a DATA frame")
    func dataHeaderFastPath() throws {
        let payload: [UInt8] = Array(0..<200).map { UInt8($0) }
        var buf = [UInt8](repeating: 0, count: 300)
        let n = buf.withUnsafeMutableBytes { b -> Int in
            let h = FrameEncoder.writeDataHeader(id: IROBID(9), offset: 77, payloadLength: payload.count, into: b, at: 3)
            payload.withUnsafeBytes { (b.baseAddress! + 3 + h).copyMemory(from: $0.baseAddress!, byteCount: payload.count) }
            return h + payload.count
        }
        let expected = Frame.data(DataChunk(id: IROBID(9), offset: 77, bytes: payload)).encoded()
        #expect(Array(buf[3..<(3 + n)]) == expected)
    }

    @Test("truncated frames wait for more bytes and never yield a frame")
    func truncated() throws {
        for f in sampleFrames() {
            let bytes = f.encoded()
            for cut in 0..<bytes.count {
                var d = FrameDecoder()
                d.feed(Array(bytes[0..<cut]))
                #expect(try d.next() == nil)
                // The rest completes it.
                d.feed(Array(bytes[cut...]))
                #expect(try d.next() == f)
            }
        }
    }

    @Test("absurd and zero length fields are typed errors, before buffering the body")
    func absurdLengths() throws {
        for length: UInt32 in [0, UInt32(Wire.maxFrameLength) + 1, 0x7FFF_FFFF, UInt32.max] {
            var d = FrameDecoder()
            d.feed([UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
            #expect(throws: ProtocolError(.frameLength(length))) { try d.next() }
            // The decoder stays failed.
            #expect(throws: ProtocolError.self) { try d.next() }
        }
        // The largest legal frame is accepted.
        let big = Frame.data(DataChunk(id: IROBID(1), offset: 0, bytes: [UInt8](repeating: 7, count: Wire.maxDataPayload)))
        #expect(big.encodedLength == 4 + Wire.maxFrameLength)
        var d = FrameDecoder()
        d.feed(big.encoded())
        #expect(try d.next() == big)
    }

    @Test("malformed bodies are typed errors")
    func malformed() throws {
        func decode(_ bytes: [UInt8]) throws -> Frame? {
            var d = FrameDecoder()
            d.feed(bytes)
            return try d.next()
        }
        func frame(_ type: UInt8, _ body: [UInt8]) -> [UInt8] {
            let n = UInt32(body.count + 1)
            return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type] + body
        }
        let u64 = { (v: UInt64) -> [UInt8] in (0..<8).reversed().map { UInt8(v >> (8 * UInt64($0)) & 0xFF) } }
        // Unknown core type.
        #expect(throws: ProtocolError(.unknownFrameType(0x33))) { try decode(frame(0x33, [])) }
        // Extension types are skipped by the runtime, decoded as .extension here.
        #expect(try decode(frame(0xF0, [1])) == .extension(type: 0xF0, body: [1]))
        // IROB id 0.
        #expect(throws: ProtocolError.self) { try decode(frame(FrameType.endIROB.rawValue, u64(0) + [0, 0, 0, 1])) }
        // Trailing byte after a fixed-size body.
        #expect(throws: ProtocolError(.malformedBody(frameType: FrameType.ping.rawValue))) {
            try decode(frame(FrameType.ping.rawValue, u64(1) + [0]))
        }
        // Short body.
        #expect(throws: ProtocolError(.malformedBody(frameType: FrameType.ping.rawValue))) {
            try decode(frame(FrameType.ping.rawValue, [1, 2, 3]))
        }
        // Dependency count over the limit (the count alone, no body to back it).
        let begin = u64(5) + [0, 0, 0, 0] + [0, 0, 0, 0] + [0] + [0xFF, 0xFF]
        #expect(throws: ProtocolError(.countLimit(frameType: FrameType.beginIROB.rawValue, count: 0xFFFF))) {
            try decode(frame(FrameType.beginIROB.rawValue, begin))
        }
        // Dependency count that the body does not back.
        let begin2 = u64(5) + [0, 0, 0, 0] + [0, 0, 0, 0] + [0] + [0, 3] + u64(1)
        #expect(throws: ProtocolError.self) { try decode(frame(FrameType.beginIROB.rawValue, begin2)) }
        // Dependency on itself (would never be released).
        let begin3 = u64(5) + [0, 0, 0, 0] + [0, 0, 0, 0] + [0] + [0, 1] + u64(5)
        #expect(throws: ProtocolError(.invalidField(frameType: FrameType.beginIROB.rawValue, field: "dependency"))) {
            try decode(frame(FrameType.beginIROB.rawValue, begin3))
        }
        // ACK count over the limit.
        #expect(throws: ProtocolError.self) { try decode(frame(FrameType.ack.rawValue, u64(0) + [0x04, 0x01])) }
        // HELLO with a wrong magic and with an over-long name.
        var hello = Frame.hello(Hello(role: .client, session: SessionID(high: 1, low: 2), networkID: 1,
                                      networkKind: .wifi, interfaceName: "x")).encoded()
        hello[5] ^= 0xFF
        #expect(throws: ProtocolError.self) { try decode(hello) }
        var hello2 = Frame.hello(Hello(role: .client, session: SessionID(high: 1, low: 2), networkID: 1,
                                       networkKind: .wifi, interfaceName: "x")).encoded()
        hello2[hello2.count - 2] = 200
        #expect(throws: ProtocolError.self) { try decode(hello2) }
        // DATA whose offset + length overflows 32 bits.
        var data = frame(FrameType.data.rawValue, u64(1) + [0xFF, 0xFF, 0xFF, 0xFF] + [1])
        #expect(throws: ProtocolError(.invalidField(frameType: FrameType.data.rawValue, field: "offset"))) { try decode(data) }
        data = frame(FrameType.data.rawValue, u64(1) + [0xFF, 0xFF, 0xFF, 0xFE] + [1])
        #expect(try decode(data) == .data(DataChunk(id: IROBID(1), offset: 0xFFFF_FFFE, bytes: [1])))
    }

    @Test("interface names are cut to the limit at a character boundary")
    func longNames() throws {
        let name = String(repeating: "é", count: 40)  // 2 bytes each
        let f = Frame.newInterface(InterfaceInfo(networkID: 1, kind: .wifi, ipv4Address: 1, name: name))
        var d = FrameDecoder()
        d.feed(f.encoded())
        guard case .newInterface(let info) = try d.next() else {
            Issue.record("wrong frame")
            return
        }
        #expect(info.name == String(repeating: "é", count: 16))
    }

    @Test("labels encode restriction and class")
    func labels() {
        let l: Labels = .background | .large | .cellularOnly
        #expect(l.isBackground && l.isLarge && !l.prefersLowLatency && l.restriction == .cellularOnly)
        let m = l | .wifiPreferred
        #expect(m.restriction == .wifiPreferred && m.isBackground)
        #expect(Labels.none.isForeground && Labels.none.prefersLowLatency && Labels.none.restriction == .any)
        #expect((Labels.foreground | .background).isForeground)
        #expect((Labels.background | .small).prefersLowLatency)
    }
}
