import Foundation
import Testing
@testable import Analysis
@testable import SyntheticTraffic
import ToyProtocol

/// Throughput is booked where the bytes have crossed the bottleneck (docs/analysis.md, "Where bytes
/// are booked"), and the analysis flags any 1 s bin above the trace's capacity.
@Suite final class CapacityTests {
    let dir = tempDir("capacity")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// A BG app on plain TCP pushes 120 kB into a 64 kB/s uplink within 120 ms (slow start filling
    /// the emulator's queue). The client-side capture sees it all in the first second; the
    /// server-side capture sees it leave the bottleneck at 64,000 B/s.
    @Test func uplinkIsBookedPastTheBottleneck() throws {
        let rate = 64_000.0
        let schedule = CapacitySchedule(startRealtimeNanoseconds: t0, links: ["cell0": [
            .init(startSeconds: 0, upBytesPerSecond: rate, downBytesPerSecond: 128_000, rttMilliseconds: 200, available: true)]])
        let data = toy(.bgChunk, app: 2, seq: 0, payload: 120_000 - 24)
        let clientPath = dir + "/client-cell0.pcap", serverPath = dir + "/server-cell0.pcap"
        for (path, gap) in [(clientPath, UInt64(1_448_000)), (serverPath, UInt64(1448 / rate * 1e9))] {
            let cap = try SyntheticCapture(path: path)
            let f = SyntheticFlow(capture: cap, client: (clientIP, 40030), server: (serverIP, 5200))
            f.handshake(at: t0 + 10 * ms)
            let end = f.send(fromClient: true, bytes: data, at: t0 + 20 * ms, gapNanoseconds: gap)
            f.ack(fromClient: false, at: end + 100 * ms)
            try cap.close()
        }
        let meta = RunMetadata(apps: [.init(name: "bg", role: .bg, variant: .plain, appId: 2)])
        func analyze(_ captures: [CaptureInput]) throws -> TrialAnalysis {
            var input = TrialInput(name: "t", captures: captures, metadata: meta)
            input.capacity = schedule
            return try Analyzer.analyze(input)
        }
        let client = CaptureInput(path: clientPath, interface: "cell0", side: .client)
        let server = CaptureInput(path: serverPath, interface: "cell0", side: .server)

        // Old booking (client side only): the first second holds all 120,000 bytes.
        let old = try analyze([client])
        let oldBins = try #require(old.series.first { $0.kind == .app && $0.name == "bg" && $0.direction == "uplink" }).rebinned(by: 10)
        #expect(oldBins.bytesPerBin.first == 120_000)
        #expect(old.result.capacityViolations ?? 0 >= 1, "the check must flag the client-side booking")
        #expect(old.warnings.contains { $0.hasPrefix("capacity exceeded: app 'bg' uplink on cell0") })

        // New booking: the same bytes, at the times the server side saw them.
        let new = try analyze([client, server])
        let bg = try #require(new.result.apps.first { $0.name == "bg" })
        #expect(bg.throughput.uplinkBytes == 120_000)
        let bins = try #require(new.series.first { $0.kind == .app && $0.name == "bg" && $0.direction == "uplink" }).rebinned(by: 10)
        let allowed = schedule.allowedBytes(interface: "cell0", uplink: true, fromNanoseconds: t0, toNanoseconds: t0 + 1_000_000_000)!
        #expect(bins.bytesPerBin.allSatisfy { Double($0) <= allowed }, "\(bins.bytesPerBin) vs \(allowed)")
        #expect(bins.bytesPerBin.count >= 2 && bins.bytesPerBin[1] > 0, "spread over about 2 s")
        #expect(new.result.capacityViolations == 0, "\(new.warnings)")
        #expect(new.result.accountingViolations == 0, "\(new.warnings)")
        // Without a schedule there is no check (and no claim that it passed).
        let none = try Analyzer.analyze(TrialInput(name: "t", captures: [client, server], metadata: meta))
        #expect(none.result.capacityViolations == nil)
    }

    /// The allowed bytes of a bin: the capacity over the bin (or over the bin one one-way delay
    /// earlier, when a slice changes) plus one 1500-byte packet and 10 ms of rate.
    @Test func allowedBytesFollowSlices() {
        let s = CapacitySchedule(startRealtimeNanoseconds: 0, links: ["wifi0": [
            .init(startSeconds: 0, upBytesPerSecond: 100_000, downBytesPerSecond: 0, rttMilliseconds: 0, available: true),
            .init(startSeconds: 1.5, upBytesPerSecond: 10_000, downBytesPerSecond: 0, rttMilliseconds: 0, available: false)]])
        #expect(abs(s.allowedBytes(interface: "wifi0", uplink: true, fromNanoseconds: 0, toNanoseconds: 1_000_000_000)! - (100_000 + 1500 + 1000)) < 1e-6)
        // 0.5 s at 100 kB/s, then unavailable.
        #expect(abs(s.allowedBytes(interface: "wifi0", uplink: true, fromNanoseconds: 1_000_000_000, toNanoseconds: 2_000_000_000)! - (50_000 + 1500 + 1000)) < 1e-6)
        #expect(s.allowedBytes(interface: "cell0", uplink: true, fromNanoseconds: 0, toNanoseconds: 1) == nil)
    }
}
