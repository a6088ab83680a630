import Emulation
import Foundation
import Lab
import Subprocess
import Testing

/// `intnw-app` in the emulated testbed: a server in the server namespace, an FG client, a BG client
/// and a combined FG+BG client (one shared multisocket/connection) in the client namespace, for
/// several seconds, stopped with SIGTERM. Checked from the apps' own logs: every request answered,
/// latencies plausible for the trace's RTT, BG bytes acknowledged, clean exits with summaries.
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct AppsNetnsTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var app: String { repo.appendingPathComponent(".build/debug/intnw-app").path }

    static let wifi = LinkConditions(downBytesPerSecond: 1_250_000, upBytesPerSecond: 625_000, rttMilliseconds: 20)
    static let trace = Trace.constant(
        wifi: wifi,
        cellular: LinkConditions(downBytesPerSecond: 125_000, upBytesPerSecond: 62_500, rttMilliseconds: 100),
        durationSeconds: 120)

    /// Parsed JSON lines of one log file.
    static func lines(_ path: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func number(_ o: [String: Any], _ k: String) -> Double? { (o[k] as? NSNumber)?.doubleValue }

    static func summary(_ lines: [[String: Any]], app: Int) -> [String: Any]? {
        lines.first { $0["type"] as? String == "summary" && number($0, "app") == Double(app) }
    }

    /// Checks one FG app's log lines; returns its latencies in ms.
    static func checkFG(_ lines: [[String: Any]], app: Int, minRequests: Int, maxUnanswered: Int, variant: String,
                        file: String) -> [Double] {
        let fg = lines.filter { $0["type"] as? String == "fg" && number($0, "app") == Double(app) }
        #expect(fg.count >= minRequests, "\(file): only \(fg.count) answered requests")
        #expect(fg.compactMap { number($0, "seq").map(Int.init) } == Array(0 ..< fg.count), "\(file): sequence numbers")
        #expect(fg.allSatisfy { $0["variant"] as? String == variant })
        let unanswered = lines.filter { $0["type"] as? String == "fg_unanswered" && number($0, "app") == Double(app) }.count
        #expect(unanswered <= maxUnanswered, "\(file): \(unanswered) requests unanswered at shutdown")
        if let s = summary(lines, app: app) {
            #expect(number(s, "requests_answered") == Double(fg.count))
            #expect(number(s, "requests_sent") == Double(fg.count + unanswered))
        } else {
            Issue.record("\(file): no summary line for app \(app)")
        }
        return fg.compactMap { number($0, "latency_ms") }
    }

    /// Checks one BG app's log lines; returns the bytes it had acknowledged (consistent with its chunks).
    static func checkBG(_ lines: [[String: Any]], app: Int, chunkBytes: Int, file: String) -> Double {
        let chunks = lines.filter { $0["type"] as? String == "bg_chunk" && number($0, "app") == Double(app) }
        #expect(!chunks.isEmpty, "\(file): no BG chunk acknowledged")
        #expect(lines.contains { $0["type"] as? String == "bg_progress" && number($0, "app") == Double(app) })
        if let s = summary(lines, app: app) {
            #expect(number(s, "chunks_acked") == Double(chunks.count))
            #expect(number(s, "bytes_acked") == Double(chunks.count * chunkBytes), "\(file): bytes acked vs chunks")
        } else {
            Issue.record("\(file): no summary line for app \(app)")
        }
        return Double(chunks.count * chunkBytes)
    }

    func run(variant: String, prefix: String) async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.app), "build intnw-app first: swift build --product intnw-app")
        let dir = NSTemporaryDirectory() + "\(prefix)-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        var config = Testbed.Configuration(trace: Self.trace)
        config.prefix = prefix
        try await withTestbed(config) { bed in
            let spec = bed.topology.spec
            var processes: [ManagedProcess] = []
            func launch(_ name: String, _ ns: String, _ args: [String]) throws -> ManagedProcess {
                // The clients drain for up to 3 s after SIGTERM (--drain 3): allow well beyond that
                // before the stop turns into SIGKILL.
                let p = try ManagedProcess(name: name, namespace: ns, argv: [Self.app] + args,
                                           stdoutPath: "\(dir)/\(name).out", stderrPath: "\(dir)/\(name).err",
                                           gracePeriod: .seconds(15))
                processes.append(p)
                return p
            }
            do {
                let server = try launch("server", spec.serverNamespace, ["server", "--variant", variant, "--log", "\(dir)/server.jsonl"])
                bed.startReplay()
                let common = ["--variant", variant, "--server", spec.serviceAddress, "--drain", "3"]
                let clients = [
                    try launch("fg", spec.clientNamespace, ["fg-client"] + common + ["--app-id", "1", "--interval", "0.2", "--log", "\(dir)/fg.jsonl"]),
                    try launch("bg", spec.clientNamespace, ["bg-client"] + common + ["--app-id", "2", "--chunk-bytes", "65536",
                                                                                        "--log", "\(dir)/bg.jsonl"]),
                    try launch("fgbg", spec.clientNamespace, ["fg-bg-client"] + common + ["--app-id", "3", "--share-multisocket",
                                                                                             "--interval", "0.25", "--chunk-bytes", "65536",
                                                                                             "--depth", "2", "--log", "\(dir)/fgbg.jsonl"]),
                ]
                try await Task.sleep(for: .seconds(8))
                for p in processes where p.hasEnded {
                    let err = (try? String(contentsOfFile: "\(dir)/\(p.name).err", encoding: .utf8)) ?? ""
                    Issue.record("\(p.name) ended early (\(String(describing: p.exitStatus)), \(p.startError ?? "")): \(err)")
                }
                // SIGTERM: each client drains, logs its summary and exits 0.
                for c in clients {
                    let status = await c.stop()
                    #expect(status == .exited(0), "\(c.name) exit status \(String(describing: status))")
                }
                let serverStatus = await server.stop()
                #expect(serverStatus == .exited(0), "server exit status \(String(describing: serverStatus))")
                processes.removeAll()
            } catch {
                for p in processes { await p.stop() }
                throw error
            }
        }

        for name in ["fg", "bg", "fgbg", "server"] {
            let err = (try? String(contentsOfFile: "\(dir)/\(name).err", encoding: .utf8)) ?? ""
            #expect(err.contains("intnw-app: summary: "), "\(name) stderr: \(err)")
            // The summaries are the run's numbers at a glance in the test log.
            for line in err.split(separator: "\n") where line.contains("summary:") { print("[\(variant)] \(line)") }
            #expect(!err.contains("error:"), "\(name) stderr: \(err)")
        }
        let fg = Self.lines("\(dir)/fg.jsonl"), bg = Self.lines("\(dir)/bg.jsonl"), fgbg = Self.lines("\(dir)/fgbg.jsonl")
        // 8 s at one request per 0.2 s: allow for connecting and a loaded machine.
        let latencies = Self.checkFG(fg, app: 1, minRequests: 20, maxUnanswered: 0, variant: variant, file: "fg.jsonl")
        let rtt = Self.wifi.rttMilliseconds
        if let lo = latencies.min() { #expect(lo >= rtt - 1, "fastest request \(lo) ms beats the \(rtt) ms RTT") }
        let sorted = latencies.sorted()
        // FG median <= RTT + the queues it can wait in. The BG apps keep the WiFi bottleneck queues full;
        // the userspace shaper's drop-tail limit is max(1.5 BDP, 64 KiB) per direction: 64 KiB is
        // 105 ms at 625 kB/s up and 52 ms at 1.25 MB/s down. Plus 50 ms for a loaded 2-core machine.
        // Catches FG requests stuck behind BG beyond the bottleneck queue (the old bound was 1000 ms).
        let queueBoundMs = 65_536 / Self.wifi.upBytesPerSecond * 1000 + 65_536 / Self.wifi.downBytesPerSecond * 1000
        let medianBound = rtt + queueBoundMs + 50
        let median = sorted.isEmpty ? .infinity : sorted[sorted.count / 2]
        print("[\(variant)] FG median \(median) ms (bound \(medianBound) ms), \(sorted.count) answered")
        #expect(median <= medianBound, "median FG latency \(median) ms > RTT \(rtt) + queues \(queueBoundMs) + 50 ms")
        let bgBytes = Self.checkBG(bg, app: 2, chunkBytes: 65_536, file: "bg.jsonl")
        // Shared connection: FG requests may queue behind BG chunks (at most --depth 2 chunks of 64 KiB,
        // 210 ms at 625 kB/s, plus the bottleneck queues), so each takes at most about 0.5 s: 8 s
        // yields well over a third of the 32 requests of the 0.25 s grid. The old floor was 5.
        let shared = Self.checkFG(fgbg, app: 3, minRequests: 12, maxUnanswered: 1, variant: variant, file: "fgbg.jsonl")
        print("[\(variant)] shared-connection FG: \(shared.count) answered")
        if let lo = shared.min() { #expect(lo >= rtt - 1) }
        let sharedBG = Self.checkBG(fgbg, app: 4, chunkBytes: 65_536, file: "fgbg.jsonl")
        // BG progress: the two BG apps fill the WiFi uplink, so over the 8 s run they must have moved at
        // least 40% of its capacity (625 kB/s × 8 s = 5 MB; connecting and draining take some of the run),
        // and neither may starve (each >= 5%: under IntNW the separate BG app is held while the FG apps
        // are active, by design; measured about 12% of the capacity for it, 64-76% combined). Catches a
        // stalled or throttled-to-nothing BG (the old check was one chunk / bytes_acked > 0).
        let capacity = Self.wifi.upBytesPerSecond * 8
        print("[\(variant)] BG acked: bg \(Int(bgBytes)) B, shared \(Int(sharedBG)) B of \(Int(capacity)) B WiFi uplink capacity")
        #expect(bgBytes + sharedBG >= 0.4 * capacity, "BG moved \(Int(bgBytes + sharedBG)) B of \(Int(capacity)) B")
        #expect(bgBytes >= 0.05 * capacity && sharedBG >= 0.05 * capacity, "a BG app starved: \(Int(bgBytes)) B, \(Int(sharedBG)) B")

        // The server answered what the clients logged.
        let server = Self.lines("\(dir)/server.jsonl")
        let s = try #require(server.first { $0["type"] as? String == "summary" }, "no server summary")
        let answered = fg.filter { $0["type"] as? String == "fg" }.count + fgbg.filter { $0["type"] as? String == "fg" }.count
        #expect((Self.number(s, "fg_requests_answered") ?? 0) >= Double(answered))
        #expect(Self.number(s, "connections") == 3)
        #expect(Self.number(s, "connection_errors") == 0)
    }

    @Test("plain-TCP apps: server, FG, BG and a shared-connection FG+BG client in the testbed")
    func plain() async throws {
        try await run(variant: "plain", prefix: "tapp")
    }

    @Test("IntNW apps: server, FG, BG and a shared-multisocket FG+BG client in the testbed")
    func intnw() async throws {
        try await run(variant: "intnw", prefix: "tapi")
    }
}
