import Testing
@testable import ToyProtocol

/// Feeds `bytes` to a fresh decoder in chunks of the given sizes (cycled) and collects the events.
private func decodeAll(_ bytes: [UInt8], chunks: [Int]) -> (events: [ToyStreamEvent], decoder: ToyStreamDecoder) {
    var decoder = ToyStreamDecoder()
    var events: [ToyStreamEvent] = []
    var i = 0
    var c = 0
    bytes.withUnsafeBytes { raw in
        while i < raw.count {
            let n = min(chunks[c % chunks.count], raw.count - i)
            c += 1
            decoder.consume(UnsafeRawBufferPointer(rebasing: raw[i ..< i + n])) { events.append($0) }
            i += n
        }
    }
    return (events, decoder)
}

private func messages(_ events: [ToyStreamEvent]) -> [(ToyHeader, UInt64, UInt64, Bool)] {
    events.compactMap {
        if case .message(let h, let s, let e, let d) = $0 { return (h, s, e, d) }
        return nil
    }
}

@Suite struct ToyHeaderTests {
    @Test func roundTripsEveryKind() throws {
        for kind in ToyMessageKind.allCases {
            let h = ToyHeader(kind: kind, appID: 0xDEAD_BEEF, sequence: 0x0102_0304_0506_0708, payloadLength: 131_072)
            #expect(try ToyHeader.decode(h.encoded) == h)
        }
    }

    @Test func layoutMatchesTheDocumentedTable() {
        let h = ToyHeader(kind: .fgReply, appID: 7, sequence: 9, payloadLength: 0x0102_0304)
        #expect(h.encoded == [0x54, 0x4F, 0x59, 0x31, 1, 2, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4])
    }

    @Test func rejectsBadHeaders() {
        var bytes = ToyHeader(kind: .fgRequest, appID: 1, sequence: 1, payloadLength: 4).encoded
        #expect(throws: ToyDecodeError.truncated(have: 10)) { try ToyHeader.decode(Array(bytes[0 ..< 10])) }
        bytes[4] = 9
        #expect(throws: ToyDecodeError.unsupportedVersion(9)) { try ToyHeader.decode(bytes) }
        bytes[4] = 1
        bytes[5] = 77
        #expect(throws: ToyDecodeError.unknownKind(77)) { try ToyHeader.decode(bytes) }
        bytes[5] = 1
        bytes[20] = 0xFF
        #expect(throws: ToyDecodeError.payloadTooLong(0xFF00_0004)) { try ToyHeader.decode(bytes) }
        bytes[0] = 0
        #expect(throws: ToyDecodeError.badMagic(0x004F_5931)) { try ToyHeader.decode(bytes) }
    }
}

@Suite struct ToyStreamDecoderTests {
    static let sample: [ToyHeader] = [
        ToyHeader(kind: .fgRequest, appID: 1, sequence: 0, payloadLength: 104),
        ToyHeader(kind: .fgReply, appID: 1, sequence: 0, payloadLength: 0),
        ToyHeader(kind: .bgChunk, appID: 2, sequence: 5, payloadLength: 3000),
        ToyHeader(kind: .bgAck, appID: 2, sequence: 5, payloadLength: 8),
    ]

    static var stream: [UInt8] { sample.flatMap { $0.encodedMessage() } }

    @Test(arguments: [[1], [7], [23, 1], [24], [25], [100, 3], [4096]])
    func decodesAnyChunking(chunks: [Int]) {
        let (events, decoder) = decodeAll(Self.stream, chunks: chunks)
        let msgs = messages(events)
        #expect(msgs.map(\.0) == Self.sample)
        var expectedStart: UInt64 = 0
        for (h, s, e, damaged) in msgs {
            #expect(s == expectedStart)
            #expect(e == s + UInt64(h.messageLength))
            #expect(!damaged)
            expectedStart = e
        }
        #expect(decoder.offset == UInt64(Self.stream.count))
        #expect(decoder.desyncCount == 0)
        #expect(decoder.isAtMessageBoundary)
        // Every message's header event comes before its message event, with the same start.
        let headers = events.compactMap { if case .header(let h, let s) = $0 { return (h, s) } else { return nil } }
        #expect(headers.map(\.0) == Self.sample)
    }

    @Test(arguments: [[1], [5], [4096]])
    func resynchronizesAfterGarbage(chunks: [Int]) {
        let garbage: [UInt8] = [0x54, 0x4F, 0x00, 0x54, 0x4F, 0x59, 0x00, 0xFF, 0x54]
        let bytes = Self.sample[0].encodedMessage() + garbage + Self.sample[2].encodedMessage()
        let (events, decoder) = decodeAll(bytes, chunks: chunks)
        let msgs = messages(events)
        #expect(msgs.map(\.0) == [Self.sample[0], Self.sample[2]])
        #expect(msgs.last?.1 == UInt64(Self.sample[0].messageLength + garbage.count))
        #expect(decoder.desyncCount >= 1)
        #expect(decoder.skippedBytes == UInt64(garbage.count))
    }

    @Test func gapInsidePayloadKeepsFraming() {
        let first = Self.sample[2].encodedMessage()
        var decoder = ToyStreamDecoder()
        var events: [ToyStreamEvent] = []
        first.withUnsafeBytes { raw in
            decoder.consume(UnsafeRawBufferPointer(rebasing: raw[0 ..< 100])) { events.append($0) }
            decoder.skipGap(1000) { events.append($0) }
            decoder.consume(UnsafeRawBufferPointer(rebasing: raw[1100...])) { events.append($0) }
        }
        Self.sample[3].encodedMessage().withUnsafeBytes { raw in decoder.consume(raw) { events.append($0) } }
        let msgs = messages(events)
        #expect(msgs.count == 2)
        #expect(msgs[0].0 == Self.sample[2] && msgs[0].3 == true)
        #expect(msgs[1].0 == Self.sample[3] && msgs[1].3 == false)
    }

    @Test func gapOverAHeaderResyncs() {
        let a = Self.sample[0].encodedMessage()
        let b = Self.sample[1].encodedMessage()
        let c = Self.sample[3].encodedMessage()
        var decoder = ToyStreamDecoder()
        var events: [ToyStreamEvent] = []
        a.withUnsafeBytes { raw in decoder.consume(raw) { events.append($0) } }
        decoder.skipGap(10) { events.append($0) }
        b.withUnsafeBytes { raw in decoder.consume(UnsafeRawBufferPointer(rebasing: raw[10...])) { events.append($0) } }
        c.withUnsafeBytes { raw in decoder.consume(raw) { events.append($0) } }
        #expect(messages(events).map(\.0) == [Self.sample[0], Self.sample[3]])
        #expect(messages(events).last?.1 == UInt64(a.count + b.count))
    }

    @Test func garbageNeverTraps() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0 ..< 200 {
            var bytes = (0 ..< 700).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            // Plant valid-looking magics so the header path is exercised, not only the scan.
            for k in stride(from: 0, to: 680, by: 97) {
                bytes.replaceSubrange(k ..< k + 4, with: [0x54, 0x4F, 0x59, 0x31])
                bytes[k + 4] = 1
            }
            let (_, decoder) = decodeAll(bytes, chunks: [Int.random(in: 1 ... 64)])
            #expect(decoder.offset == 700)
        }
    }
}
