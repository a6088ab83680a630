#if canImport(Glibc)
import Glibc
#endif
import Emulation
import Foundation
import IntNW
import Logging
import Testing

/// Issue 4 acceptance on the emulator: cellular only (64 KB/s up, 128 KB/s down, 200 ms RTT, WiFi
/// absent), a BG sender keeping four 256 KB chunks in flight and an FG sender of 128-byte requests
/// with small replies every 2 s (the multi-app design (docs/scheduling.md)'s test), in the three layouts of the note.
/// The layouts run one after the other on one testbed (`SharedSchedulingBed`), brought up once for the
/// suite: the trace is constant and every run closes its multisockets, server and probe before the next
/// starts. (Each layout's figures on the shared testbed matched those it gave
/// on a testbed of its own: anticipatory FG p95 207-246 ms against 207-270, BG 18-20% of the uplink
/// against 18-19%, permissive as before.)
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized, SharedSchedulingBed())
struct BackgroundSchedulingNetnsTests {
    static let uplinkBytesPerSecond = 64_000.0
    static let trace = Trace.constant(
        wifi: LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0),
        cellular: LinkConditions(downBytesPerSecond: 128_000, upBytesPerSecond: uplinkBytesPerSecond, rttMilliseconds: 200),
        durationSeconds: 600)

    enum Layout: String { case sameMultisocket = "same multisocket", twoMultisockets = "two multisockets", twoProcesses = "two processes" }

    /// What one run measured.
    struct Outcome: CustomStringConvertible, Sendable {
        var fgLatenciesMs: [Double]
        var bgBytes: UInt64
        var seconds: Double
        var bgStats: BackgroundSchedulingStats?
        /// BG bytes received and seconds elapsed from FG's start (t = 3 s) to the end of the run.
        var bgBytesWhileFG: UInt64 = 0
        var secondsWhileFG: Double = 1
        /// Nearest-rank percentile of the FG latencies after the first request (the first one
        /// meets whatever BG queued before any FG existed: the note expects it to be slow).
        func fg(_ p: Double) -> Double {
            let s = fgLatenciesMs.dropFirst().sorted()
            guard !s.isEmpty else { return .infinity }
            return s[min(s.count - 1, max(0, Int((Double(s.count) * p).rounded(.up)) - 1))]
        }
        var bgBytesPerSecond: Double { Double(bgBytes) / seconds }
        var bgBytesPerSecondWhileFG: Double { Double(bgBytesWhileFG) / secondsWhileFG }
        var description: String {
            String(format: "FG p50 %.0f ms p95 %.0f ms (n=%d, first %.0f ms), BG %.0f B/s (%.0f%% of uplink; %.0f B/s, %.0f%%, while FG ran)",
                   fg(0.5), fg(0.95), fgLatenciesMs.count, fgLatenciesMs.first ?? -1, bgBytesPerSecond,
                   100 * bgBytesPerSecond / BackgroundSchedulingNetnsTests.uplinkBytesPerSecond, bgBytesPerSecondWhileFG,
                   100 * bgBytesPerSecondWhileFG / BackgroundSchedulingNetnsTests.uplinkBytesPerSecond)
                + (bgStats.map { s in
                    ", holds " + s.holds.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: " ")
                        + String(format: ", policy saw RTT %.0f ms, bandwidth %.0f B/s (max %.0f)", s.lastRTTMilliseconds,
                                 s.lastBandwidthBytesPerSecond, s.maxBandwidthBytesPerSecond)
                } ?? "")
        }
    }

    // MARK: - Workload

    static let fgReply = [UInt8](repeating: 2, count: 64)
    static let bgAck = [UInt8](repeating: 3, count: 16)
    static let chunkBytes = 256 << 10

    /// Server side: answers every FG request with a 64-byte FG reply and every BG chunk with a
    /// 16-byte BG ack; the listener's sessions are kept so their byte counts can be read.
    final class Server: @unchecked Sendable {
        let listener: MultiSocketListener
        private let lock = NSLock()
        private var sessions: [MultiSocket] = []
        private var tasks: [Task<Void, Never>] = []
        private var acceptTask: Task<Void, Never>?

        init(bed: Testbed, port: UInt16) throws {
            var o = ListenerOptions()
            o.session.networkNamespacePath = "/var/run/netns/\(bed.topology.spec.serverNamespace)"
            o.session.backgroundPolicy = PermissiveBackgroundPolicy()
            o.session.logger = quiet()
            listener = try MultiSocketListener(port: port, address: bed.topology.spec.serviceAddress, options: o)
            let l = listener
            acceptTask = Task.detached { [self] in
                while let s = try? await l.accept() {
                    let t = Task.detached {
                        while let m = try? await s.receive() {
                            if m.labels.isForeground {
                                _ = try? await s.send(BackgroundSchedulingNetnsTests.fgReply, labels: .foreground | .small, dependsOn: .none)
                            } else {
                                _ = try? await s.send(BackgroundSchedulingNetnsTests.bgAck, labels: .background, dependsOn: .none)
                            }
                        }
                    }
                    lock.withLock {
                        sessions.append(s)
                        tasks.append(t)
                    }
                }
            }
        }

        /// Payload bytes received in background-carrying sessions (every session: the FG
        /// requests add 64 B/s at most).
        var bytesReceived: UInt64 {
            lock.withLock { sessions }.reduce(0) { $0 + $1.networks.reduce(0) { $0 + $1.bytesReceived } }
        }

        func close() async {
            listener.close()
            acceptTask?.cancel()
            let all = lock.withLock {
                let all = sessions
                sessions.removeAll()
                return all
            }
            for s in all { await s.close(timeoutSeconds: 0.1) }
        }
    }

    static func quiet() -> Logger {
        var l = Logger(label: "test.sched")
        l.logLevel = .warning
        return l
    }

    /// Client options: the cellular link as a static network, or with `watchAll` every link of the
    /// testbed through the network monitor (traces where WiFi comes and goes).
    static func clientOptions(_ bed: Testbed, policy: any BackgroundPolicy, watchAll: Bool = false) -> MultiSocketOptions {
        let spec = bed.topology.spec
        let cell = spec.link(named: "cellular")!
        var o = MultiSocketOptions(staticNetworks: [LocalNetwork(networkID: 2, kind: .cellular, interfaceName: cell.interface,
                                                                 address: IPv4Endpoint.parse(cell.clientAddress)!)],
                                   connectTimeoutSeconds: 10, backgroundPolicy: policy, logger: quiet())
        if watchAll {
            o.staticNetworks = nil
            o.interfaces = spec.links.map(\.interface)
            o.classifier = NetworkClassifier(explicit: Dictionary(uniqueKeysWithValues: spec.links.map {
                ($0.interface, $0.kind == .wifi ? NetworkKind.wifi : .cellular)
            }))
        }
        o.networkNamespacePath = "/var/run/netns/\(spec.clientNamespace)"
        return o
    }

    /// Routes what a client multisocket receives: FG replies to the FG sender, BG acks to the BG sender.
    final class Mux: @unchecked Sendable {
        let socket: MultiSocket
        let fgReplies: AsyncStream<Void>
        let bgAcks: AsyncStream<Void>
        private var task: Task<Void, Never>?

        init(_ socket: MultiSocket) {
            self.socket = socket
            var fgC: AsyncStream<Void>.Continuation!
            var bgC: AsyncStream<Void>.Continuation!
            fgReplies = AsyncStream { fgC = $0 }
            bgAcks = AsyncStream { bgC = $0 }
            let (f, b) = (fgC!, bgC!)
            task = Task.detached {
                while let m = try? await socket.receive() {
                    if m.labels.isForeground { f.yield() } else { b.yield() }
                }
                f.finish()
                b.finish()
            }
        }
    }

    /// Keeps `depth` chunks in flight (a chunk is in flight until its ack arrives) until cancelled.
    static func runBackground(_ mux: Mux, depth: Int = 4) async {
        let chunk = [UInt8](repeating: 5, count: chunkBytes)
        for _ in 0..<depth { _ = try? await mux.socket.send(chunk, labels: .background | .large, dependsOn: .none) }
        for await _ in mux.bgAcks {
            if Task.isCancelled { return }
            _ = try? await mux.socket.send(chunk, labels: .background | .large, dependsOn: .none)
        }
    }

    /// Sends `count` FG requests, one every `interval` seconds from `start`, each after the
    /// previous reply; returns their latencies in ms.
    static func runForeground(_ mux: Mux, count: Int, intervalSeconds: Double, startDelaySeconds: Double) async throws -> [Double] {
        let request = [UInt8](repeating: 1, count: 128)
        var it = mux.fgReplies.makeAsyncIterator()
        let t0 = Date().addingTimeInterval(startDelaySeconds)
        var out: [Double] = []
        for i in 0..<count {
            let due = t0.addingTimeInterval(Double(i) * intervalSeconds).timeIntervalSinceNow
            if due > 0 { try await Task.sleep(for: .milliseconds(Int(due * 1000))) }
            let s = DispatchTime.now().uptimeNanoseconds
            try await mux.socket.send(request, labels: .foreground | .small, dependsOn: .none)
            guard await it.next() != nil else { throw IntNWError.closed }
            out.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e6)
        }
        return out
    }

    /// FG alone: the baseline.
    static func baseline(_ bed: Testbed, port: UInt16, watchAll: Bool = false, count: Int = 8, intervalSeconds: Double = 1) async throws -> Outcome {
        let server = try Server(bed: bed, port: port)
        let fg = Mux(try await MultiSocket.connect(to: bed.topology.spec.serviceAddress, port: port,
                                                   options: clientOptions(bed, policy: PermissiveBackgroundPolicy(), watchAll: watchAll)))
        let lat = try await runForeground(fg, count: count, intervalSeconds: intervalSeconds, startDelaySeconds: 0.5)
        await fg.socket.close(timeoutSeconds: 0.5)
        await server.close()
        return Outcome(fgLatenciesMs: lat, bgBytes: 0, seconds: 1, bgStats: nil)
    }

    /// BG from t = 0, FG from t = 3 s, every 2 s for `seconds`, in `layout`, with `policy` on the
    /// BG side.
    static func run(_ bed: Testbed, layout: Layout, policy: BackgroundPolicyName, seconds: Double, port: UInt16,
                    instance: (any BackgroundPolicy)? = nil, watchAll: Bool = false) async throws -> Outcome {
        let server = try Server(bed: bed, port: port)
        let service = bed.topology.spec.serviceAddress
        let bg = Mux(try await MultiSocket.connect(to: service, port: port, options: clientOptions(bed, policy: instance ?? policy.makePolicy(), watchAll: watchAll)))
        let fgStart = 3.0
        let count = Int((seconds - fgStart) / 2)
        let started = Date()
        let before = server.bytesReceived
        // BG received by the time FG starts: the run's BG alone, which the whole-run rate includes.
        let atFG = Task.detached { () -> (bytes: UInt64, at: Date) in
            try? await Task.sleep(for: .milliseconds(Int(fgStart * 1000)))
            return (server.bytesReceived, Date())
        }
        let bgTask = Task.detached { await runBackground(bg) }
        var latencies: [Double] = []
        switch layout {
        case .sameMultisocket:
            latencies = try await runForeground(bg, count: count, intervalSeconds: 2, startDelaySeconds: fgStart)
        case .twoMultisockets:
            let fg = Mux(try await MultiSocket.connect(to: service, port: port, options: clientOptions(bed, policy: instance ?? policy.makePolicy(), watchAll: watchAll)))
            latencies = try await runForeground(fg, count: count, intervalSeconds: 2, startDelaySeconds: fgStart - Date().timeIntervalSince(started))
            await fg.socket.close(timeoutSeconds: 0.2)
        case .twoProcesses:
            let spec = bed.topology.spec
            let cell = spec.link(named: "cellular")!
            let delay = max(0, fgStart - Date().timeIntervalSince(started))
            try await Task.sleep(for: .milliseconds(Int(delay * 1000)))
            let probe = try NetnsProbe(["fg-loop", "--server", service, "--port", "\(port)", "--interface", cell.interface,
                                        "--address", cell.clientAddress, "--netns", "/var/run/netns/\(spec.clientNamespace)",
                                        "--interval", "2", "--duration", "\(Double(count) * 2 - 1)"]
                                       + (watchAll ? ["--interfaces", spec.links.map(\.interface).joined(separator: ",")] : []))
            defer { probe.kill() }
            #expect(await probe.waitFor("done", timeoutSeconds: Double(count) * 2 + 30), "probe: \(probe.output.suffix(3))")
            latencies = probe.output.compactMap { $0.hasPrefix("latency_ms ") ? Double($0.dropFirst(11)) : nil }
            probe.process.waitUntilExit()
        }
        let elapsed = Date().timeIntervalSince(started)
        let bgBytes = server.bytesReceived - before
        let fgStarted = await atFG.value
        let bgWhileFG = server.bytesReceived - fgStarted.bytes
        let secondsWhileFG = Date().timeIntervalSince(fgStarted.at)
        let stats = bg.socket.backgroundStats
        bgTask.cancel()
        await bg.socket.close(timeoutSeconds: 0.1)
        await server.close()
        return Outcome(fgLatenciesMs: latencies, bgBytes: bgBytes, seconds: elapsed, bgStats: stats,
                       bgBytesWhileFG: bgWhileFG, secondsWhileFG: secondsWhileFG)
    }

    /// FG alone is measured right before each layout's anticipatory run, so the 2x bound compares runs
    /// made under the same machine load (one baseline for all three, measured minutes earlier, let a
    /// load change in between decide a layout's verdict).
    static func check(_ layout: Layout, anticipatory a: Outcome, baseline b: Outcome) {
        print("[\(layout.rawValue)] FG alone: \(b)")
        print("[\(layout.rawValue)] anticipatory: \(a)")
        #expect(a.fgLatenciesMs.count >= 10, "\(layout.rawValue): only \(a.fgLatenciesMs.count) FG requests answered")
        #expect(a.fg(0.95) <= 2 * b.fg(0.95), "\(layout.rawValue): anticipatory FG p95 \(a.fg(0.95)) ms > 2 x FG alone \(b.fg(0.95)) ms")
        #expect(a.bgBytesPerSecond >= 0.1 * uplinkBytesPerSecond,
                "\(layout.rawValue): BG made \(Int(a.bgBytesPerSecond)) B/s, under 10% of the uplink")
        // BG keeps moving while FG runs. The whole-run rate above includes the 3 s of BG alone before FG
        // starts (up to 180 kB at 93% of the uplink, 9% of it averaged over 30 s), so on its own it
        // barely notices a BG that stops once FG starts. Measured while FG ran: 16% in every layout.
        #expect(a.bgBytesPerSecondWhileFG >= 0.05 * uplinkBytesPerSecond,
                "\(layout.rawValue): BG made \(Int(a.bgBytesPerSecondWhileFG)) B/s while FG ran, under 5% of the uplink")
        // The estimate the policy sized its chunks by is a rate the link can give: once it read
        // 175 kB/s on this 64 kB/s link (the smoothed RTT, swollen by BG's own queue, was subtracted
        // from IROB samples) and anticipatory's chunks put FG p95 at 2.6x.
        let seen = a.bgStats?.maxBandwidthBytesPerSecond ?? .infinity
        #expect(seen <= 1.1 * uplinkBytesPerSecond,
                "\(layout.rawValue): the policy's bandwidth estimate reached \(seen) B/s on a \(Int(uplinkBytesPerSecond)) B/s uplink")
    }

    /// Brings the testbed up on the first call, then hands out the same one; set for the suite by
    /// `SharedSchedulingBed`, which tears the testbed down after the suite's last test.
    actor Holder {
        private var bed: Testbed?
        @TaskLocal static var current: Holder?

        func get() async throws -> Testbed {
            if let bed { return bed }
            var config = Testbed.Configuration(trace: BackgroundSchedulingNetnsTests.trace)
            config.prefix = "tisc"
            config.notifyDelaySeconds = 0  // WiFi is absent from the start: the OS knows.
            var logger = Logger(label: "test.isc")
            logger.logLevel = .warning
            let up = try await Testbed.up(config, logger: logger)
            up.startReplay()
            bed = up
            return up
        }

        func tearDown() async {
            await bed?.down()
            bed = nil
        }
    }

    static func sharedBed() async throws -> Testbed {
        let holder = try #require(Holder.current, "the suite's testbed holder is missing (SharedSchedulingBed did not run)")
        return try await holder.get()
    }

    @Test("same multisocket: anticipatory keeps FG p95 within 2x of FG alone with BG progressing; permissive is at least 3x worse")
    func sameMultisocket() async throws {
        let bed = try await Self.sharedBed()
        let b = try await Self.baseline(bed, port: 6101)
        let a = try await Self.run(bed, layout: .sameMultisocket, policy: .anticipatory, seconds: 30, port: 6102)
        Self.check(.sameMultisocket, anticipatory: a, baseline: b)
        // Permissive FG requests queue behind the BG chunks in the multisocket's socket buffer (about
        // 256 KB, 4 s of the uplink), so each takes about 3.5 s against anticipatory's 0.2-0.3 s (measured
        // 3448 ms median, 12x). Four requests (11 s of grid; about 17 s at that latency, where 20 s of grid
        // took 30) are enough: p95 of the three after the first is their maximum, and fewer samples can
        // only make that maximum smaller, so the 3x bound is no easier to meet than with more.
        let p = try await Self.run(bed, layout: .sameMultisocket, policy: .permissive, seconds: 11, port: 6103)
        print("[same multisocket] permissive: \(p)")
        #expect(p.fg(0.95) >= 3 * a.fg(0.95), "permissive FG p95 \(p.fg(0.95)) ms is not 3x anticipatory's \(a.fg(0.95)) ms")
    }

    /// Permissive control run in `layout`. On separate connections FG meets BG only at the cellular
    /// bottleneck: permissive BG (no scheduling) keeps a standing queue there, which FG waits behind on
    /// every request (docs/scheduling.md measured +80-90 ms at the median, p95 only 1.3-1.5x
    /// anticipatory's), while anticipatory BG is idle when FG sends (median as FG alone). So the
    /// control requires what unscheduled BG must show: FG median at least 40 ms above anticipatory's,
    /// and BG at least 1.5x anticipatory's throughput (it may use the whole uplink). Catches a layout
    /// whose anticipatory result says nothing about the scheduler, e.g. BG not loading the link FG
    /// uses, or a policy choice that does not reach the BG multisocket or process.
    static func permissiveControl(_ bed: Testbed, _ layout: Layout, anticipatory a: Outcome, port: UInt16) async throws {
        let p = try await run(bed, layout: layout, policy: .permissive, seconds: 20, port: port)
        print("[\(layout.rawValue)] permissive: \(p)")
        #expect(p.fg(0.5) >= a.fg(0.5) + 40,
                "\(layout.rawValue): permissive FG median \(p.fg(0.5)) ms is not 40 ms above anticipatory's \(a.fg(0.5)) ms")
        #expect(p.bgBytesPerSecond >= 1.5 * a.bgBytesPerSecond,
                "\(layout.rawValue): permissive BG \(Int(p.bgBytesPerSecond)) B/s is not 1.5x anticipatory's \(Int(a.bgBytesPerSecond)) B/s")
    }

    @Test("two multisockets in one process: anticipatory keeps FG p95 within 2x of FG alone with BG progressing; permissive queues FG behind BG")
    func twoMultisockets() async throws {
        let bed = try await Self.sharedBed()
        let b = try await Self.baseline(bed, port: 6201)
        let a = try await Self.run(bed, layout: .twoMultisockets, policy: .anticipatory, seconds: 30, port: 6202)
        Self.check(.twoMultisockets, anticipatory: a, baseline: b)
        try await Self.permissiveControl(bed, .twoMultisockets, anticipatory: a, port: 6203)
    }

    @Test("delay-target's path probe: BG drains every 4 s (10 base RTTs of 200-202 ms, rounded up) and a PING then measures the path's RTT without a BG segment ahead of it")
    func pathProbe() async throws {
        let bed = try await Self.sharedBed()
        let server = try Server(bed: bed, port: 6401)
        // The default, 20 base RTTs, is 4.0-4.04 s here (the kernel's minimum RTT reads 200-202
        // ms), which rounds to a 4 s or an 8 s grid; 10 RTTs always gives 4 s.
        var parameters = DelayTargetBackgroundPolicy.Parameters()
        parameters.pathProbeRTTs = 10
        let bg = Mux(try await MultiSocket.connect(to: bed.topology.spec.serviceAddress, port: 6401,
                                                   options: Self.clientOptions(bed, policy: DelayTargetBackgroundPolicy(parameters: parameters))))
        let bgTask = Task.detached { await Self.runBackground(bg) }
        let seconds = 13.0
        try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
        let stats = bg.socket.backgroundStats
        let bytes = server.bytesReceived
        bgTask.cancel()
        await bg.socket.close(timeoutSeconds: 0.1)
        await server.close()
        let rate = Double(bytes) / seconds
        print("[path probe] pings \(stats.pathProbePings), samples \(stats.pathRTTSamples), timeouts \(stats.pathProbeTimeouts), "
              + "latest path RTT \(stats.pathRTTMilliseconds) ms, path-probe holds \(stats.held(.pathProbe)), BG \(Int(rate)) B/s")
        // 13 s on a 4 s grid, after the first decision's slot: at least two drains.
        #expect(stats.pathProbePings >= 2, "only \(stats.pathProbePings) path-probe PINGs in \(seconds) s")
        #expect(stats.pathRTTSamples >= 2, "only \(stats.pathRTTSamples) PONGs answered the path-probe PINGs")
        #expect(stats.held(.pathProbe) > 0, "no decision held BG for a drain")
        // The emulated path is 200 ms; the PING and PONG take about 2 ms to serialize. One full BG
        // segment ahead of the PING at the 64 KB/s bottleneck would add 22.6 ms: a reading above
        // 215 ms means the drain did not empty the queue.
        #expect(stats.pathRTTMilliseconds >= 195 && stats.pathRTTMilliseconds <= 215,
                "path RTT \(stats.pathRTTMilliseconds) ms on a 200 ms path")
        // The drains cost about one round trip in four seconds: BG still fills most of the uplink
        // (slow start included).
        #expect(rate >= 0.6 * Self.uplinkBytesPerSecond, "BG made \(Int(rate)) B/s, under 60% of the uplink")
    }

    @Test("two processes: anticipatory keeps FG p95 within 2x of FG alone with BG progressing; permissive queues FG behind BG")
    func twoProcesses() async throws {
        let bed = try await Self.sharedBed()
        let b = try await Self.baseline(bed, port: 6301)
        let a = try await Self.run(bed, layout: .twoProcesses, policy: .anticipatory, seconds: 30, port: 6302)
        Self.check(.twoProcesses, anticipatory: a, baseline: b)
        try await Self.permissiveControl(bed, .twoProcesses, anticipatory: a, port: 6303)
    }
}

