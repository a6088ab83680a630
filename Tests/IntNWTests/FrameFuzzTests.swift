import Testing
@testable import IntNW

/// Randomized mutation of valid frame streams: the decoder must return frames or throw
/// `ProtocolError`, never crash, hang, or buffer more than what it was fed.
@Suite("Frame decoder fuzz")
struct FrameFuzzTests {
    @Test("1,000,000 mutated inputs yield only frames or typed errors")
    func mutationFuzz() throws {
        let seeds = sampleFrames().map { $0.encoded() }.filter { $0.count <= 64 }
        var rng = SplitMix64(seed: 0x1A7_0000)
        var decoder = FrameDecoder(maxFrameLength: 4096)
        var input = [UInt8](repeating: 0, count: 256)
        var frames = 0, errors = 0, incomplete = 0, overBuffered = 0
        let iterations = 1_000_000
        for _ in 0..<iterations {
            // Build an input: one or two seed frames, then 1-4 mutations.
            var n = 0
            let a = seeds[Int(rng.next() % UInt64(seeds.count))]
            for b in a { input[n] = b; n += 1 }
            if rng.next() & 3 == 0 {
                let b = seeds[Int(rng.next() % UInt64(seeds.count))]
                for x in b { input[n] = x; n += 1 }
            }
            let mutations = 1 + Int(rng.next() & 3)
            for _ in 0..<mutations {
                let r = rng.next()
                let pos = n == 0 ? 0 : Int((r >> 8) % UInt64(n))
                switch r & 7 {
                case 0, 1: if n > 0 { input[pos] ^= UInt8(truncatingIfNeeded: r >> 40) | 1 }  // flip bits
                case 2: if n > 0 { input[pos] = UInt8(truncatingIfNeeded: r >> 40) }          // random byte
                case 3: n = pos                                                               // truncate
                case 4: if n < 200 { input[n] = UInt8(truncatingIfNeeded: r >> 40); n += 1 }   // append
                case 5: if n >= 4 { input[0] = UInt8(truncatingIfNeeded: r >> 40) }          // length high byte
                case 6: if n >= 4 { input[3] = UInt8(truncatingIfNeeded: r >> 40) }          // length low byte
                default: if n > 4 { input[4] = UInt8(truncatingIfNeeded: r >> 40) }          // type byte
                }
            }
            decoder.reset()
            // Feed in two pieces split anywhere.
            let split = n == 0 ? 0 : Int(rng.next() % UInt64(n + 1))
            do {
                try input.withUnsafeBytes { all in
                    decoder.feed(UnsafeRawBufferPointer(rebasing: all[0..<split]))
                    while try decoder.next() != nil { frames += 1 }
                    decoder.feed(UnsafeRawBufferPointer(rebasing: all[split..<n]))
                    while try decoder.next() != nil { frames += 1 }
                }
                if decoder.bufferedByteCount > 0 { incomplete += 1 }
                if decoder.bufferedByteCount > n { overBuffered += 1 }
            } catch is ProtocolError {
                errors += 1
            }
        }
        #expect(overBuffered == 0, "decoder held more bytes than it was fed")
        // The mutations exercise all three outcomes.
        #expect(frames > 10_000 && errors > 10_000 && incomplete > 10_000,
                "frames \(frames) errors \(errors) incomplete \(incomplete)")
    }

    /// What the framing alone says about an input: walking the 4-byte length fields, the index of the
    /// first frame whose length is out of range (with that length), the number of whole frames before
    /// it (or before the end), and the bytes of a trailing partial frame.
    static func framing(_ b: [UInt8], _ n: Int, max: Int) -> (badLength: (index: Int, length: UInt32)?, whole: Int, residual: Int) {
        var pos = 0, whole = 0
        while n - pos >= 4 {
            let l = UInt32(b[pos]) << 24 | UInt32(b[pos + 1]) << 16 | UInt32(b[pos + 2]) << 8 | UInt32(b[pos + 3])
            if l == 0 || Int(l) > max { return ((whole, l), whole, 0) }
            if n - pos - 4 < Int(l) { break }
            pos += 4 + Int(l)
            whole += 1
        }
        return (nil, whole, n - pos)
    }

    /// Catches: a crash or hang on garbage (the test would not finish), an untyped error, a bad length
    /// field that is not rejected with `.frameLength` of exactly that value, a rejection or frame count
    /// that the framing does not explain, and a partial frame that is not kept whole for the next feed.
    @Test("purely random bytes: no crash, every rejected input a typed error the framing explains")
    func randomBytes() throws {
        var rng = SplitMix64(seed: 99)
        var decoder = FrameDecoder(maxFrameLength: 4096)
        var chunk = [UInt8](repeating: 0, count: 64)
        var frames = 0, lengthErrors = 0, bodyErrors = 0, incomplete = 0, untyped = 0
        var unexplained: [String] = []
        for iteration in 0..<100_000 {
            decoder.reset()
            let n = Int(rng.next() % 64)
            for i in 0..<n { chunk[i] = UInt8(truncatingIfNeeded: rng.next()) }
            // Bias towards plausible headers so bodies get parsed.
            if n >= 5, rng.next() & 1 == 0 {
                chunk[0] = 0; chunk[1] = 0; chunk[2] = 0
                chunk[3] = UInt8(n - 4)
                chunk[4] = UInt8(rng.next() % 14)
            }
            let expected = Self.framing(chunk, n, max: 4096)
            var got = 0
            do {
                try chunk.withUnsafeBytes { p in
                    decoder.feed(UnsafeRawBufferPointer(rebasing: p[0..<n]))
                    while try decoder.next() != nil { got += 1 }
                }
                frames += got
                // No error: every whole frame decoded and the partial rest kept, and no bad length missed.
                if expected.badLength != nil || got != expected.whole || decoder.bufferedByteCount != expected.residual {
                    unexplained.append("#\(iteration): accepted \(got) frames, \(decoder.bufferedByteCount) B buffered; framing says \(expected)")
                }
                if decoder.bufferedByteCount > 0 { incomplete += 1 }
            } catch let e as ProtocolError {
                if case .frameLength(let l) = e.kind {
                    lengthErrors += 1
                    if expected.badLength?.index != got || expected.badLength?.length != l {
                        unexplained.append("#\(iteration): frameLength(\(l)) after \(got) frames; framing says \(expected)")
                    }
                } else {
                    bodyErrors += 1
                    // A body can only be rejected once it is whole.
                    if got >= expected.whole { unexplained.append("#\(iteration): \(e) after \(got) frames; framing says \(expected)") }
                }
            } catch {
                untyped += 1
            }
        }
        #expect(untyped == 0, "errors that are not ProtocolError")
        #expect(unexplained.isEmpty, "\(unexplained.count) outcomes the framing does not explain, e.g. \(unexplained.prefix(3))")
        // All outcomes occur, so the checks above were exercised.
        #expect(frames > 1_000 && lengthErrors > 1_000 && bodyErrors > 1_000 && incomplete > 1_000,
                "frames \(frames) length errors \(lengthErrors) body errors \(bodyErrors) incomplete \(incomplete)")
    }
}

