#if canImport(Glibc)
import Glibc
#endif
import CShims
import Foundation
import Logging
import Testing
import SystemPackage
@testable import IntNW

/// The note's detector as a pure function of its sample, its parameters and switch, and the
/// TCP_INFO reader.
@Suite struct TroubleDetectorTests {
    static let ms: UInt64 = 1_000_000
    static let now: UInt64 = 1_000_000 * ms

    func status(rttMs: Double = 40, troubled: Bool = false) -> NetworkStatus {
        NetworkStatus(networkID: 3, kind: .wifi, interfaceName: "wifi0", usable: true, troubled: troubled,
                      estimate: NetworkEstimate(rttMilliseconds: rttMs, bandwidthBytesPerSecond: 1e6, source: .measured),
                      bytesSent: 0, bytesReceived: 0, lastForegroundActivityNs: 0)
    }

    func sample(unacked: UInt32, lastAckAgoMs: UInt32, fgSinceAgoMs: UInt64?, rttMs: Double = 40,
                kernelSRTTMs: UInt32 = 40, troubledAgoMs: UInt64? = nil, intnwAckAgoMs: UInt64? = nil,
                lastDataReceivedAgoMs: UInt32 = 100_000) -> TroubleSample {
        var info = cshims_tcp_info()
        info.tcpi_unacked = unacked
        info.tcpi_last_ack_recv = lastAckAgoMs
        info.tcpi_last_data_recv = lastDataReceivedAgoMs
        info.tcpi_rtt = kernelSRTTMs * 1000
        return TroubleSample(network: status(rttMs: rttMs, troubled: troubledAgoMs != nil), nowNs: Self.now, tcpInfo: info,
                             unackedForegroundIROBs: fgSinceAgoMs == nil ? 0 : 1,
                             lastAckNs: intnwAckAgoMs.map { Self.now - $0 * Self.ms } ?? 0,
                             foregroundOutstandingSinceNs: fgSinceAgoMs.map { Self.now - $0 * Self.ms } ?? 0,
                             troubledSinceNs: troubledAgoMs.map { Self.now - $0 * Self.ms } ?? 0)
    }

    static let quiet: Logger = {
        var l = Logger(label: "test.trouble")
        l.logLevel = .error
        return l
    }()
    let detector = AckTimeoutTroubleDetector(logger: quiet)

    @Test func timeoutFollowsTheNote() {
        let p = TroubleParameters()
        #expect(p.ackTimeoutMilliseconds(rttMilliseconds: 40) == 400)   // 2 x delayed-ACK bound
        #expect(p.ackTimeoutMilliseconds(rttMilliseconds: 300) == 600)  // 2 x RTT
        #expect(p.ackTimeoutMilliseconds(rttMilliseconds: .nan) == 400)
        let custom = TroubleParameters(floorMilliseconds: 500, delayedAckBoundMilliseconds: 40, rttMultiplier: 3)
        #expect(custom.ackTimeoutMilliseconds(rttMilliseconds: 50) == 500)  // floor binds
        #expect(custom.ackTimeoutMilliseconds(rttMilliseconds: 200) == 600)
    }

    @Test func varianceWidensOnlySlowVariableLinks() throws {
        let p = TroubleParameters()
        // WiFi: RTT plus 4 x its variance stays under the delayed-ACK bound, nothing changes.
        #expect(p.ackTimeoutMilliseconds(rttMilliseconds: 48, rttVarianceMilliseconds: 22) == 400)
        // Variable 3G (values measured in the trouble experiment): the margin grows with the variance.
        #expect(p.ackTimeoutMilliseconds(rttMilliseconds: 216, rttVarianceMilliseconds: 81) == 2 * (216 + 4 * 81))
        // rttvar_k=0 is the note's formula verbatim.
        let note = try TroubleParameters.parse("rttvar_k=0")
        #expect(note.ackTimeoutMilliseconds(rttMilliseconds: 216, rttVarianceMilliseconds: 81) == 432)
        // The detector takes the variance from TCP_INFO.
        var s = sample(unacked: 2, lastAckAgoMs: 464, fgSinceAgoMs: 470, rttMs: 216)
        s.tcpInfo.tcpi_rttvar = 81_000
        #expect(!detector.decide(s).0.troubled)
        #expect(AckTimeoutTroubleDetector(parameters: note, logger: Self.quiet).decide(s).0.troubled)
    }

    @Test func stalledForegroundIsDeclared() {
        let (v, d) = detector.decide(sample(unacked: 2, lastAckAgoMs: 450, fgSinceAgoMs: 500))
        #expect(v.troubled)
        #expect(d.outcome == .declared && d.ackTimeoutMilliseconds == 400 && d.stallMilliseconds == 450)
        // Recheck soon for ACKs flowing again.
        #expect(v.nextCheckNs == Self.now + 50 * Self.ms)
    }

