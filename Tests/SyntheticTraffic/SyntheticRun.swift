import Analysis
import Capture
import Foundation
import DeterministicRandom
import IntNWWire
import ToyProtocol

/// A synthetic run directory: realistic plain-TCP FG and BG toy-app traffic written as pcaps
/// with an `apps.json`, for demos, tests and the analyzer benchmark. Deterministic for a seed.
public struct SyntheticRunSpec: Sendable {
    public var durationSeconds: Double = 20
    /// FG apps (128-byte requests every `fgIntervalMilliseconds`, 64-byte replies), on wifi0.
    public var fgApps = 1
    public var fgIntervalMilliseconds = 100.0
    /// Base FG latency; a slow wave and noise are added (milliseconds).
    public var fgBaseLatencyMilliseconds = 30.0
    /// BG apps (256 KiB chunks), alternating between wifi0 and cell0.
    public var bgApps = 1
    public var bgBytesPerSecond = 1_000_000.0
    public var bgChunkBytes = 256 * 1024
    /// Every Nth BG data segment is retransmitted 3 segments later (0: never).
    public var retransmitEvery = 500
    public var seed: UInt64 = 1
    /// Write everything into one capture (`all.pcap`), e.g. to compare with other tools on one file.
    public var singleCapture = false
    /// Make every second app of each role an IntNW app (toy messages inside IROBs).
    public var mixIntNW = false

    public init() {}
}

public enum SyntheticRun {
    /// Writes `wifi0.pcap`, `cell0.pcap` (or `all.pcap`) and `apps.json` into `dir`. Returns the
    /// packet count.
    @discardableResult
    public static func write(_ spec: SyntheticRunSpec, to dir: String) throws -> Int {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let wifi = try SyntheticCapture(path: dir + (spec.singleCapture ? "/all.pcap" : "/wifi0.pcap"), linkType: .raw)
        let cell = spec.singleCapture ? wifi : try SyntheticCapture(path: dir + "/cell0.pcap", linkType: .raw)
        let start: UInt64 = 1_763_000_000_000_000_000
        let end = start + UInt64(spec.durationSeconds * 1e9)
        var rng = DeterministicRNG(seed: spec.seed)
        var flows: [SyntheticAppFlow] = []
        var apps: [RunMetadata.AppEntry] = []
        let server = parseIPv4("198.19.0.1")!
        for i in 0 ..< spec.fgApps {
            let port = UInt16(7000 + i)
            let f = SyntheticFlow(capture: wifi, client: (parseIPv4("198.18.1.2")!, UInt16(41000 + i)), server: (server, port),
                                  clientISN: UInt32(truncatingIfNeeded: rng.next()), serverISN: UInt32(truncatingIfNeeded: rng.next()))
            let intnw = spec.mixIntNW && i % 2 == 1
            flows.append(FGGenerator(flow: f, appID: UInt32(1 + i), start: start + UInt64(i) * 7_000_000, spec: spec,
                                     rng: DeterministicRNG(seed: rng.next()), framing: WireFraming(intnw: intnw, rng: &rng)))
            apps.append(.init(name: "fg\(i + 1)", role: .fg, variant: intnw ? .intnw : .plain, appId: UInt32(1 + i), serverPorts: [port]))
        }
        for i in 0 ..< spec.bgApps {
            let port = UInt16(8000 + i)
            let onWifi = i % 2 == 0
            let f = SyntheticFlow(capture: onWifi ? wifi : cell,
                                  client: (parseIPv4(onWifi ? "198.18.1.2" : "198.18.2.2")!, UInt16(42000 + i)), server: (server, port),
                                  clientISN: UInt32(truncatingIfNeeded: rng.next()), serverISN: UInt32(truncatingIfNeeded: rng.next()))
            let intnw = spec.mixIntNW && i % 2 == 1
            flows.append(BGGenerator(flow: f, appID: UInt32(100 + i), start: start + UInt64(i) * 3_000_000, spec: spec,
                                     framing: WireFraming(intnw: intnw, rng: &rng)))
            apps.append(.init(name: "bg\(i + 1)", role: .bg, variant: intnw ? .intnw : .plain, appId: UInt32(100 + i), serverPorts: [port]))
        }
        // Emit in global time order: always advance the flow with the earliest next packet.
        while true {
            var best = -1
            var bestTime = UInt64.max
            for (k, f) in flows.enumerated() where f.nextTime < bestTime { best = k; bestTime = f.nextTime }
            if best < 0 || bestTime >= end { break }
            flows[best].emit()
        }
        for f in flows { f.close(at: end) }
        let packets = spec.singleCapture ? wifi.packetsWritten : wifi.packetsWritten + cell.packetsWritten
        try wifi.close()
        try cell.close()
        let captures: [RunMetadata.CaptureEntry] = spec.singleCapture
            ? [.init(file: "all.pcap", interface: "all", side: .client)]
            : [.init(file: "wifi0.pcap", interface: "wifi0", side: .client), .init(file: "cell0.pcap", interface: "cell0", side: .client)]
        let meta = RunMetadata(captures: captures, apps: apps)
        try meta.write(to: dir)
        return packets
    }
}

