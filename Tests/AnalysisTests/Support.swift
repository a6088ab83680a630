import Foundation
@testable import Analysis
import Capture
import ToyProtocol
import DeterministicRandom
@testable import SyntheticTraffic

let clientIP = parseIPv4("198.18.1.2")!
let serverIP = parseIPv4("198.19.0.1")!
let t0: UInt64 = 1_700_000_000_000_000_000
let ms: UInt64 = 1_000_000

/// External tools the tests cross-check against (gnuplot, tshark). Under CI (CI=true, or
/// INTNW_REQUIRE_NETNS=1 as `make test` sets it) a missing tool is a failure, not a silent pass.
enum ToolGate {
    static let ci = ProcessInfo.processInfo.environment["CI"] == "true"
        || ProcessInfo.processInfo.environment["INTNW_REQUIRE_NETNS"] == "1"
    static func installed(_ tool: String) -> Bool { shell("command -v \(tool)").status == 0 }
    static func shouldRun(_ tool: String) -> Bool { ci || installed(tool) }
}

func tempDir(_ tag: String) -> String {
    let path = NSTemporaryDirectory() + "ian-\(tag)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func toy(_ kind: ToyMessageKind, app: UInt32, seq: UInt64, payload: Int) -> [UInt8] {
    ToyHeader(kind: kind, appID: app, sequence: seq, payloadLength: UInt32(payload)).encodedMessage()
}

/// Writes an IntNW connection (client 40033 -> server 5133) whose BG app 2 sends three 5,000-byte
/// chunks, and whose capture never holds the first segment of the second chunk (its BEGIN_IROB,
/// DATA header and toy header): a hole that is never filled. Returns the wire size of the holed
/// message (its IntNW frames) and the time of the server's final ACK; the caller closes the capture.
@discardableResult
func writeHoledIntNWBGStream(to cap: SyntheticCapture, start: UInt64) -> (holedMessageBytes: Int, end: UInt64) {
    let f = SyntheticFlow(capture: cap, client: (clientIP, 40033), server: (serverIP, 5133))
    var rng = DeterministicRNG(seed: 4)
    let framing = WireFraming(intnw: true, rng: &rng)
    f.handshake(at: start)
    var t = start + 5 * ms
    t = f.send(fromClient: true, bytes: framing.hello(fromClient: true), at: t) + ms
    t = f.send(fromClient: true, bytes: framing.wrap(toy(.bgChunk, app: 2, seq: 0, payload: 5000 - 24), fromClient: true, background: true), at: t, gapNanoseconds: ms) + ms
    let holed = framing.wrap(toy(.bgChunk, app: 2, seq: 1, payload: 5000 - 24), fromClient: true, background: true)
    let first = f.clientOffset
    // The first segment (1,448 B) is never captured.
    var o = 1448
    while o < holed.count {
        let n = min(1448, holed.count - o)
        f.segment(fromClient: true, offset: first + UInt64(o), bytes: Array(holed[o ..< o + n]), at: t)
        o += n
        t += ms
    }
    t = f.send(fromClient: true, bytes: framing.wrap(toy(.bgChunk, app: 2, seq: 2, payload: 5000 - 24), fromClient: true, background: true), at: t + ms, gapNanoseconds: ms) + ms
    f.ack(fromClient: false, at: t + 10 * ms)
    return (holed.count, t + 10 * ms)
}

/// Records what a reassembler delivers.
final class RecordingConsumer: StreamConsumer {
    var bytes: [UInt8] = []
    var chunks: [(offset: UInt64, count: Int, firstSeen: UInt64, available: UInt64)] = []
    var gaps: [(length: UInt64, offset: UInt64)] = []
    var finished = false

    func consume(_ b: UnsafeRawBufferPointer, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        precondition(offset == UInt64(bytes.count) + gaps.reduce(0) { $0 + $1.length }, "out-of-order delivery")
        bytes += b
        chunks.append((offset, b.count, firstSeenNanoseconds, availableNanoseconds))
    }

    func gap(length: UInt64, offset: UInt64, availableNanoseconds: UInt64) { gaps.append((length, offset)) }
    func finish(atNanoseconds: UInt64) { finished = true }
}

/// A plain-TCP FG app: `count` requests every `interval`, each answered after `base + i·step`.
/// Returns the exact latencies it constructed.
@discardableResult
func writeFGPlain(_ cap: SyntheticCapture, clientPort: UInt16, serverPort: UInt16, app: UInt32, count: Int,
                  start: UInt64, interval: UInt64, base: UInt64, step: UInt64, replyBytes: Int = 40) -> [UInt64] {
    let f = SyntheticFlow(capture: cap, client: (clientIP, clientPort), server: (serverIP, serverPort))
    f.handshake(at: start - 5 * ms)
    var lat: [UInt64] = []
    for i in 0 ..< count {
        let t = start + UInt64(i) * interval
        f.send(fromClient: true, bytes: toy(.fgRequest, app: app, seq: UInt64(i), payload: 104), at: t)
        f.ack(fromClient: false, at: t + ms / 2)
        let l = base + UInt64(i) * step
        f.send(fromClient: false, bytes: toy(.fgReply, app: app, seq: UInt64(i), payload: replyBytes), at: t + l)
        f.ack(fromClient: true, at: t + l + ms / 10)
        lat.append(l)
    }
    f.fin(fromClient: true, at: start + UInt64(count) * interval)
    f.fin(fromClient: false, at: start + UInt64(count) * interval + ms)
    return lat
}
