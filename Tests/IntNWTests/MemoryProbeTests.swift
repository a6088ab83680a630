import Foundation
import Testing
@testable import IntNW
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 14's memory probes at acceptance scale against a real server process (`intnw-app server
/// --variant intnw`), measuring its resident set (VmRSS) before, at the peak of and after each
/// probe. Opt-in (`INTNW_HOSTILE_FULL=1`): it takes a minute and hundreds of MiB; `make test` checks
/// the same bounds at small scale (BoundedResourcesTests, HostileSessionTests).
@Suite("Memory probes against a server process (INTNW_HOSTILE_FULL=1)", .serialized)
struct MemoryProbeTests {
    typealias H = HostileSessionTests

    static var appBinary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [dir.appendingPathComponent("intnw-app").path,
                          URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                            .deletingLastPathComponent().appendingPathComponent(".build/debug/intnw-app").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    static func rssKiB(_ pid: Int32) -> Int {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return -1 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
    }

    /// Peak RSS of `pid` while `body` runs (sampled every 20 ms on a thread of its own).
    static func peakRSS(_ pid: Int32, during body: () throws -> Void) rethrows -> Int {
        let peak = PeakBox()
        let stop = DoneFlag()
        let t = Thread {
            while !stop.isSet {
                peak.update(rssKiB(pid))
                usleep(20_000)
            }
        }
        t.start()
        defer { stop.set() }
        try body()
        usleep(200_000)
        peak.update(rssKiB(pid))
        return peak.value
    }

    static func attach(_ port: UInt16, from source: String) -> Int32? {
        guard let fd = RawPeer.connect(port, from: source) else { return nil }
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        RawPeer.send(fd, [RawPeer.hello(SessionID.random(), network: 1), H.throwawayKeyShare()])
        guard RawPeer.read(fd, stopAfter: 2).frames.count == 2 else { close(fd); return nil }
        return fd
    }

    /// Sends `bytes` until the socket stops taking them for a second; returns what it took.
    static func push(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            off += n
        }
        return off
    }

    @Test("DATA_CHECK amplification, unread PINGs, partial 1 MiB frames: RSS under the cap, back near baseline")
    func memoryProbes() async throws {
        guard ProcessInfo.processInfo.environment["INTNW_HOSTILE_FULL"] == "1" else { return }
        // A free port for the server.
        let probeListener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        let port = probeListener.localEndpoint.port
        probeListener.close()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: Self.appBinary)
        server.arguments = ["server", "--variant", "intnw", "--address", "127.0.0.1", "--port", String(port), "--log", "/dev/null"]
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate(); server.waitUntilExit() }
        let pid = server.processIdentifier
        let capMiB = ListenerOptions().receiveMemoryLimitBytes >> 20
        let report = try await offPool { () -> [(name: String, before: Int, peak: Int, after: Int)] in
            var lines: [(name: String, before: Int, peak: Int, after: Int)] = []
            // Wait until it listens.
            for _ in 0..<100 {
                if let fd = RawPeer.connect(port) { close(fd); break }
                usleep(50_000)
            }
            usleep(300_000)
            func measure(_ name: String, _ body: () -> [Int32]) {
                let before = Self.rssKiB(pid)
                var fds: [Int32] = []
                let peak = Self.peakRSS(pid) { fds = body() }
                for fd in fds { close(fd) }
                var after = Self.rssKiB(pid)
                for _ in 0..<50 where after > before + 20 << 10 {
                    usleep(100_000)
                    after = Self.rssKiB(pid)
                }
                lines.append((name, before, peak, after))
            }
            // 1. DATA_CHECK amplification: an IROB with 32,768 holes, then 32 KiB of DATA_CHECK
            //    frames naming it, and the answers never read.
            measure("DATA_CHECK (32 KiB naming an IROB with 32,768 holes)") {
                guard let fd = Self.attach(port, from: "127.0.0.31") else { return [] }
                var b = Frame.beginIROB(BeginIROB(id: IROBID(1), labels: .none, length: 1 << 20, dependencies: .explicit([]))).encoded()
                for i in 0..<32_768 { b += Frame.data(DataChunk(id: IROBID(1), offset: UInt32(2 * i), bytes: [1])).encoded() }
                let check = Frame.dataCheck(ids: [IROBID](repeating: IROBID(1), count: Wire.maxListEntries)).encoded()
                while b.count < (32 << 10) + 32_768 * 18 { b += check }
                _ = Self.push(fd, b)
                return [fd]
            }
            // 2. Four million PINGs, the PONGs never read.
            measure("4M PINGs, PONGs unread") {
                guard let fd = Self.attach(port, from: "127.0.0.32") else { return [] }
                let ping = Frame.ping(nonce: 7).encoded()
                var chunk: [UInt8] = []
                for _ in 0..<65_536 { chunk += ping }
                for _ in 0..<64 { if Self.push(fd, chunk) < chunk.count { break } }
                return [fd]
            }
            // 3. 200 connections (sessions from four addresses) each holding a partial 1 MiB frame.
            measure("200 partial 1 MiB DATA frames") {
                var fds: [Int32] = []
                let header = Frame.data(DataChunk(id: IROBID(1), offset: 0, bytes: [UInt8](repeating: 0, count: Wire.maxDataPayload))).encoded()
                let partial = Array(header.prefix(header.count - 1))
                for i in 0..<200 {
                    guard let fd = Self.attach(port, from: "127.0.0.\(40 + i % 4)") else { continue }
                    _ = Self.push(fd, Frame.beginIROB(BeginIROB(id: IROBID(1), labels: .none, length: UInt32(Wire.maxDataPayload), dependencies: .explicit([]))).encoded())
                    _ = Self.push(fd, partial)
                    fds.append(fd)
                }
                return fds
            }
            return lines
        }
        for l in report {
            print("memory probe: \(l.name): server RSS \(l.before >> 10) MiB before, \(l.peak >> 10) MiB peak, "
                  + "\(l.after >> 10) MiB after the attacker left (receive-memory cap \(capMiB) MiB)")
            // Above the baseline by at most the receive-memory cap (plus 32 MiB for the allocator
            // and the answers queued within their backlog bounds), and back near the baseline.
            #expect(l.peak - l.before <= (capMiB + 32) << 10, "\(l.name): +\((l.peak - l.before) >> 10) MiB")
            #expect(l.after - l.before <= 20 << 10, "\(l.name): still +\((l.after - l.before) >> 10) MiB after")
        }
        #expect(report.count == 3)
    }
}

final class PeakBox: @unchecked Sendable {
    private let lock = NSLock()
    private var v = 0
    func update(_ x: Int) { lock.lock(); v = max(v, x); lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return v }
}
