#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import ToyProtocol
@testable import ToyApps

/// The built `intnw-app` binary over loopback, run as the harness runs it: signals, exit statuses,
/// one-line errors. (The namespace version is in NetnsTests/AppsNetnsTests.swift.)
@Suite("intnw-app command line", .serialized)
struct CLITests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let app = repo.appendingPathComponent(".build/debug/intnw-app").path

    final class Running: @unchecked Sendable {
        let process = Process()
        let stderrPipe = Pipe()
        init(_ args: [String]) throws {
            process.executableURL = URL(fileURLWithPath: CLITests.app)
            process.arguments = args
            process.standardOutput = FileHandle.nullDevice
            process.standardError = stderrPipe
            try process.run()
        }
        /// Waits for exit (killing it after `timeoutSeconds`) and returns status and stderr.
        func finish(timeoutSeconds: Double = 10) -> (status: Int32, stderr: String) {
            let err = stderrPipe.fileHandleForReading.readDataToEndOfFile()
            let deadline = Date().addingTimeInterval(timeoutSeconds)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: err, as: UTF8.self))
        }
    }

    /// A loopback port nobody listens on right now.
    static func freePort() throws -> UInt16 {
        let l = try PlainTCPTransport().listen(address: "127.0.0.1", port: 0)
        defer { l.close() }
        return l.port
    }

    static func lines(_ path: String) -> [[String: Any]] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test("SIGTERM and SIGINT stop server and clients cleanly: exit 0, summary line, every request answered")
    func cleanShutdown() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.app), "build intnw-app first: swift build --product intnw-app")
        let port = String(try Self.freePort())
        let dir = NSTemporaryDirectory() + "toyapps-cli-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let results = try await onThread { () -> [(Int32, String)] in
            let server = try Running(["server", "--variant", "plain", "--address", "127.0.0.1", "--port", port,
                                      "--log", "\(dir)/server.jsonl"])
            let client = try Running(["fg-bg-client", "--variant", "plain", "--server", "127.0.0.1", "--port", port,
                                      "--interval", "0.05", "--chunk-bytes", "65536", "--log", "\(dir)/client.jsonl"])
            Thread.sleep(forTimeInterval: 1.5)
            client.process.terminate()
            let c = client.finish()
            server.process.interrupt()
            let s = server.finish()
            return [c, s]
        }
        let (clientStatus, clientErr) = results[0], (serverStatus, serverErr) = results[1]
        #expect(clientStatus == 0, "client: \(clientErr)")
        #expect(serverStatus == 0, "server: \(serverErr)")
        #expect(clientErr.contains("summary: fg-bg-client (plain) stopped by SIGTERM"), "\(clientErr)")
        #expect(serverErr.contains("summary: server (plain) stopped by SIGINT"), "\(serverErr)")
        let log = Self.lines("\(dir)/client.jsonl")
        let answered = log.filter { $0["type"] as? String == "fg" }.count
        #expect(answered >= 10)
        let fgSummary = try #require(log.first { $0["type"] as? String == "summary" && $0["role"] as? String == "fg" })
        #expect((fgSummary["requests_sent"] as? NSNumber)?.intValue == answered)
        #expect((fgSummary["requests_answered"] as? NSNumber)?.intValue == answered)
        let bgSummary = try #require(log.first { $0["type"] as? String == "summary" && $0["role"] as? String == "bg" })
        // BG progress. Catches: a BG client that stalls (loopback moves well over 100 MB/s, so 1.5 s must
        // see at least 16 chunks = 1 MiB even on a loaded machine; the old check was "> 0 bytes") and
        // byte counts that disagree with the chunks logged.
        let chunkLines = log.filter { $0["type"] as? String == "bg_chunk" }.count
        let acked = (bgSummary["chunks_acked"] as? NSNumber)?.intValue ?? -1
        #expect(acked == chunkLines, "summary says \(acked) chunks acked, the log has \(chunkLines)")
        #expect((bgSummary["bytes_acked"] as? NSNumber)?.intValue == acked * 65_536)
        #expect(acked >= 16, "only \(acked) chunks of 64 KiB acknowledged in 1.5 s over loopback")
        #expect(Self.lines("\(dir)/server.jsonl").contains { $0["type"] as? String == "summary" })
    }

    @Test("--duration ends a client by itself with exit 0")
    func duration() async throws {
        let port = String(try Self.freePort())
        let (server, client, elapsed) = try await onThread { () -> ((Int32, String), (Int32, String), Double) in
            let server = try Running(["server", "--variant", "plain", "--address", "127.0.0.1", "--port", port, "--duration", "3"])
            let start = Date()
            let client = try Running(["fg-client", "--variant", "plain", "--server", "127.0.0.1", "--port", port,
                                      "--interval", "0.1", "--start-delay", "0.2", "--duration", "0.8"])
            let c = client.finish()
            let elapsed = Date().timeIntervalSince(start)
            return (server.finish(), c, elapsed)
        }
        #expect(elapsed >= 1.0 && elapsed < 5, "client ran \(elapsed) s (0.2 s delay + 0.8 s duration)")
        #expect(client.0 == 0, "\(client.1)")
        #expect(client.1.contains("fg-client (plain) ran for"))
        #expect(server.0 == 0, "\(server.1)")
    }

    @Test("connection refused: one error line, a summary, exit 1")
    func refused() async throws {
        let port = String(try Self.freePort())
        let (status, err) = try await onThread {
            try Running(["fg-client", "--variant", "plain", "--server", "127.0.0.1", "--port", port, "--connect-timeout", "0.3"]).finish()
        }
        #expect(status == 1)
        let lines = err.split(separator: "\n")
        #expect(lines.count == 2, "\(err)")
        #expect(lines.first == "intnw-app: error: cannot connect to 127.0.0.1:\(port): Connection refused (gave up after 0.3 s)")
        #expect(lines.last?.hasSuffix("no app ran") == true)
    }

    @Test("bad arguments and unwritable logs: a clear message, non-zero exit, no crash")
    func badInput() async throws {
        let cases: [([String], Int32, String)] = [
            (["fg-client", "--variant", "tcp"], 64, "'tcp' is invalid for '--variant"),
            (["fg-client", "--variant", "plain", "--interval", "0"], 64, "--interval must be between"),
            (["fg-client", "--variant", "plain", "--interval=-1"], 64, "--interval must be between"),
            (["bg-client", "--variant", "plain", "--chunk-bytes", "10"], 64, "--chunk-bytes must be between 24"),
            (["fg-client", "--variant", "plain", "--app-id", "-3"], 64, "--app-id"),
            (["server", "--variant", "plain", "--port", "70000"], 64, "--port"),
            (["server", "--variant", "plain", "--bg-policy", "greedy"], 64, "--bg-policy 'greedy' is not one of"),
            (["fg-client", "--variant", "plain", "--log", "/nonexistent-dir/x.jsonl"], 1, "cannot write log /nonexistent-dir/x.jsonl"),
        ]
        for (args, expected, text) in cases {
            let (status, err) = try await onThread { try Running(args).finish() }
            #expect(status == expected, "\(args): status \(status), \(err)")
            #expect(err.contains(text), "\(args): \(err)")
            #expect(!err.contains("Fatal error") && !err.contains("Stack dump"), "\(args): \(err)")
        }
    }
}
