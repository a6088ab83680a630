import Foundation
import Testing
@testable import Analysis
import Capture
import ToyProtocol
import SyntheticTraffic

@Suite final class AnalyzerTests {
    let dir = tempDir("analyzer")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    @Test(arguments: [LinkType.raw, .ethernet, .linuxSLL, .linuxSLL2])
    func fgLatencyIsExactlyAsConstructed(link: LinkType) throws {
        let path = dir + "/fg-\(link.rawValue).pcap"
        let cap = try SyntheticCapture(path: path, linkType: link)
        let expected = writeFGPlain(cap, clientPort: 40001, serverPort: 7001, app: 1, count: 20,
                                    start: t0 + 10 * ms, interval: 100 * ms, base: 20 * ms, step: ms)
        try cap.close()
        let meta = RunMetadata(apps: [.init(name: "fg", role: .fg, variant: .plain, appId: 1, serverPorts: [7001])])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "wifi0")], metadata: meta))
        #expect(a.latencies.map(\.latencyNanoseconds) == expected)
        #expect(a.latencies.map(\.sequence) == Array(0 ..< 20))
        let app = try #require(a.result.apps.first)
        #expect(app.name == "fg")
        #expect(app.fg?.requests == 20 && app.fg?.replies == 20 && app.fg?.unanswered == 0)
        #expect(app.fg?.latencyMs?.minMs == 20)
        #expect(app.fg?.latencyMs?.maxMs == 39)
        #expect(abs((app.fg?.latencyMs?.meanMs ?? 0) - 29.5) < 1e-9)
        #expect(abs((app.fg?.latencyMs?.p50Ms ?? 0) - 29) <= 0.05)
        #expect(app.messages["fgRequest"] == 20 && app.messages["fgReply"] == 20)
        #expect(app.throughput.uplinkBytes == 20 * 128)
        #expect(app.throughput.downlinkBytes == 20 * 64)
        let conn = try #require(a.result.connections.first)
        #expect(conn.client == "198.18.1.2:40001" && conn.server == "198.19.0.1:7001" && conn.clientFrom == "syn")
        #expect(conn.protocol == .toy)
        #expect(a.warnings.contains { $0.contains("no IntNW traffic") })
    }

    @Test func replyLatencyUsesTheLastByteAndTheFirstTransmission() throws {
        // Request sent at t, lost, re-sent at t+200ms; a 5000-byte reply in 4 segments, the last
        // at +250ms. Latency = from the first transmission to the last reply byte.
        let path = dir + "/retx.pcap"
        let cap = try SyntheticCapture(path: path)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40002), server: (serverIP, 7002))
        f.handshake(at: t0)
        let req = toy(.fgRequest, app: 3, seq: 0, payload: 104)
        f.segment(fromClient: true, offset: 0, bytes: req, at: t0 + 10 * ms)
        f.segment(fromClient: true, offset: 0, bytes: req, at: t0 + 210 * ms)
        let reply = toy(.fgReply, app: 3, seq: 0, payload: 5000 - 24)
        f.send(fromClient: false, bytes: reply, at: t0 + 220 * ms, gapNanoseconds: 10 * ms)
        try cap.close()
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path)]))
        #expect(a.latencies.count == 1)
        #expect(a.latencies.first?.latencyNanoseconds == 240 * ms)
        #expect(a.result.connections.first?.uplink.retransmittedBytes == 128)
        // No metadata: the app is named after its toy app id and its role inferred.
        #expect(a.result.apps.first?.name == "app3" && a.result.apps.first?.role == .fg)
    }

    @Test func bgThroughputBinsAreExact() throws {
        let path = dir + "/bg.pcap"
        let cap = try SyntheticCapture(path: path)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40003), server: (serverIP, 7003))
        f.mss = 1000
        f.handshake(at: t0)
        // Four 10,000-byte chunks (10 segments each, 10 ms apart) starting at 0 s, 0.5 s, 1.0 s, 1.5 s.
        for k in 0 ..< 4 {
            let chunk = toy(.bgChunk, app: 2, seq: UInt64(k), payload: 10_000 - 24)
            f.send(fromClient: true, bytes: chunk, at: t0 + UInt64(k) * 500 * ms + 1 * ms, gapNanoseconds: 10 * ms)
            f.send(fromClient: false, bytes: toy(.bgAck, app: 2, seq: UInt64(k), payload: 0), at: t0 + UInt64(k) * 500 * ms + 150 * ms)
        }
        try cap.close()
        let meta = RunMetadata(apps: [.init(name: "bulk", role: .bg, variant: .plain, clientPorts: [40003])])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "cell0")], metadata: meta))
        let up = try #require(a.series.first { $0.kind == .app && $0.name == "bulk" && $0.direction == "uplink" })
        // 100 ms bins: segments at 1,11,...,91 ms → bin 0 holds all 10 of each chunk.
        #expect(Array(up.bytesPerBin.prefix(16)) == [10_000, 0, 0, 0, 0, 10_000, 0, 0, 0, 0, 10_000, 0, 0, 0, 0, 10_000])
        #expect(up.rebinned(by: 10).bytesPerBin.prefix(2) == [20_000, 20_000])
        let app = try #require(a.result.apps.first)
        #expect(app.bg?.chunks == 4 && app.bg?.completeChunks == 4 && app.bg?.acks == 4)
        #expect(app.bg?.chunkPayloadBytes == 4 * (10_000 - 24))
        #expect(app.throughput.uplinkBytes == 40_000)
        let iface = try #require(a.result.interfaces.first)
        #expect(iface.interface == "cell0" && iface.uplinkBytes == 40_000 && iface.downlinkBytes == 4 * 24)
    }

    @Test func twoFlowsInTwoCapturesShareOneTimeAxis() throws {
        let p1 = dir + "/wifi.pcap", p2 = dir + "/cell.pcap"
        let c1 = try SyntheticCapture(path: p1), c2 = try SyntheticCapture(path: p2)
        writeFGPlain(c1, clientPort: 40010, serverPort: 7010, app: 10, count: 5, start: t0 + 1000 * ms, interval: 100 * ms, base: 5 * ms, step: 0)
        writeFGPlain(c2, clientPort: 40011, serverPort: 7011, app: 11, count: 5, start: t0 + 100 * ms, interval: 100 * ms, base: 50 * ms, step: 0)
        try c1.close(); try c2.close()
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: p1), CaptureInput(path: p2)]))
        #expect(a.result.originNanoseconds == t0 + 95 * ms)
        #expect(Set(a.result.apps.map(\.name)) == ["app10", "app11"])
        #expect(a.result.apps.first { $0.name == "app11" }?.fg?.latencyMs?.p50Ms == 50)
        // The two FG apps never overlap in time: no common window, no fairness index.
        #expect(a.result.fairness.fgLatencyJain == nil)
        #expect(a.result.interfaces.map(\.interface) == ["wifi", "cell"])
    }

    @Test func garbagePacketsNeverCrash() throws {
        let path = dir + "/garbage.pcap"
        let cap = try SyntheticCapture(path: path)
        var rng = SystemRandomNumberGenerator()
        for i in 0 ..< 3000 {
            let n = Int.random(in: 0 ... 200, using: &rng)
            var bytes = (0 ..< n).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
            if n > 44 && i % 2 == 0 {
                // Plausible IPv4/TCP headers with hostile fields.
                bytes[0] = 0x45; bytes[9] = 6
                bytes[2] = UInt8.random(in: 0 ... 1, using: &rng); bytes[3] = UInt8.random(in: 0 ... 255, using: &rng)
                bytes[6] = 0; bytes[7] = 0
                if i % 4 == 0 { bytes.replaceSubrange(40 ..< 44, with: [0x54, 0x4F, 0x59, 0x31]) }
            }
            cap.raw(time: t0 + UInt64(i) * ms, bytes: bytes)
        }
        // And a real flow with random payload in the middle.
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40020), server: (serverIP, 7020))
        f.handshake(at: t0 + 4000 * ms)
        for k in 0 ..< 50 {
            f.send(fromClient: k % 2 == 0, bytes: (0 ..< 300).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }, at: t0 + 4100 * ms + UInt64(k) * ms)
        }
        f.send(fromClient: true, bytes: toy(.fgRequest, app: 9, seq: 1, payload: 0) + [0x54, 0x4F, 0x59, 0x31, 1, 99], at: t0 + 4200 * ms)
        try cap.close()
        let a = try Analyzer.analyze(TrialInput(name: "g", captures: [CaptureInput(path: path)]))
        #expect(a.result.captures[0].packets == 3000 + 3 + 51)
        #expect(a.result.captures[0].skippedMalformed + a.result.captures[0].skippedNotIPv4 + a.result.captures[0].skippedNotTCP
                + a.result.captures[0].skippedFragments + a.result.captures[0].tcpPackets == 3054)
    }

    @Test func packetsBeforeTheFirstPacketsTimeAreHandled() throws {
        // The file's first packet is 1 s later than the traffic after it (captures merged out of
        // order): times before the origin must not trap anywhere, reports included.
        let path = dir + "/unordered.pcap"
        let cap = try SyntheticCapture(path: path)
        cap.raw(time: t0 + 1000 * ms, bytes: [0x45, 0, 0, 20] + [UInt8](repeating: 0, count: 16))
        writeFGPlain(cap, clientPort: 40040, serverPort: 7040, app: 4, count: 5, start: t0 + 10 * ms, interval: 100 * ms, base: 5 * ms, step: 0)
        try cap.close()
        let (results, trials) = try Analyzer.analyze(trials: [TrialInput(name: "u", captures: [CaptureInput(path: path)])])
        #expect(trials[0].latencies.count == 5)
        #expect(trials[0].latencies.allSatisfy { $0.latencyNanoseconds == 5 * ms })
        let files = try ReportWriter(renderer: BuiltinSVGRenderer()).write(results, trials: trials, to: dir + "/unordered-out")
        #expect(files.contains("report.html"))
        let csv = try String(contentsOfFile: dir + "/unordered-out/latency.csv", encoding: .utf8)
        #expect(csv.contains(",-0.9"))
    }

    @Test func emptyAndTruncatedCapturesGiveClearMessages() throws {
        let empty = dir + "/empty.pcap"
        FileManager.default.createFile(atPath: empty, contents: Data())
        do {
            _ = try Analyzer.analyze(TrialInput(name: "e", captures: [CaptureInput(path: empty)]))
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("is empty"))
        }
        let path = dir + "/trunc.pcap"
        let cap = try SyntheticCapture(path: path)
        writeFGPlain(cap, clientPort: 40030, serverPort: 7030, app: 1, count: 5, start: t0 + 10 * ms, interval: 100 * ms, base: 5 * ms, step: 0)
        try cap.close()
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 30).write(to: URL(fileURLWithPath: path))
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path), CaptureInput(path: empty)]))
        #expect(a.result.captures[0].truncation != nil)
        #expect(a.warnings.contains { $0.contains("truncated") })
        #expect(a.warnings.contains { $0.contains("is empty") })
        #expect(a.latencies.count == 5)
    }
}