@Suite("IROB receiver under hostile frames")
struct ReceiverFuzzTests {
    @Test("random well-formed but adversarial frames: typed errors only, memory within the hard limit")
    func adversarialFrames() {
        var rng = SplitMix64(seed: 0xBAD)
        let limits = ReceiveLimits(bufferBytes: 64 << 10, hardLimitBytes: 256 << 10, perIROBOverheadBytes: 128, idWindow: 4096)
        var errors = 0, reactions = 0, released = 0
        let payload = [UInt8](repeating: 9, count: 4096)
        for round in 0..<200 {
            var r = IROBReceiver(limits: limits)
            var begun: [IROBID] = []
            var known: [IROBID: BeginIROB] = [:]
            for step in 0..<1000 {
                let now = UInt64(round * 1000 + step)
                // Mostly ids near the floor or already begun, so frames reach deep into the state machine.
                let id = !begun.isEmpty && rng.next() % 4 != 0 ? begun[Int(rng.next() % UInt64(begun.count))]
                    : IROBID(r.releaseFloor + rng.next() % (rng.next() & 15 == 0 ? 5000 : 8))
                if begun.count < 64 { begun.append(id) } else { begun[Int(rng.next() % 64)] = id }
                do {
                    switch rng.next() % 4 {
                    case 0:
                        let deps: DependencySpec = rng.next() & 1 == 0 ? .allEarlier
                            : .explicit((0..<(rng.next() % 4)).map { _ in IROBID(1 + rng.next() % max(1, id.rawValue - 1)) }.filter { $0 < id })
                        let len = rng.next() & 31 == 0 ? UInt32.max - UInt32(rng.next() % 10)
                            : rng.next() & 7 == 0 ? UInt32(rng.next() % 6_000) : UInt32(rng.next() % 48)
                        var b = BeginIROB(id: id, labels: Labels(rawValue: UInt32(truncatingIfNeeded: rng.next())),
                                          length: len, dependencies: deps)
                        if let k = known[id], rng.next() % 4 != 0 { b = k } else if known[id] == nil { known[id] = b }
                        if try r.begin(b, nowNs: now) != .none { reactions += 1 }
                    case 1, 2:
                        let big = rng.next() & 7 == 0
                        var off = UInt32(rng.next() % (big ? 6_000 : 48))
                        var n = Int(rng.next() % (big ? 3000 : 48))
                        if let k = known[id], k.length < 4096, rng.next() % 4 != 0 {
                            // In range: usually the whole IROB, sometimes a piece.
                            off = rng.next() & 1 == 0 ? 0 : UInt32(rng.next() % UInt64(k.length + 1))
                            n = rng.next() & 1 == 0 ? Int(k.length - off) : Int(rng.next() % UInt64(k.length - off + 1))
                        }
                        if try payload.withUnsafeBytes({ try r.data(id: id, offset: off, bytes: UnsafeRawBufferPointer(rebasing: $0[0..<n]), nowNs: now) }) != .none {
                            reactions += 1
                        }
                    default:
                        _ = try r.end(id: id, length: UInt32(rng.next() % 20_000))
                    }
                } catch is ProtocolError {
                    // The runtime closes that connection; the session's receiver goes on with the others.
                    errors += 1
                } catch {
                    Issue.record("untyped error \(error)")
                }
                if r.bufferedBytes > limits.hardLimitBytes { Issue.record("buffered \(r.bufferedBytes) over the hard limit") }
                // The application consumes now and then.
                if step % 7 == 0 {
                    for x in r.takeReleased() {
                        released += 1
                        r.consumed(length: x.bytes.count)
                    }
                }
            }
        }
        #expect(errors > 0 && released > 1000 && reactions > 100, "errors \(errors) released \(released) reactions \(reactions)")
    }
}
