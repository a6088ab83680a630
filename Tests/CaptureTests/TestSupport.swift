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
    static let available: Bool = geteuid() == 0 && shell("ip netns list").status == 0
    /// Run the test body when namespaces work, or when they are required (so it fails loudly).
    static let shouldRun = available || required
}

/// A fresh temporary directory, removed by the caller.
func makeTempDir(_ tag: String) -> String {
    let path = NSTemporaryDirectory() + "ian-\(tag)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
