import Testing
import Foundation
@testable import IntNW
#if canImport(Glibc)
import Glibc
import LinuxSupport
#endif

/// An IntNW "server" that answers HELLO and then acknowledges IROBs only when told to, so a test
/// decides how long another process's foreground data stays unacknowledged.
final class HoldingServer: @unchecked Sendable {
    let listenFD: Int32
    let port: UInt16
    private let lock = NSLock()
    private var completed = 0
    private var fds: [Int32] = []
    private var closed = false

    init() throws {
        listenFD = try Sockets.listen(on: IPv4Endpoint(address: IPv4Endpoint.parse("127.0.0.1")!, port: 0))
        // Blocking accept on our own thread.
        _ = fcntl(listenFD, F_SETFL, fcntl(listenFD, F_GETFL) & ~O_NONBLOCK)
        port = Sockets.localEndpoint(listenFD)!.port
        Thread { [self] in acceptLoop() }.start()
    }

    private func acceptLoop() {
        while true {
            guard case .success(let fd) = Syscall.retrying({ accept(listenFD, nil, nil) }) else { return }
            lock.lock()
            fds.append(fd)
            lock.unlock()
            Thread { [self] in serve(fd) }.start()
        }
    }

    private func serve(_ fd: Int32) {
        var decoder = FrameDecoder()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            decoder.feed(Array(buf[0..<n]))
            while let f = try? decoder.next() {
                switch f {
                case .hello(let h):
                    send(fd, .hello(Hello(role: .server, session: h.session, networkID: h.networkID,
                                          networkKind: h.networkKind, interfaceName: h.interfaceName)))
                case .auth(.keyShare):
                    // Completes the client's attach; this fake never checks a later join.
                    send(fd, AttachAuth.freshKeyShare())
                case .endIROB:
                    lock.lock()
                    completed += 1
                    lock.unlock()
                default:
                    break
                }
            }
        }
    }

    private func send(_ fd: Int32, _ f: Frame) {
        let b = f.encoded()
        _ = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// IROBs received completely so far (over every connection; ids repeat across sessions).
    var completedCount: Int { lock.lock(); defer { lock.unlock() }; return completed }

    /// Acknowledges IROB `id` on every connection.
    func acknowledge(_ id: UInt64) {
        lock.lock()
        let all = fds
        lock.unlock()
        for fd in all { send(fd, .ack(Ack(cumulative: 0, entries: [AckEntry(id: IROBID(id), holdMicroseconds: 0)]))) }
    }

    func close() {
        lock.lock()
        let all = fds
        fds.removeAll()
        lock.unlock()
        shutdown(listenFD, Int32(SHUT_RDWR))
        Glibc.close(listenFD)
        for fd in all {
            shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
        }
    }
}

/// A child process running `intnw-sched-probe`, with its stdout lines collected.
final class Probe: @unchecked Sendable {
    let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let lock = NSLock()
    private var lines: [String] = []

    /// The probe binary next to the test bundle (both are in the build directory).
    static var binary: String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [dir.appendingPathComponent("intnw-sched-probe").path,
                          URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                            .deletingLastPathComponent().appendingPathComponent(".build/debug/intnw-sched-probe").path]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    init(_ arguments: [String], wrapper: [String] = []) throws {
        if wrapper.isEmpty {
            process.executableURL = URL(fileURLWithPath: Probe.binary)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: wrapper[0])
            process.arguments = Array(wrapper.dropFirst()) + [Probe.binary] + arguments
        }
        process.standardInput = stdinPipe
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
                    let line = String(pending[..<nl])
                    pending = String(pending[pending.index(after: nl)...])
                    lock.lock()
                    lines.append(line)
                    lock.unlock()
                }
            }
        }.start()
    }

    var output: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    /// Waits until a line equal to `line` appeared; false on timeout.
    func waitFor(_ line: String, timeoutSeconds: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if output.contains(line) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return output.contains(line)
    }

    /// Lets the probe finish (closes its stdin).
    func finish() {
        try? stdinPipe.fileHandleForWriting.close()
    }

    func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
    }
}

/// Polls `cond` every 10 ms for up to `seconds`.
func eventually(_ seconds: Double, _ cond: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if cond() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return cond()
}