/// Puts toy messages on the wire: as they are (plain TCP) or each inside one IROB (IntNW:
/// BEGIN_IROB, DATA frames of at most 64 KiB, END_IROB, after a HELLO in each direction).
final class WireFraming {
    let intnw: Bool
    let session: SessionID
    private var nextID: [Bool: UInt64] = [true: 1, false: 1]

    init(intnw: Bool, rng: inout DeterministicRNG) {
        self.intnw = intnw
        session = SessionID(high: rng.next(), low: rng.next())
    }

    func hello(fromClient: Bool) -> [UInt8] {
        guard intnw else { return [] }
        return Frame.hello(Hello(role: fromClient ? .client : .server, session: session, networkID: 1, networkKind: .wifi,
                                 interfaceName: "wifi0")).encoded()
    }

    func wrap(_ message: [UInt8], fromClient: Bool, background: Bool) -> [UInt8] {
        guard intnw else { return message }
        let id = IROBID(nextID[fromClient]!)
        nextID[fromClient]! += 1
        var out = Frame.beginIROB(BeginIROB(id: id, labels: background ? .background : .foreground | .small,
                                            length: UInt32(message.count), dependencies: .allEarlier)).encoded()
        var o = 0
        while o < message.count {
            let n = min(65_536, message.count - o)
            out += Frame.data(DataChunk(id: id, offset: UInt32(o), bytes: Array(message[o ..< o + n]))).encoded()
            o += n
        }
        out += Frame.endIROB(id: id, length: UInt32(message.count)).encoded()
        return out
    }
}

protocol SyntheticAppFlow: AnyObject {
    var nextTime: UInt64 { get }
    func emit()
    func close(at: UInt64)
}

final class FGGenerator: SyntheticAppFlow {
    let flow: SyntheticFlow
    let appID: UInt32
    let spec: SyntheticRunSpec
    var rng: DeterministicRNG
    var nextTime: UInt64
    private var phase = 0  // 0 handshake, 1 request, 2 reply
    private var seq: UInt64 = 0
    private var requestTime: UInt64 = 0
    private let start: UInt64
    private let framing: WireFraming

    init(flow: SyntheticFlow, appID: UInt32, start: UInt64, spec: SyntheticRunSpec, rng: DeterministicRNG, framing: WireFraming) {
        self.flow = flow
        self.appID = appID
        self.spec = spec
        self.rng = rng
        self.start = start
        self.framing = framing
        nextTime = start
    }

    func emit() {
        switch phase {
        case 0:
            flow.handshake(at: nextTime, rttNanoseconds: 2_000_000)
            if framing.intnw {
                flow.send(fromClient: true, bytes: framing.hello(fromClient: true), at: nextTime + 2_000_000)
                flow.send(fromClient: false, bytes: framing.hello(fromClient: false), at: nextTime + 3_000_000)
            }
            phase = 1
            nextTime += 5_000_000
        case 1:
            requestTime = nextTime
            let request = ToyHeader(kind: .fgRequest, appID: appID, sequence: seq, payloadLength: 104).encodedMessage()
            flow.send(fromClient: true, bytes: framing.wrap(request, fromClient: true, background: false), at: nextTime)
            let t = Double(nextTime - start) / 1e9
            // A slow wave (like a shared queue filling and draining) plus noise and rare spikes.
            var lat = spec.fgBaseLatencyMilliseconds * (1 + 0.5 * sin(t / 3)) + 4 * rng.unit()
            if rng.unit() < 0.02 { lat += 80 * rng.unit() }
            nextTime += UInt64(min(lat, spec.fgIntervalMilliseconds * 0.9) * 1e6)
            phase = 2
        default:
            let reply = ToyHeader(kind: .fgReply, appID: appID, sequence: seq, payloadLength: 40).encodedMessage()
            flow.send(fromClient: false, bytes: framing.wrap(reply, fromClient: false, background: false), at: nextTime)
            flow.ack(fromClient: true, at: nextTime + 100_000)
            seq += 1
            nextTime = requestTime + UInt64(spec.fgIntervalMilliseconds * 1e6)
            phase = 1
        }
    }

