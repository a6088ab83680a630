import Foundation
import Testing
@testable import Analysis
import Capture
import IntNWWire
import SyntheticTraffic

/// The synthetic captures the analyzer tests build on must look real to tshark: otherwise the
/// hand-computed analyzer results would be checked against packets no real tool would parse.
@Suite final class ExternalToolTests {
    let dir = tempDir("tools")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// Catches: synthetic packets tshark counts differently, flags as malformed or whose TCP payload
    /// bytes differ from what was written (20 requests of 128 B up, 20 replies of 64 B down). Under CI
    /// a missing tshark fails here instead of passing.
    @Test(.enabled(if: ToolGate.shouldRun("tshark"), "tshark not installed (CI=true makes this a failure)"))
    func tsharkParsesSyntheticCaptures() throws {
        try #require(ToolGate.installed("tshark"), "tshark is not installed (make setup installs it)")
        let path = dir + "/fg.pcap"
        let cap = try SyntheticCapture(path: path, linkType: .ethernet)
        writeFGPlain(cap, clientPort: 40001, serverPort: 7001, app: 1, count: 20,
                     start: t0 + 10 * ms, interval: 100 * ms, base: 20 * ms, step: ms)
        let written = cap.packetsWritten
        try cap.close()
        let r = shell("tshark -n -r \(path) -T fields -e tcp.srcport -e tcp.len 2>/dev/null")
        try #require(r.status == 0, "tshark failed: \(r.err)")
        let rows = r.out.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        #expect(rows.count == written)
        let up = rows.filter { $0.first == "40001" }.compactMap { $0.count > 1 ? Int($0[1]) : nil }.reduce(0, +)
        let down = rows.filter { $0.first == "7001" }.compactMap { $0.count > 1 ? Int($0[1]) : nil }.reduce(0, +)
        #expect(up == 20 * 128 && down == 20 * 64, "tshark saw \(up) B up, \(down) B down")
        let malformed = shell("tshark -n -r \(path) -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null")
        #expect(malformed.status == 0 && malformed.out.isEmpty, "tshark flags packets: \(malformed.out)")
    }

    /// The Lua dissector learns an IROB's app from a toy header that arrives in pieces (a first
    /// DATA frame of 7 bytes, as delay-target sends when its window has a few bytes of room); the
    /// old dissector read the app only from a first DATA frame holding the whole header, and
    /// reported app 0 for the IROB's bytes, so its per-app sums disagreed with the analyzer's.
    @Test(.enabled(if: ToolGate.shouldRun("tshark"), "tshark not installed (CI=true makes this a failure)"))
    func dissectorLearnsTheAppFromAToyHeaderInPieces() throws {
        try #require(ToolGate.installed("tshark"), "tshark is not installed (make setup installs it)")
        let lua = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tools/wireshark/intnw.lua").path
        let path = dir + "/pieces.pcap"
        let cap = try SyntheticCapture(path: path, linkType: .ethernet)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40002), server: (serverIP, 7002))
        f.handshake(at: t0)
        let hello = Frame.hello(Hello(role: .client, session: SessionID(high: 7, low: 8), networkID: 1, networkKind: .wifi,
                                      interfaceName: "wifi0")).encoded()
        f.send(fromClient: true, bytes: hello, at: t0 + ms)
        let message = toy(.bgChunk, app: 2, seq: 0, payload: 3000)
        var bytes = Frame.beginIROB(BeginIROB(id: IROBID(1), labels: .background, length: UInt32(message.count),
                                              dependencies: .allEarlier)).encoded()
        for (o, n) in [(0, 7), (7, 3), (10, message.count - 10)] {
            bytes += Frame.data(DataChunk(id: IROBID(1), offset: UInt32(o), bytes: Array(message[o ..< o + n]))).encoded()
        }
        bytes += Frame.endIROB(id: IROBID(1), length: UInt32(message.count)).encoded()
        f.send(fromClient: true, bytes: bytes, at: t0 + 2 * ms, gapNanoseconds: ms)
        try cap.close()
        let r = shell("tshark -n -X lua_script:\(lua) -r \(path) -Y intnw.data.irob -T fields -E occurrence=a -E aggregator=';' -e intnw.data.length -e intnw.app 2>/dev/null")
        try #require(r.status == 0, "tshark failed: \(r.err)")
        var byApp: [String: Int] = [:]
        for line in r.out.split(separator: "\n") {
            let cols = line.split(separator: "\t", omittingEmptySubsequences: false).map { $0.split(separator: ";").map(String.init) }
            guard cols.count == 2 else { continue }
            for (l, a) in zip(cols[0], cols[1]) { byApp[a, default: 0] += Int(l) ?? 0 }
        }
        // The header is whole after the second frame: the 7- and 3-byte frames precede it.
        #expect(byApp == ["0": 10, "2": message.count - 10], "\(byApp)")
        let meta = RunMetadata(apps: [.init(name: "bg", role: .bg, variant: .intnw, appId: 2)])
        let a = try Analyzer.analyze(TrialInput(name: "p", captures: [CaptureInput(path: path)], metadata: meta))
        #expect(a.result.apps.first { $0.name == "bg" }?.throughput.uplinkBytes == UInt64(message.count))
    }
}
