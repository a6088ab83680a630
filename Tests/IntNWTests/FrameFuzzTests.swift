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

    @Test("purely random bytes yield only frames or typed errors")
    func randomBytes() throws {
        var rng = SplitMix64(seed: 99)
        var decoder = FrameDecoder(maxFrameLength: 4096)
        var chunk = [UInt8](repeating: 0, count: 64)
        for _ in 0..<100_000 {
            decoder.reset()
            let n = Int(rng.next() % 64)
            for i in 0..<n { chunk[i] = UInt8(truncatingIfNeeded: rng.next()) }
            // Bias towards plausible headers so bodies get parsed.
            if n >= 5, rng.next() & 1 == 0 {
                chunk[0] = 0; chunk[1] = 0; chunk[2] = 0
                chunk[3] = UInt8(n - 4)
                chunk[4] = UInt8(rng.next() % 14)
            }
            do {
                try chunk.withUnsafeBytes { p in
                    decoder.feed(UnsafeRawBufferPointer(rebasing: p[0..<n]))
                    while try decoder.next() != nil {}
                }
            } catch is ProtocolError {}
        }
    }
}
