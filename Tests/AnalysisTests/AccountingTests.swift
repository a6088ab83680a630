import Foundation
import Testing
@testable import Analysis
@testable import SyntheticTraffic
import DeterministicRandom
import Capture
import IntNW
import ToyProtocol

/// One accounting rule (docs/analysis.md, "Accounting"): an app's bytes are the bytes that crossed
/// the wire for it, booked when first captured; apps never exceed the interface they used.
@Suite final class AccountingTests {
    let dir = tempDir("accounting")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// FG and BG apps sharing one IntNW multisocket on a 64 kB/s uplink; the capture ends in the
    /// middle of the third 256 KiB BG chunk. The old rule booked each message's declared length at
    /// its completion (the unfinished chunk included): 786432 BG bytes, 1 s bins of 260 kB/s.
    @Test func sharedMultisocketBooksOnlySentBytesAtTheirTime() throws {
        let path = dir + "/shared-intnw.pcap"
        let cap = try SyntheticCapture(path: path)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40020), server: (serverIP, 5100))
        var rng = DeterministicRNG(seed: 7)
        let framing = WireFraming(intnw: true, rng: &rng)
        f.handshake(at: t0)
        _ = f.send(fromClient: false, bytes: framing.hello(fromClient: false), at: t0 + 2 * ms)

        // The uplink byte stream: HELLO, BG chunk 0, FG request 0, BG chunk 1, FG request 1, then
        // BG chunk 2 cut after its BEGIN_IROB and two of its four 64 KiB DATA frames.
        let chunk = 262_144
        var up = framing.hello(fromClient: true)
        var bgPayloadSent = 0, fgPayloadSent = 0
        for k in 0 ..< 2 {
            up += framing.wrap(toy(.bgChunk, app: 2, seq: UInt64(k), payload: chunk - 24), fromClient: true, background: true)
            bgPayloadSent += chunk
            up += framing.wrap(toy(.fgRequest, app: 1, seq: UInt64(k), payload: 104), fromClient: true, background: false)
            fgPayloadSent += 128
        }
        let last = framing.wrap(toy(.bgChunk, app: 2, seq: 2, payload: chunk - 24), fromClient: true, background: true)
        // BEGIN_IROB, then DATA frames of 4 + 1 + 8 + 4 + 65536 bytes.
        let beginLength = last.count - 4 * (17 + 65_536) - 17 // END_IROB is 4 + 1 + 8 + 4
        up += Array(last[0 ..< beginLength + 2 * (17 + 65_536)])
        bgPayloadSent += 2 * 65_536

        // Paced at 64,000 B/s: one 1448-byte segment every 22.625 ms.
        let gap: UInt64 = 22_625_000
        let start = t0 + 5 * ms
        let end = f.send(fromClient: true, bytes: up, at: start, gapNanoseconds: gap)
        f.ack(fromClient: false, at: end + 50 * ms)
        try cap.close()

        let meta = RunMetadata(apps: [.init(name: "fg", role: .fg, variant: .intnw, appId: 1),
                                      .init(name: "bg", role: .bg, variant: .intnw, appId: 2)])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "cell0")], metadata: meta))
        let fg = try #require(a.result.apps.first { $0.name == "fg" })
        let bg = try #require(a.result.apps.first { $0.name == "bg" })
        let iface = try #require(a.result.interfaces.first)

        #expect(bg.throughput.uplinkBytes == UInt64(bgPayloadSent), "BG: the DATA payload bytes that were sent, not 3 × 262144")
        #expect(fg.throughput.uplinkBytes == UInt64(fgPayloadSent))
        #expect(bg.throughput.uplinkBytes + fg.throughput.uplinkBytes <= iface.uplinkBytes)
        #expect(iface.uplinkBytes == UInt64(up.count))
        #expect(a.result.accountingViolations == 0)

        // Same window for app and interface rates, and no rate above the link's 64 kB/s.
        #expect(bg.throughput.windowSeconds == iface.windowSeconds)
        #expect(bg.throughput.uplinkBytesPerSecond <= iface.meanUplinkBytesPerSecond)
        #expect(bg.throughput.uplinkBytesPerSecond <= 64_000)

        // Every bin: the apps' bytes fit in the interface's; 1 s bins never above capacity
        // (+ one segment of slop at a bin edge).
        let bins = a.series.filter { $0.direction == "uplink" }.map { $0.rebinned(by: 10) }
        let bgBins = try #require(bins.first { $0.kind == .app && $0.name == "bg" }).bytesPerBin
        let fgBins = try #require(bins.first { $0.kind == .app && $0.name == "fg" }).bytesPerBin
        let ifBins = try #require(bins.first { $0.kind == .interface }).bytesPerBin
        for i in ifBins.indices {
            #expect(bgBins[i] + fgBins[i] <= ifBins[i], "bin \(i)")
            #expect(bgBins[i] <= 64_000 + 1448, "bin \(i): \(bgBins[i]) B/s")
        }
        #expect(bgBins.reduce(0, +) == UInt64(bgPayloadSent))
    }

    /// Shared plain-TCP toy connection: bytes go to the app in each message's header.
    @Test func sharedToyConnectionSplitsBytesByHeader() throws {
        let path = dir + "/shared-toy.pcap"
        let cap = try SyntheticCapture(path: path)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40021), server: (serverIP, 5101))
        f.handshake(at: t0)
        var t = t0 + 10 * ms
        for seq in 0 ..< 3 {
            t = f.send(fromClient: true, bytes: toy(.bgChunk, app: 2, seq: UInt64(seq), payload: 10_000 - 24), at: t, gapNanoseconds: ms)
            t = f.send(fromClient: true, bytes: toy(.fgRequest, app: 1, seq: UInt64(seq), payload: 104), at: t + ms) + 100 * ms
        }
        // An unfinished chunk: 3000 of its 10000 bytes were sent.
        let partial = Array(toy(.bgChunk, app: 2, seq: 3, payload: 10_000 - 24)[0 ..< 3000])
        _ = f.send(fromClient: true, bytes: partial, at: t)
        try cap.close()
        let meta = RunMetadata(apps: [.init(name: "fg", role: .fg, variant: .plain, appId: 1),
                                      .init(name: "bg", role: .bg, variant: .plain, appId: 2)])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "wifi0")], metadata: meta))
        let fg = try #require(a.result.apps.first { $0.name == "fg" })
        let bg = try #require(a.result.apps.first { $0.name == "bg" })
        #expect(bg.throughput.uplinkBytes == 3 * 10_000 + 3000)
        #expect(fg.throughput.uplinkBytes == 3 * 128)
        #expect(a.result.accountingViolations == 0)
    }

    /// The invariant check itself fails when apps exceed the interface.
    @Test func invariantCheckFlagsAppsAboveTheInterface() {
        let ok = Accounting.check(interface: "cell0", appsUplink: [10, 20], appsDownlink: [0],
                                  uplink: [10, 25], downlink: [0], binWidth: 1_000_000_000)
        #expect(ok.isEmpty)
        let bad = Accounting.check(interface: "cell0", appsUplink: [10, 30], appsDownlink: [5],
                                   uplink: [10, 25], downlink: [], binWidth: 1_000_000_000)
        #expect(bad.count == 2)
        #expect(bad.first?.contains("uplink, bin 1") == true)
    }
}