@Suite("Multi-app enforcement across processes", .serialized)
struct MultiProcessSchedulingTests {
    /// A loopback "interface" name of our own, so other tests' traffic never touches our slot.
    static let interface = "lo-isc"

    /// The parent's BG side: a listener and a multisocket whose policy always sends, except for
    /// what the multi-app barrier forbids.
    static func backgroundSide(segment: String) async throws -> (MultiSocketListener, MultiSocket, MultiSocket) {
        let listener = try MultiSocketListener(port: 0, address: "127.0.0.1")
        var o = MultiSocketOptions(staticNetworks: [LocalNetwork(networkID: 1, kind: .cellular, interfaceName: interface,
                                                                 address: IPv4Endpoint.parse("127.0.0.1")!)],
                                   connectTimeoutSeconds: 5, backgroundPolicy: ExclusiveBackgroundPolicy(excludedKinds: []))
        o.sharedSchedulingSegment = .named(segment)
        let client = try await MultiSocket.connect(to: "127.0.0.1", port: listener.localEndpoint.port, options: o)
        let server = try await listener.accept()
        return (listener, client, server)
    }

    static func receivedBackground(_ server: MultiSocket) -> UInt64 { server.networks.reduce(0) { $0 + $1.bytesReceived } }

    @Test("FG enqueued in another process holds BG here until it is ACKed; a killed FG process does not hold it forever")
    func acrossProcesses() async throws {
        let segment = uniqueSegmentName("procs")
        defer { SharedSegment.unlink(name: segment) }
        let holding = try HoldingServer()
        defer { holding.close() }
        let (listener, bg, server) = try await Self.backgroundSide(segment: segment)
        defer { listener.close() }
        let probeArgs = ["fg-hold", "--server", "127.0.0.1", "--port", "\(holding.port)", "--interface", Self.interface,
                         "--address", "127.0.0.1", "--segment", segment]

        // 1. The child's FG IROB reaches the holding server, which does not acknowledge it yet.
        let child = try Probe(probeArgs)
        defer { child.kill() }
        #expect(await child.waitFor("enqueued", timeoutSeconds: 10), "probe output: \(child.output)")
        #expect(await eventually(5) { holding.completedCount == 1 })
        try await bg.send([UInt8](repeating: 9, count: 32_768), labels: .background | .large, dependsOn: .none)
        try await Task.sleep(for: .milliseconds(600))
        #expect(Self.receivedBackground(server) == 0, "BG crossed while another process's FG was unacknowledged")
        let held = bg.backgroundStats.held(.foregroundElsewhere)
        #expect(held > 0)

        // 2. The ACK arrives: the child's count goes, BG flows.
        holding.acknowledge(1)
        #expect(await child.waitFor("acked", timeoutSeconds: 5))
        let m = try await server.receive()
        #expect(m.bytes.count == 32_768 && m.labels.isBackground)
        child.finish()
        child.process.waitUntilExit()
        #expect(child.process.terminationStatus == 0)

        // 3. Another FG process is killed while its FG is unacknowledged: BG resumes, the dead
        // process's contribution is reclaimed.
        let victim = try Probe(probeArgs)
        defer { victim.kill() }
        #expect(await victim.waitFor("enqueued", timeoutSeconds: 10), "probe output: \(victim.output)")
        #expect(await eventually(5) { holding.completedCount == 2 })
        let before = Self.receivedBackground(server)
        try await bg.send([UInt8](repeating: 8, count: 32_768), labels: .background | .large, dependsOn: .none)
        try await Task.sleep(for: .milliseconds(500))
        #expect(Self.receivedBackground(server) == before, "BG crossed while the second FG process was alive")
        victim.kill()
        // Liveness, not speed: a dead process's FG must not hold BG forever (the reclaim happens
        // at the next 10 ms re-check; 30 s only keeps a broken build from hanging the suite).
        let m2 = try await withThrowingTaskGroup(of: Message?.self) { group in
            group.addTask { try await server.receive() }
            group.addTask {
                try await Task.sleep(for: .seconds(30))
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            return first
        }
        #expect(m2?.bytes.count == 32_768, "BG still held 30 s after the FG process was killed")
        #expect(bg.backgroundStats.reclaimedProcesses >= 1)
        victim.process.waitUntilExit()
        await bg.close()
        await server.close()
    }
}
