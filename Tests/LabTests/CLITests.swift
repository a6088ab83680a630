import Foundation
import Testing

/// The built `intnw-lab` binary, run as a user would: bad input gives one line naming the problem and a
/// non-zero exit, never a crash or a stack trace.
struct CLITests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let lab = repo.appendingPathComponent(".build/debug/intnw-lab").path

    static func run(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: lab)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    static func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "cli-\(getpid())-\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    static let header = "# intnw-trace v1\n"
    static let good = "0.0 1250000 625000 35 48000 16000 220\n"

    @Test(arguments: [
        ("columns", header + good + "1.0 1 2 3\n", 3),
        ("text", header + good + "1.0 1250000 fast 35 48000 16000 220\n", 3),
        ("nan", header + good + "1.0 nan 625000 35 48000 16000 220\n", 3),
        ("negative", header + good + "1.0 1250000 625000 -35 48000 16000 220\n", 3),
        ("backwards", header + "5.0 1 1 1 1 1 1\n" + "3.0 1 1 1 1 1 1\n", 3),
    ])
    func malformedTraceNamesFileAndLine(name: String, text: String, line: Int) throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let path = try Self.write(name, Array(text.utf8))
        let r = try Self.run(["trace", "validate", path])
        #expect(r.status != 0)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line, got: \(r.stderr)")
        #expect(r.stderr.contains("\(path):\(line):"), "names file and line: \(r.stderr)")
        #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Stack dump"))
    }

    @Test func emptyAndBinaryFilesAreRejected() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        for (name, bytes) in [("empty", [UInt8]()), ("binary", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) })] {
            let path = try Self.write(name, bytes)
            let r = try Self.run(["trace", "validate", path])
            #expect(r.status != 0, "\(name) accepted")
            #expect(r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(path), "\(name): \(r.stderr)")
        }
    }

    @Test func shippedTracesValidate() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let traces = try FileManager.default.contentsOfDirectory(atPath: Self.repo.appendingPathComponent("traces").path)
            .filter { $0.hasSuffix(".trace") }.map { Self.repo.appendingPathComponent("traces/\($0)").path }
        #expect(traces.count >= 4)
        let r = try Self.run(["trace", "validate"] + traces)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.split(separator: "\n").count == traces.count)
    }

    @Test func wrongArgumentsExplainThemselves() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let r = try Self.run(["net", "up", "--prefix", "Bad-Prefix!"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--prefix"))
        let help = try Self.run(["net", "up", "--help"])
        #expect(help.stdout.contains("bytes/s") && help.stdout.contains("seconds"), "help explains units")
    }
}
