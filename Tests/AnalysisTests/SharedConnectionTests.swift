import Foundation
import Testing
@testable import Analysis
import Capture
import ToyProtocol
import SyntheticTraffic

/// Two apps on one connection (an FG app and a BG app sharing a multisocket): messages are attributed
/// by the app id in their toy header, not the whole connection to one app.
@Suite final class SharedConnectionTests {
    let dir = tempDir("shared")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    @Test func messagesGoToTheAppInTheirHeader() throws {
        let path = dir + "/shared.pcap"
        let cap = try SyntheticCapture(path: path)
        let f = SyntheticFlow(capture: cap, client: (clientIP, 40010), server: (serverIP, 5000))
        f.handshake(at: t0)
        var t = t0 + 10 * ms
        for seq in 0..<5 {
            // One 10,000-byte BG chunk, then an FG request answered 30 ms later, then the chunk's ack.
            t = f.send(fromClient: true, bytes: toy(.bgChunk, app: 2, seq: UInt64(seq), payload: 10_000 - 24), at: t, gapNanoseconds: ms)
            let req = t + ms
            _ = f.send(fromClient: true, bytes: toy(.fgRequest, app: 1, seq: UInt64(seq), payload: 104), at: req)
            _ = f.send(fromClient: false, bytes: toy(.fgReply, app: 1, seq: UInt64(seq), payload: 40), at: req + 30 * ms)
            _ = f.send(fromClient: false, bytes: toy(.bgAck, app: 2, seq: UInt64(seq), payload: 0), at: req + 31 * ms)
            t = req + 100 * ms
        }
        try cap.close()
        let meta = RunMetadata(apps: [.init(name: "fg", role: .fg, variant: .plain, appId: 1),
                                      .init(name: "bg", role: .bg, variant: .plain, appId: 2)])
        let a = try Analyzer.analyze(TrialInput(name: "t", captures: [CaptureInput(path: path, interface: "cell0")], metadata: meta))
        let fg = try #require(a.result.apps.first { $0.name == "fg" })
        let bg = try #require(a.result.apps.first { $0.name == "bg" })
        #expect(fg.fg?.requests == 5 && fg.fg?.replies == 5)
        #expect(fg.fg?.latencyMs?.p50Ms == 30)
        #expect(fg.messages["bgChunk"] == 0, "BG chunks are not the FG app's")
        #expect(bg.bg?.chunks == 5 && bg.bg?.acks == 5 && bg.bg?.chunkPayloadBytes == 5 * (10_000 - 24))
        #expect(bg.messages["fgRequest"] == 0)
        #expect(bg.throughput.uplinkBytes == 5 * 10_000, "the BG app's own bytes")
        #expect(fg.throughput.uplinkBytes == 5 * 128)
        #expect(a.result.connections.first?.app == "bg+fg" || a.result.connections.first?.app == "fg+bg")
    }
}