    @Test func healthyCheckSchedulesTheEarliestExpiry() {
        // Last ACK 50 ms ago, FG outstanding for 100 ms: the timeout could expire 350 ms from now.
        let (v, d) = detector.decide(sample(unacked: 1, lastAckAgoMs: 50, fgSinceAgoMs: 100))
        #expect(!v.troubled && d.outcome == .healthy && d.stallMilliseconds == 50)
        #expect(v.nextCheckNs == Self.now + 350 * Self.ms + AckTimeoutTroubleDetector.slackNs)
    }

    @Test func aRequestAfterIdleIsNotAStall() {
        // The last ACK is 5 s old only because nothing was sent: the stall starts at the FG send.
        let (v, d) = detector.decide(sample(unacked: 1, lastAckAgoMs: 5000, fgSinceAgoMs: 10))
        #expect(!v.troubled && d.stallMilliseconds == 10)
        #expect(v.nextCheckNs == Self.now + 390 * Self.ms + AckTimeoutTroubleDetector.slackNs)
    }

    @Test func nothingUnackedIsNeverTrouble() {
        // All sent data ACKed (e.g. a receiver that stopped reading: zero window, data waits unsent).
        let (v, d) = detector.decide(sample(unacked: 0, lastAckAgoMs: 3000, fgSinceAgoMs: 3000))
        #expect(!v.troubled && d.outcome == .healthy)
        #expect(v.nextCheckNs == Self.now + 400 * Self.ms + AckTimeoutTroubleDetector.slackNs)
    }

    @Test func usesIntNWsRTTNotTheKernelsSwollenOne() {
        // Kernel srtt swelled to 3 s; IntNW's estimate says 40 ms: the timeout stays 400 ms.
        let (v, d) = detector.decide(sample(unacked: 3, lastAckAgoMs: 900, fgSinceAgoMs: 1000, rttMs: 40, kernelSRTTMs: 3000))
        #expect(v.troubled && d.ackTimeoutMilliseconds == 400 && d.kernelRTTMilliseconds == 3000)
        // A slow network's own estimate lengthens it.
        let (v2, d2) = detector.decide(sample(unacked: 3, lastAckAgoMs: 900, fgSinceAgoMs: 1000, rttMs: 500))
        #expect(!v2.troubled && d2.ackTimeoutMilliseconds == 1000)
    }

    @Test func anIntNWAckCountsAsProgress() {
        let (v, _) = detector.decide(sample(unacked: 1, lastAckAgoMs: 600, fgSinceAgoMs: 700, intnwAckAgoMs: 100))
        #expect(!v.troubled)
    }

    @Test func dataFromThePeerIsAnAck() {
        // The kernel's fast path leaves last_ack_recv stale while the peer's bulk data arrives (its
        // ACK for our reply is queued behind that data): that is progress, not a stall.
        let (v, d) = detector.decide(sample(unacked: 1, lastAckAgoMs: 700, fgSinceAgoMs: 700, lastDataReceivedAgoMs: 5))
        #expect(!v.troubled && d.stallMilliseconds == 5 && d.lastDataReceivedMilliseconds == 5)
        // And it ends a trouble like an ACK does.
        let (back, _) = detector.decide(sample(unacked: 2, lastAckAgoMs: 900, fgSinceAgoMs: nil, troubledAgoMs: 300,
                                               lastDataReceivedAgoMs: 10))
        #expect(!back.troubled)
    }

    @Test func troubleClearsOnlyWhenAnAckArrivesAfterTheDeclaration() {
        let (still, d1) = detector.decide(sample(unacked: 2, lastAckAgoMs: 900, fgSinceAgoMs: nil, troubledAgoMs: 300))
        #expect(still.troubled && d1.outcome == .stillTroubled)
        #expect(still.nextCheckNs == Self.now + 50 * Self.ms)
        let (back, d2) = detector.decide(sample(unacked: 1, lastAckAgoMs: 20, fgSinceAgoMs: nil, troubledAgoMs: 300))
        #expect(!back.troubled && d2.outcome == .cleared)
    }

