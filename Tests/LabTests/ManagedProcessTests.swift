import Foundation
@testable import Lab
import Testing

struct ManagedProcessTests {
    func tmp(_ name: String) -> String { NSTemporaryDirectory() + "mp-\(getpid())-\(name)" }

    @Test func stopTerminatesALongRunningProgram() async throws {
        let p = try ManagedProcess(name: "sleeper", namespace: nil, argv: ["sleep", "30"],
                                   stdoutPath: tmp("out"), stderrPath: tmp("err"))
        try await Task.sleep(for: .milliseconds(200))
        #expect(!p.hasEnded)
        let status = await p.stop()
        #expect(status != nil)
        // `sleep 30` left alone would exit 0: a failed status means the stop signal ended it.
        #expect(status?.isSuccess == false, "killed by a signal, not a clean exit")
    }

    @Test func noticesAProgramThatExitsByItself() async throws {
        let p = try ManagedProcess(name: "echo", namespace: nil, argv: ["sh", "-c", "echo hello; echo oops >&2; exit 3"],
                                   stdoutPath: tmp("out2"), stderrPath: tmp("err2"))
        let status = await p.wait()
        #expect(status?.isSuccess == false)
        #expect(p.hasEnded)
        #expect(try String(contentsOfFile: tmp("out2"), encoding: .utf8) == "hello\n")
        #expect(try String(contentsOfFile: tmp("err2"), encoding: .utf8) == "oops\n")
    }

    @Test func reportsAProgramThatCannotStart() async throws {
        let p = try ManagedProcess(name: "nope", namespace: nil, argv: ["/nonexistent/program"],
                                   stdoutPath: tmp("out3"), stderrPath: tmp("err3"))
        await p.wait()
        #expect(p.startError != nil)
    }

    @Test func runDirectoryIsUniqueAndLinkedAsLatest() throws {
        let root = NSTemporaryDirectory() + "runs-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let a = try RunDirectory.create(experiment: "x", root: root, now: now)
        let b = try RunDirectory.create(experiment: "x", root: root, now: now)
        #expect(a.path != b.path)
        #expect(a.path.hasSuffix("x/20270115T080000Z"))
        let latest = try FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/x/latest")
        #expect(latest == (b.path as NSString).lastPathComponent)
    }
}