/// Gives the scheduling suite one testbed, brought up by the first test that asks and torn down after
/// the suite's last test. Lazily: a run that filters the suite's tests out (phase 1 skips them) still
/// enters the suite's scope.
struct SharedSchedulingBed: SuiteTrait, TestScoping {
    var isRecursive: Bool { false }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let holder = BackgroundSchedulingNetnsTests.Holder()
        do {
            try await BackgroundSchedulingNetnsTests.Holder.$current.withValue(holder) { try await function() }
        } catch {
            await holder.tearDown()
            throw error
        }
        await holder.tearDown()
    }
}

/// `intnw-sched-probe` as a child process, its stdout lines collected.
final class NetnsProbe: @unchecked Sendable {
    let process = Process()
    private let stdoutPipe = Pipe()
    private let lock = NSLock()
    private var lines: [String] = []

    static var binary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [dir.appendingPathComponent("intnw-sched-probe").path,
                          URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                            .deletingLastPathComponent().appendingPathComponent(".build/debug/intnw-sched-probe").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: NetnsProbe.binary)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = stdoutPipe
        process.standardError = FileHandle.standardError
        try process.run()
        let handle = stdoutPipe.fileHandleForReading
        Thread { [self] in
            var pending = ""
            while true {
                let d = handle.availableData
                if d.isEmpty { return }
                pending += String(decoding: d, as: UTF8.self)
                while let nl = pending.firstIndex(of: "\n") {
                    lock.lock()
                    lines.append(String(pending[..<nl]))
                    lock.unlock()
                    pending = String(pending[pending.index(after: nl)...])
                }
            }
        }.start()
    }

    var output: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    func waitFor(_ line: String, timeoutSeconds: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if output.contains(line) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return output.contains(line)
    }

    func kill() { if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) } }
}