    @Test func statisticsCountAndKeepDecisions() throws {
        let path = NSTemporaryDirectory() + "trouble-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).jsonl"
        defer { unlink(path) }
        let stats = TroubleStatistics(historyLimit: 3, jsonLinesPath: path)
        #expect(stats.isWritingJSONLines)
        let d = AckTimeoutTroubleDetector(statistics: stats, logger: Self.quiet)
        _ = d.evaluate(sample(unacked: 1, lastAckAgoMs: 50, fgSinceAgoMs: 100))
        _ = d.evaluate(sample(unacked: 2, lastAckAgoMs: 450, fgSinceAgoMs: 500))
        _ = d.evaluate(sample(unacked: 2, lastAckAgoMs: 500, fgSinceAgoMs: nil, troubledAgoMs: 50))
        _ = d.evaluate(sample(unacked: 0, lastAckAgoMs: 5, fgSinceAgoMs: nil, troubledAgoMs: 100))
        let c = stats.counts
        #expect(c.checks == 2 && c.declarations == 1 && c.troubledChecks == 2 && c.clears == 1)
        #expect(stats.recentDecisions.map(\.outcome) == [.declared, .stillTroubled, .cleared])
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 4)
        let objects = try lines.map { try #require(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(objects.map { $0["outcome"] as? String } == ["healthy", "declared", "still_troubled", "cleared"])
        #expect(objects[1]["timeout_ms"] as? Double == 400 && objects[1]["interface"] as? String == "wifi0")
        #expect((objects[1]["realtime_ns"] as? UInt64 ?? 0) > 1_600_000_000 * 1_000_000_000)
    }

    @Test func theSwitchAndItsParameters() throws {
        #expect(try TroubleDetection.parseSetting("off") == .off)
        #expect(try TroubleDetection.parseSetting(" OFF ") == .off)
        #expect(try TroubleDetection.parseSetting("") == .on(TroubleParameters()))
        #expect(try TroubleDetection.parseSetting("on") == .on(TroubleParameters()))
        #expect(try TroubleDetection.parseSetting("on,floor_ms=300,recheck_ms=20")
                == .on(TroubleParameters(floorMilliseconds: 300, recheckMilliseconds: 20)))
        #expect(try TroubleDetection.parseSetting("delack_ms=100,multiplier=3")
                == .on(TroubleParameters(delayedAckBoundMilliseconds: 100, rttMultiplier: 3)))
        for bad in ["maybe", "on,floor=1", "floor_ms=-1", "multiplier=x", "recheck_ms=0"] {
            #expect(throws: IntNWError.self, "\(bad)") { try TroubleDetection.parseSetting(bad) }
        }
        // What the options' default does with each value of INTNW_TROUBLE.
        let log = Logger(label: "test")
        #expect(TroubleDetection.detector(forSetting: "off", logger: log) is NoTroubleDetector)
        let tuned = try #require(TroubleDetection.detector(forSetting: "floor_ms=250", logger: log) as? AckTimeoutTroubleDetector)
        #expect(tuned.parameters.floorMilliseconds == 250)
        #expect(TroubleDetection.detector(forSetting: nil, logger: log) is AckTimeoutTroubleDetector)
        // A bad value keeps detection on (and says so on the logger).
        #expect(TroubleDetection.detector(forSetting: "sometimes", logger: log) is AckTimeoutTroubleDetector)
        if getenv("INTNW_TROUBLE") == nil { #expect(MultiSocketOptions().troubleDetector is AckTimeoutTroubleDetector) }
    }

    @Test func noticeFrameRoundTrips() throws {
        let f = TroubleNotice.frame(networkID: 0x0102_0304, troubled: true)
        guard case .extension(let t, let body) = f else { Issue.record("not an extension frame"); return }
        #expect(t == TroubleNotice.frameType && t >= Wire.firstExtensionType)
        #expect(TroubleNotice.parse(body)! == (0x0102_0304, true))
        #expect(TroubleNotice.parse([0, 0, 0, 1, 0])! == (1, false))
        #expect(TroubleNotice.parse([0, 0, 0, 1]) == nil)
        #expect(TroubleNotice.parse([0, 0, 0, 1, 2]) == nil)
        // It survives the encoder and decoder like any extension.
        var dec = FrameDecoder()
        dec.feed(f.encoded())
        #expect(try dec.next() == f)
    }
}

@Suite struct TCPInfoReaderTests {
    @Test func readsALiveConnection() throws {
        let (l, c, s) = try loopbackTCPConnection()
        defer { close(l); close(c); close(s) }
        let info = try TCPInfoReader.read(fd: c)
        #expect(info.state == 1)  // ESTABLISHED
        #expect(info.unackedPackets == 0)
        #expect(info.unsentBytes == 0)
        #expect(info.bytesAcked >= 1000)
        #expect(info.rttMicroseconds > 0 && info.rttMicroseconds < 1_000_000)
        #expect(info.lastDataSentMilliseconds < 10_000 && info.lastAckReceivedMilliseconds < 10_000)
        let nowNs = cshims_monotonic_ns()
        #expect(info.lastAckReceivedNs(snapshotAtNs: nowNs) <= nowNs)
    }

    @Test func aNonSocketIsATypedError() {
        var fds: [Int32] = [0, 0]
        _ = pipe(&fds)
        defer { close(fds[0]); close(fds[1]) }
        #expect(throws: IntNWError.system(call: "getsockopt(TCP_INFO)", errno: Errno(rawValue: ENOTSOCK))) { try TCPInfoReader.read(fd: fds[0]) }
    }
}
