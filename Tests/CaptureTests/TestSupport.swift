import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a shell command; returns exit status, stdout and stderr.
@discardableResult
func shell(_ command: String) -> (status: Int32, out: String, err: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-c", command]
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do { try p.run() } catch { return (-1, "", "\(error)") }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// Whether namespace tests can run here (root and a working `ip netns`). With
/// INTNW_REQUIRE_NETNS=1 a missing capability must fail the test, not skip it.
enum NetnsGate {
    static let required = ProcessInfo.processInfo.environment["INTNW_REQUIRE_NETNS"] == "1"
    /// INTNW_TEST_NO_NETNS=1 pretends namespaces are unavailable (to test this gate).
    static let available: Bool = ProcessInfo.processInfo.environment["INTNW_TEST_NO_NETNS"] != "1"
        && geteuid() == 0 && shell("ip netns list").status == 0
    /// Run the test body when namespaces work, or when they are required (so it fails loudly).
    static let shouldRun = available || required
}

/// External tools the tests cross-check against (tcpdump, tshark). Under CI (CI=true, or
/// INTNW_REQUIRE_NETNS=1 as `make test` sets it) a missing tool is a failure, not a silent pass:
/// `make setup` installs them.
enum ToolGate {
    static let ci = ProcessInfo.processInfo.environment["CI"] == "true"
        || ProcessInfo.processInfo.environment["INTNW_REQUIRE_NETNS"] == "1"
    static func installed(_ tool: String) -> Bool { shell("command -v \(tool)").status == 0 }
    /// Whether a test needing `tool` should run (always under CI, so that it fails there).
    static func shouldRun(_ tool: String) -> Bool { ci || installed(tool) }
}

/// A fresh temporary directory, removed by the caller.
func makeTempDir(_ tag: String) -> String {
    let path = NSTemporaryDirectory() + "ian-\(tag)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
