#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LinuxSupport
import Testing

/// Files and arguments handed to `intnw-lab` by someone hostile (the testbed runs as root): each
/// gives a clear one-line error or safe output, exits with status <= 2, runs no command and touches
/// no file outside the lab.
@Suite struct HostileFilesCLITests {
    static var lab: String { CLITests.lab }

    /// A fresh private directory for one test.
    static func scratch(_ name: String) throws -> String {
        let dir = NSTemporaryDirectory() + "hostile-\(getpid())-\(name)-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// `intnw-lab args` run in `cwd`, with at most `memoryKiB` of virtual memory when given (a peak
    /// RSS from wait4 would not do: a child spawned from this large test process inherits its
    /// high-water mark). Returns its status and stderr.
    static func run(_ args: [String], cwd: String, memoryKiB: Int? = nil) throws -> (status: Int32, stderr: String) {
        let errPath = cwd + "/.stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        // sh changes directory and execs the binary: the waited process is intnw-lab itself.
        let limit = memoryKiB.map { "ulimit -v \($0) && " } ?? ""
        let argv = (["/bin/sh", "-c", limit + "cd -- \"$1\" && shift && exec \"$@\"", "sh", cwd, lab] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, environ)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        var status: Int32 = 0
        if case .failure(let e) = Syscall.retrying({ waitpid(pid, &status, 0) }) { throw e }
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (code, err)
    }

    /// A classic little-endian pcap (LINKTYPE_RAW) of one-byte TCP segments at the given times:
    /// 24 + 57 bytes per packet (138 bytes for two).
    static func pcap(timestamps: [(sec: UInt32, usec: UInt32)]) -> [UInt8] {
        var b: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        u32(0xA1B2_C3D4); u16(2); u16(4); u32(0); u32(0); u32(65535); u32(101)
        for (i, ts) in timestamps.enumerated() {
            u32(ts.sec); u32(ts.usec); u32(41); u32(41)
            b += [0x45, 0, 0, 41, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 1, 2, 198, 19, 0, 1]
            let seq = UInt32(1000 + i)
            b += [0x9C, 0x40, 0x13, 0x88]
            b += [UInt8(seq >> 24), UInt8(seq >> 16 & 0xff), UInt8(seq >> 8 & 0xff), UInt8(seq & 0xff)]
            b += [0, 0, 0, 0, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]
            b += [UInt8(ascii: "x")]
        }
        return b
    }

    static func oneLine(_ text: String) -> Bool {
        text.split(separator: "\n").count == 1 && !text.contains("Fatal error") && !text.contains("Stack dump")
    }

    @Test("a pcap named like a gnuplot program renders as a label, never runs")
    func gnuplotLabelInjection() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/gnuplot"), "gnuplot is a DEB_PACKAGES dependency (make setup)")
        let dir = try Self.scratch("gnuplot")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The file name ends the quoted title, runs a shell command and comments out the rest.
        let name = "x'\nsystem \"id >F\"\n#`touch G`.pcap"
        try Data(Self.pcap(timestamps: [(1, 0), (2, 0)])).write(to: URL(fileURLWithPath: dir + "/" + name))
        let r = try Self.run(["analyze", "--plots", "gnuplot", "-o", "out", name], cwd: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/F"), "gnuplot ran the file name as a command")
        #expect(!FileManager.default.fileExists(atPath: dir + "/G"), "gnuplot ran a backquote substitution")
        let svg = try String(contentsOfFile: dir + "/out/plots/throughput_interfaces.svg", encoding: .utf8)
        #expect(svg.contains("system \"id >F\" #`touch G`") || svg.contains("system &quot;id &gt;F&quot; #`touch G`"),
                "the label is drawn as text (line breaks as spaces)")
    }

    @Test("a pcap spanning 1 s to 2^32-16 s is refused in one line, not by allocating terabytes")
    func timestampSpan() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let dir = try Self.scratch("span")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bytes = Self.pcap(timestamps: [(1, 0), (UInt32.max - 15, 0)])
        #expect(bytes.count == 138)
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/span.pcap"))
        let r = try Self.run(["analyze", "--plots", "builtin", "-o", "out", "span.pcap"], cwd: dir, memoryKiB: 1 << 20)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(Self.oneLine(r.stderr) && r.stderr.contains("span.pcap") && r.stderr.contains("bins"), "\(r.stderr)")
        // A normal span in the same file shape is analyzed.
        try Data(Self.pcap(timestamps: [(1, 0), (5, 0)])).write(to: URL(fileURLWithPath: dir + "/ok.pcap"))
        let ok = try Self.run(["analyze", "--plots", "builtin", "-o", "out2", "ok.pcap"], cwd: dir)
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    @Test("a 32 MiB trace of newlines is refused in one line within a 400 MB address space (was 1.35 GB RSS)")
    func newlineTrace() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let dir = try Self.scratch("newlines")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(repeating: UInt8(ascii: "\n"), count: 32 << 20).write(to: URL(fileURLWithPath: dir + "/n.trace"))
        // The whole-file parser peaked at 1.35 GB here and aborts under a 400 MB address-space
        // limit; streaming stays near the binary's own size.
        let r = try Self.run(["trace", "validate", "n.trace"], cwd: dir, memoryKiB: 400_000)
        #expect(r.status == 1)
        #expect(Self.oneLine(r.stderr) && r.stderr.contains("no slices"), "\(r.stderr)")
        // An over-long line is refused without buffering the file.
        try Data(repeating: UInt8(ascii: "1"), count: 8 << 20).write(to: URL(fileURLWithPath: dir + "/long.trace"))
        let long = try Self.run(["trace", "validate", "long.trace"], cwd: dir, memoryKiB: 400_000)
        #expect(long.status == 1 && Self.oneLine(long.stderr) && long.stderr.contains("long.trace:1:"), "\(long.stderr)")
    }

    @Test("every subcommand taking --prefix refuses a path before touching anything", arguments: [
        ["net", "down"], ["net", "status"], ["net", "up"], ["regress"],
    ])
    func prefixTraversal(_ command: [String]) throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let dir = try Self.scratch("prefix")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The victim: a file the traversal would reach from /run/intnw-lab/prefixes/ (and from the
        // state directory itself), relative to this test's private directory.
        let victim = dir + "/victim"
        try Data("keep".utf8).write(to: URL(fileURLWithPath: victim))
        let r = try Self.run(command + ["--prefix", "../../../../../..\(dir)/victim"], cwd: dir)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(Self.oneLine(r.stderr) && r.stderr.contains("--prefix"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: victim))
        #expect(!FileManager.default.fileExists(atPath: victim + ".json") && !FileManager.default.fileExists(atPath: victim + ".pid"))
    }
}