    func close(at t: UInt64) {
        flow.fin(fromClient: true, at: t)
        flow.fin(fromClient: false, at: t + 1_000_000)
    }
}

final class BGGenerator: SyntheticAppFlow {
    let flow: SyntheticFlow
    let appID: UInt32
    let spec: SyntheticRunSpec
    var nextTime: UInt64
    private var started = false
    private var chunk: [UInt8]
    private var chunkSeq: UInt64 = 0
    private var chunkOffset = 0
    private var chunkStreamStart: UInt64 = 0
    private var segments = 0
    private var retransmit: (offset: UInt64, bytes: [UInt8], due: Int)?
    private let gap: UInt64
    private let framing: WireFraming

    init(flow: SyntheticFlow, appID: UInt32, start: UInt64, spec: SyntheticRunSpec, framing: WireFraming) {
        self.flow = flow
        self.appID = appID
        self.spec = spec
        self.framing = framing
        nextTime = start
        chunk = []
        gap = UInt64(Double(flow.mss) / spec.bgBytesPerSecond * 1e9)
        chunk = framing.hello(fromClient: true) + unit(0)
    }

    /// The wire bytes of chunk `seq`.
    private func unit(_ seq: UInt64) -> [UInt8] {
        let message = ToyHeader(kind: .bgChunk, appID: appID, sequence: seq,
                                payloadLength: UInt32(spec.bgChunkBytes - ToyWire.headerLength)).encodedMessage()
        return framing.wrap(message, fromClient: true, background: true)
    }

    func emit() {
        if !started {
            flow.handshake(at: nextTime, rttNanoseconds: 2_000_000)
            if framing.intnw { flow.send(fromClient: false, bytes: framing.hello(fromClient: false), at: nextTime + 1_000_000) }
            started = true
            nextTime += 2_000_000
            return
        }
        if let r = retransmit, r.due == segments {
            flow.segment(fromClient: true, offset: r.offset, bytes: r.bytes, at: nextTime)
            retransmit = nil
            nextTime += gap
            return
        }
        let n = min(flow.mss, chunk.count - chunkOffset)
        let offset = chunkStreamStart + UInt64(chunkOffset)
        chunk.withUnsafeBytes { raw in
            flow.segment(fromClient: true, offset: offset, bytes: UnsafeRawBufferPointer(rebasing: raw[chunkOffset ..< chunkOffset + n]), at: nextTime)
        }
        segments += 1
        if spec.retransmitEvery > 0 && segments % spec.retransmitEvery == 0 && retransmit == nil {
            retransmit = (offset, Array(chunk[chunkOffset ..< chunkOffset + n]), segments + 3)
        }
        chunkOffset += n
        // The server acknowledges every second segment, about 64 KB behind (one window in flight).
        if segments % 2 == 0 {
            flow.ack(fromClient: false, upTo: flow.clientOffset > 65_536 ? flow.clientOffset - 65_536 : 0, at: nextTime + 1000)
        }
        if chunkOffset == chunk.count {
            let ack = ToyHeader(kind: .bgAck, appID: appID, sequence: chunkSeq, payloadLength: 0).encodedMessage()
            flow.send(fromClient: false, bytes: framing.wrap(ack, fromClient: false, background: true), at: nextTime + 2000)
            chunkSeq += 1
            chunkStreamStart += UInt64(chunk.count)
            chunkOffset = 0
            chunk = unit(chunkSeq)
        }
        nextTime += gap
    }

    func close(at t: UInt64) {
        flow.ack(fromClient: false, at: t)
        flow.fin(fromClient: true, at: t)
        flow.fin(fromClient: false, at: t + 1_000_000)
    }
}