/// Bytes cut off by the snap length crossed the wire: present at their packet's time.
@Suite final class SnaplenTests {
    let dir = tempDir("snaplen")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// 96-byte snap length (56 payload bytes per packet); nobody ACKs until the end. The old
    /// reassembler made every cut tail a hole that closed only at the ACK: latencies of seconds,
    /// BG bytes lost.
    @Test func snappedBytesArePresentAtTheirPacketsTime() throws {
        let path = dir + "/snapped.pcap"
        let cap = try SyntheticCapture(path: path, snapLength: 96)
        let fg = SyntheticFlow(capture: cap, client: (clientIP, 40030), server: (serverIP, 7030))
        let bg = SyntheticFlow(capture: cap, client: (clientIP, 40031), server: (serverIP, 8030))
        fg.handshake(at: t0)
        bg.handshake(at: t0)
        var t = t0 + 10 * ms
        for seq in 0 ..< 5 {
            _ = bg.send(fromClient: true, bytes: toy(.bgChunk, app: 2, seq: UInt64(seq), payload: 20_000 - 24), at: t, gapNanoseconds: ms)
            _ = fg.send(fromClient: true, bytes: toy(.fgRequest, app: 1, seq: UInt64(seq), payload: 104), at: t + 5 * ms)
            _ = fg.send(fromClient: false, bytes: toy(.fgReply, app: 1, seq: UInt64(seq), payload: 100), at: t + 105 * ms)
            t += 400 * ms
        }
        fg.ack(fromClient: true, at: t + 1000 * ms)
        fg.ack(fromClient: false, at: t + 1000 * ms)
        bg.ack(fromClient: false, at: t + 1000 * ms)
        try cap.close()
        let meta = RunMetadata(apps: [.init(name: "fg", role: .fg, variant: .plain, appId: 1, serverPorts: [7030]),
                                      .init(name: "bg", role: .bg, variant: .plain, appId: 2, serverPorts: [8030])])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "wifi0")], metadata: meta))
        let f = try #require(a.result.apps.first { $0.name == "fg" })
        let b = try #require(a.result.apps.first { $0.name == "bg" })
        #expect(f.fg?.replies == 5)
        #expect(f.fg?.latencyMs?.maxMs == 100, "reply's last byte at its packet's time, not at the late ACK")
        #expect(f.fg?.latencyMs?.minMs == 100)
        #expect(b.throughput.uplinkBytes == 5 * 20_000, "snapped BG bytes still crossed the wire")
        #expect(a.result.connections.allSatisfy { $0.uplink.gaps == 0 && $0.downlink.gaps == 0 })
        #expect(a.result.accountingViolations == 0)
        let snapWarnings = a.warnings.filter { $0.contains("snap length") }
        #expect(snapWarnings.count == 1, "warned once per capture: \(a.warnings)")
        #expect(snapWarnings.first?.contains("96 bytes") == true)
        #expect(a.result.captures.first?.snapLength == 96)
    }

    /// IntNW: a capture hole swallows the segment holding a message's BEGIN_IROB and DATA header.
    /// Decoding resumes at the next message's BEGIN_IROB (the old decoder stopped at the hole):
    /// the messages on both sides of the hole are decoded and booked, the captured rest of the
    /// holed message is counted as unattributed.
    @Test func intnwDecodingResumesAfterACaptureHole() throws {
        let path = dir + "/holed-intnw.pcap"
        let cap = try SyntheticCapture(path: path)
        let holed = writeHoledIntNWBGStream(to: cap, start: t0).holedMessageBytes
        try cap.close()
        let meta = RunMetadata(apps: [.init(name: "bg", role: .bg, variant: .intnw, appId: 2, serverPorts: [5133])])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "cell0")], metadata: meta))
        let b = try #require(a.result.apps.first { $0.name == "bg" })
        let c = try #require(a.result.connections.first)
        #expect(c.uplink.gapBytes == 1448 && c.uplink.gaps == 1)
        #expect(b.throughput.uplinkBytes == 10_000, "chunks 0 and 2 whole; chunk 1's captured bytes have no IROB")
        #expect(b.bg?.chunks == 2 && b.bg?.completeChunks == 2, "\(String(describing: b.bg))")
        let d = try #require(c.intnwDecodingUp)
        #expect(d.framingLost == 1 && d.resynchronized == 1, "\(d)")
        #expect(d.unattributedBytes == UInt64(holed - 1448), "the holed message's captured bytes: \(d)")
        #expect(c.framingErrors == 0)
        #expect(a.result.accountingViolations == 0)
    }

    /// IntNW: the snap length cuts each IROB's toy header after 9 bytes. The app is unknown, so
    /// the bytes are unattributed and no message is made up; the old decoder read the cut bytes as
    /// zeros and reported "payload is not a toy message" framing errors.
    @Test func cutToyHeaderIsUnattributedNotZeros() throws {
        let path = dir + "/cut-toy-header.pcap"
        // 40 bytes of IP and TCP headers, 50 payload bytes: HELLO; BEGIN_IROB 24 + DATA header 17 + 9.
        let cap = try SyntheticCapture(path: path, snapLength: 40 + 50)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40034), server: (serverIP, 5134))
        var rng = DeterministicRNG(seed: 5)
        let framing = WireFraming(intnw: true, rng: &rng)
        f.handshake(at: t0)
        var t = t0 + 5 * ms
        t = f.send(fromClient: true, bytes: framing.hello(fromClient: true), at: t) + ms
        for k in 0 ..< 3 {
            t = f.send(fromClient: true, bytes: framing.wrap(toy(.bgChunk, app: 2, seq: UInt64(k), payload: 1000 - 24), fromClient: true, background: true),
                       at: t, gapNanoseconds: ms) + ms
        }
        try cap.close()
        let meta = RunMetadata(apps: [.init(name: "bg", role: .bg, variant: .intnw, appId: 2, serverPorts: [5134])])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "cell0")], metadata: meta))
        let c = try #require(a.result.connections.first)
        #expect(c.framingErrors == 0, "\(String(describing: c.firstFramingError))")
        #expect(a.result.apps.first { $0.name == "bg" }?.throughput.uplinkBytes == 0)
        #expect(c.messagesUp == 0)
        // Each message's 1000 DATA bytes, plus its END_IROB (17 bytes, cut whole: framing lost and
        // resumed at the next BEGIN_IROB).
        #expect(c.intnwDecodingUp?.unattributedBytes == 3 * (1000 + 17), "\(String(describing: c.intnwDecodingUp))")
    }

    /// IntNW: a DATA payload cut off by the snap length is stepped over and still booked.
    @Test func snappedIntNWDataPayloadIsSteppedOver() throws {
        let path = dir + "/snapped-intnw.pcap"
        // Segments of at most 1448 bytes, snap length enough for every frame header here: one
        // IROB per segment-aligned message keeps headers at segment starts.
        let cap = try SyntheticCapture(path: path, snapLength: 40 + 200)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40032), server: (serverIP, 5132))
        var rng = DeterministicRNG(seed: 3)
        let framing = WireFraming(intnw: true, rng: &rng)
        f.handshake(at: t0)
        var t = t0 + 5 * ms
        t = f.send(fromClient: true, bytes: framing.hello(fromClient: true), at: t) + ms
        var sent = 0
        for k in 0 ..< 3 {
            // BEGIN_IROB + DATA header + 24-byte toy header fit in the first 200 bytes.
            let m = framing.wrap(toy(.bgChunk, app: 2, seq: UInt64(k), payload: 5000 - 24), fromClient: true, background: true)
            t = f.send(fromClient: true, bytes: m, at: t, gapNanoseconds: ms) + ms
            sent += 5000
        }
        try cap.close()
        let meta = RunMetadata(apps: [.init(name: "bg", role: .bg, variant: .intnw, appId: 2, serverPorts: [5132])])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "cell0")], metadata: meta))
        let b = try #require(a.result.apps.first { $0.name == "bg" })
        // Each message is 4 segments (1448, 1448, 1448, ~716 bytes); the DATA payload cut off in
        // the first three is stepped over and booked. The END_IROB at the tail of the 4th segment
        // was cut off whole: the framing is lost there (the old decoder stopped for good after the
        // first chunk) and resumes at the next message's BEGIN_IROB, captured at a segment start.
        #expect(sent == 15_000)
        #expect(b.throughput.uplinkBytes == 15_000)
        #expect(b.bg?.chunks == 3 && b.bg?.completeChunks == 3, "\(String(describing: b.bg))")
        let c = try #require(a.result.connections.first)
        #expect(c.framingErrors == 0, "\(String(describing: c.firstFramingError))")
        let d = try #require(c.intnwDecodingUp)
        #expect(d.framingLost == 3 && d.resynchronized == 2, "\(d)")
        // Exactly the three 17-byte END_IROB frames could not be attributed.
        #expect(d.unattributedBytes == 3 * 17, "\(d)")
        #expect(c.intnwFramesUp?["END_IROB"] == nil && c.intnwFramesUp?["BEGIN_IROB"] == 3)
        #expect(a.warnings.contains { $0.contains("51 IntNW bytes") && $0.contains("lower bounds") }, "\(a.warnings)")
        #expect(c.uplink.truncatedBytes > 10_000)
        #expect(a.result.accountingViolations == 0)
    }
}
