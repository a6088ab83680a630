#if canImport(Glibc)
import Glibc
#endif
import Emulation
import Foundation
import Lab
import Testing

/// `intnw-lab net up` killed at a bad moment leaves nothing behind once `net up` runs again or the
/// topology script reclaims; the shell script and the Swift code build the same topology.
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct LifecycleNetnsTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var lab: String { repo.appendingPathComponent(".build/debug/intnw-lab").path }

    static func namespaces(_ prefix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).filter { $0.hasPrefix("\(prefix)-") }
    }

    /// Interfaces named wifi0/cell0 in the root namespace or in any of the prefix's namespaces.
    static func devices(_ prefix: String) -> [String] {
        namespaces(prefix).flatMap { ns -> [String] in
            let out = (try? Self.capture(["ip", "-n", ns, "-o", "link"])) ?? ""
            return out.split(separator: "\n").compactMap { line in
                let name = line.split(separator: ":").dropFirst().first?.trimmingCharacters(in: .whitespaces)
                return name.flatMap { $0.hasPrefix("wifi0") || $0.hasPrefix("cell0") ? "\(ns)/\($0)" : nil }
            }
        }
    }

    static func capture(_ argv: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// Starts `net up` and waits until its topology exists.
    static func startNetUp(_ prefix: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: lab)
        p.arguments = ["net", "up", "--prefix", prefix, "--duration", "60"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if Topology.ownerPID(prefix: prefix) == p.processIdentifier && devices(prefix).count == 4 { return p }
            usleep(100_000)
        }
        p.terminate()
        throw NamespaceSocket.Failure(what: "net up --prefix \(prefix) did not come up within 20 s")
    }

    @Test("SIGINT: net up tears everything down itself")
    func sigint() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let p = try Self.startNetUp("tsig")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(Self.namespaces("tsig").isEmpty)
        #expect(Topology.ownerPID(prefix: "tsig") == nil)
    }

    @Test("SIGKILL: devices die with the process; the next net up reclaims the namespaces")
    func sigkill() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.lab), "build intnw-lab first (make test does)")
        let p = try Self.startNetUp("tkill")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        // TUN devices are not persistent: they vanish with the process's descriptors (awaited, up to 5 s,
        // instead of a fixed 200 ms sleep).
        let gone = Date().addingTimeInterval(5)
        while !Self.devices("tkill").isEmpty && Date() < gone { usleep(20_000) }
        #expect(Self.devices("tkill").isEmpty)
        #expect(Self.namespaces("tkill").count == 2, "namespaces stay until reclaimed")
        // The next run reclaims them and works.
        let again = try Self.startNetUp("tkill")
        kill(again.processIdentifier, SIGTERM)
        again.waitUntilExit()
        #expect(Self.namespaces("tkill").isEmpty)
        // And the script's teardown (what `make clean` runs per testbed) removes what a killed run left.
        // Only this prefix: other tests' testbeds run in parallel with this one.
        let third = try Self.startNetUp("tkill")
        kill(third.processIdentifier, SIGKILL)
        third.waitUntilExit()
        _ = try Self.capture(["bash", Self.repo.appendingPathComponent("netns-scripts/topology.sh").path, "down", "--prefix", "tkill"])
        #expect(Self.namespaces("tkill").isEmpty)
        let leftovers = try Self.capture(["pgrep", "-f", "net up --prefix tkill"])
        #expect(leftovers.isEmpty, "no process left: \(leftovers)")
    }

    @Test("topology.sh down kills only a pid file's emulator and removes exactly its namespaces' IntNW segments")
    func scriptChecksPidFileAndSegmentNames() throws {
        let script = Self.repo.appendingPathComponent("netns-scripts/topology.sh").path
        _ = try Self.capture(["bash", script, "up", "--prefix", "tpid", "--links", "none"])
        // A bystander whose pid the (stale or forged) pid file names.
        let bystander = Process()
        bystander.executableURL = URL(fileURLWithPath: "/bin/sleep")
        bystander.arguments = ["30"]
        try bystander.run()
        defer { if bystander.isRunning { bystander.terminate() } }
        let pidFile = "\(Topology.stateDirectory)/tpid.pid"
        try Data("\(bystander.processIdentifier)\n".utf8).write(to: URL(fileURLWithPath: pidFile))
        // IntNW's real segment name for the client namespace, and look-alikes that are not its own.
        var st = stat()
        try #require(stat("/run/netns/tpid-client", &st) == 0)
        let ino = UInt64(st.st_ino)
        let own = "/dev/shm/intnw-u\(getuid())-n\(ino)"
        let others = ["/dev/shm/intnw-u\(getuid())-n\(ino)7", "/dev/shm/intnw-u\(getuid())-n1\(ino)", "/dev/shm/intnw-x-n\(ino)"]
        for f in [own] + others { try Data([1]).write(to: URL(fileURLWithPath: f)) }
        defer { for f in others { unlink(f) } }
        _ = try Self.capture(["bash", script, "down", "--prefix", "tpid"])
        #expect(bystander.isRunning, "topology.sh killed a process that is not the emulator")
        #expect(access(pidFile, F_OK) != 0)
        #expect(access(own, F_OK) != 0, "the namespace's segment is left behind")
        for f in others { #expect(access(f, F_OK) == 0, "\(f) is not this namespace's segment") }
        #expect(Self.namespaces("tpid").isEmpty)
        // The Swift side agrees on both counts.
        #expect(Topology.isSegmentName("intnw-u0-n\(ino)", namespaceInode: ino))
        #expect(!Topology.isSegmentName("intnw-u0-n\(ino)7", namespaceInode: ino) && !Topology.isSegmentName("intnw-x-n\(ino)", namespaceInode: ino))
        try Data("\(bystander.processIdentifier)\n".utf8).write(to: URL(fileURLWithPath: pidFile))
        defer { unlink(pidFile) }
        #expect(Topology.ownerPID(prefix: "tpid") == nil, "sleep is not an IntNW Lab emulator")
        try Data("\(getpid()) 1\n".utf8).write(to: URL(fileURLWithPath: pidFile))
        #expect(Topology.ownerPID(prefix: "tpid") == nil, "a recorded start time that does not match is a reused pid")
        Topology.writeOwner(prefix: "tpid", pid: getpid())
        #expect(Topology.ownerPID(prefix: "tpid") == getpid())
    }

    /// Addresses, routes and rules of one namespace with the prefix's names normalised away.
    static func state(_ ns: String) throws -> String {
        let parts = [["ip", "-n", ns, "-4", "-o", "addr"], ["ip", "-n", ns, "route", "show", "table", "all"],
                     ["ip", "-n", ns, "rule"]]
        return try parts.map { try capture($0) }.joined()
            .split(separator: "\n")
            .map { $0.replacingOccurrences(of: #"^\d+:\s+"#, with: "", options: .regularExpression)
                     .replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression) }
            .filter { !$0.contains("fe80") && !$0.contains("table local") }
            .sorted().joined(separator: "\n")
    }

    @Test("netns-scripts/topology.sh and the Swift Topology build the same namespaces")
    func scriptMatchesSwift() async throws {
        let script = Self.repo.appendingPathComponent("netns-scripts/topology.sh").path
        _ = try Self.capture(["bash", script, "up", "--prefix", "tshell"])
        let swift = Topology(spec: TopologySpec(prefix: "tswift"))
        let logger = Logging.Logger(label: "test")
        do {
            try await swift.create(logger: logger)
            try await swift.createVeths()
            try await swift.configureLinks()
            for side in ["client", "server"] {
                let a = try Self.state("tshell-\(side)"), b = try Self.state("tswift-\(side)")
                #expect(!a.isEmpty)
                #expect(a == b, "\(side) differs:\nscript:\n\(a)\nswift:\n\(b)")
            }
        } catch {
            Issue.record(error)
        }
        await swift.destroy(logger: logger)
        _ = try Self.capture(["bash", script, "down", "--prefix", "tshell"])
        #expect(Self.namespaces("tshell").isEmpty && Self.namespaces("tswift").isEmpty)
    }
}

import Logging
