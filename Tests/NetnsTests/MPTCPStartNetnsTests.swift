import Analysis
import Emulation
import Foundation
@testable import Lab
import Logging
import Testing

/// A trace window that starts without WiFi (the downtown drive at 600 s: WiFi out of range for its first
/// 38 s): the drive's Linux-MPTCP strategy must connect over cellular and open a WiFi subflow (MP_JOIN)
/// when WiFi comes back, as the in-kernel path manager does on a phone whose connection manager adds
/// the WiFi address as an endpoint when WiFi connects.
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct MPTCPStartNetnsTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `tshark -T fields` rows of `pcap` matching `filter`.
    static func tshark(_ pcap: String, filter: String, fields: [String]) throws -> [[String]] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/tshark")
        p.arguments = ["-n", "-r", pcap, "-Y", filter, "-T", "fields"] + fields.flatMap { ["-e", $0] }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    @Test("mptcp-backup on a window starting without WiFi: connects over cellular, joins WiFi when it returns")
    func startsWithoutWiFi() async throws {
        guard MPTCPMode.kernelSupport == nil else { return }  // the drive skips MPTCP there too, with its reason
        let bin = Self.repo.appendingPathComponent(".build/debug").path
        try #require(FileManager.default.isExecutableFile(atPath: bin + "/intnw-app"), "build first (make test does)")
        let root = NSTemporaryDirectory() + "mptcp-start-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let run = try RunDirectory.create(experiment: "mptcp-start", root: root)
        let off = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)
        let wifi = LinkConditions(downBytesPerSecond: 1_250_000, upBytesPerSecond: 625_000, rttMilliseconds: 40)
        let cell = LinkConditions(downBytesPerSecond: 128_000, upBytesPerSecond: 64_000, rttMilliseconds: 200)
        let wifiBack = 8.0
        var trace = Trace(slices: [TraceSlice(startSeconds: 0, conditions: [off, cell]),
                                   TraceSlice(startSeconds: wifiBack, conditions: [wifi, cell])],
                          durationSeconds: 20, source: "WiFi absent for 8 s, then present")
        trace.source = "mptcp start test"
        // The drive's mptcp-backup trial, shortened (DriveExperiment.plans).
        var o = ExperimentOptions()
        o.prefix = "tmpst"
        let drivePlan = try #require(DriveExperiment().plans(o).first { $0.variant == "mptcp-backup" })
        var plan = TrialPlan(experiment: "mptcp-start", variant: "mptcp-backup", trial: 1, trace: trace, durationSeconds: 20,
                             apps: drivePlan.apps)
        plan.mptcp = drivePlan.mptcp
        plan.environment = drivePlan.environment
        plan.prefix = "tmpst"
        #expect(plan.mptcp == .backup && plan.environment["INTNW_PLAIN_MPTCP"] == "1")
        var logger = Logger(label: "test.mptcp-start")
        logger.logLevel = .warning
        let runner = TrialRunner(HarnessContext(binDirectory: bin, logger: logger, interruption: Interruption()))
        let outcome = try await runner.run(plan, in: run, retryingInvalid: ExperimentOptions.defaultRetryInvalid, progress: Progress(experiment: "mptcp-start", expectedSeconds: 30, quiet: true))
        let dir = outcome.directory
        #expect(outcome.problems.isEmpty, "\(outcome.problems); fg.err: \((try? String(contentsOfFile: "\(dir)/fg.err", encoding: .utf8)) ?? "-")")
        #expect(outcome.fidelity?.appFailures == nil && outcome.fidelity?.valid == true, "\(String(describing: outcome.fidelity))")

        let start = try ReplayStartRecord.read(from: dir)
        let startEpoch = Double(start.realtimeNs) / 1e9
        // The connection (MP_CAPABLE SYN answered) is made over cellular, while WiFi is still absent.
        let capable = try Self.tshark("\(dir)/client-cell0.pcap",
                                      filter: "tcp.flags.syn == 1 && tcp.flags.ack == 1 && tcp.options.mptcp.subtype == 0",
                                      fields: ["frame.time_epoch"])
        let firstCapable = try #require(capable.compactMap { Double($0[0]) }.min(), "no MP_CAPABLE SYN-ACK on cellular")
        #expect(firstCapable - startEpoch < wifiBack, "connected over cellular at \(firstCapable - startEpoch) s")
        // A WiFi subflow joins (MP_JOIN SYN from the client's WiFi address) after WiFi is back, and carries data.
        let joins = try Self.tshark("\(dir)/client-wifi0.pcap",
                                    filter: "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.options.mptcp.subtype == 1",
                                    fields: ["frame.time_epoch", "ip.src"])
        let joinTimes = joins.compactMap { Double($0[0]) }.map { $0 - startEpoch }
        #expect(!joinTimes.isEmpty, "no MP_JOIN on WiFi")
        #expect(joinTimes.allSatisfy { $0 >= wifiBack - 0.5 }, "MP_JOIN before WiFi returned: \(joinTimes)")
        #expect(joins.allSatisfy { $0.count > 1 && $0[1] == "198.18.1.2" }, "\(joins)")
        let wifiData = try Self.tshark("\(dir)/client-wifi0.pcap", filter: "tcp.len > 0 && ip.src == 198.19.0.1", fields: ["tcp.len"])
        let wifiBytes = wifiData.compactMap { Int($0[0]) }.reduce(0, +)
        #expect(wifiBytes > 0, "no data from the server over the WiFi subflow")

        // The apps ran: FG answered requests, BG moved chunks.
        let a = try Analyzer.analyze(try TrialInput.runDirectory(dir))
        let figures = try #require(DriveExperiment.figures(a, seconds: plan.durationSeconds))
        #expect(figures.fgLatenciesMs.count >= 5, "FG answered \(figures.fgLatenciesMs.count)")
        #expect(figures.bgBytes > 0)
    }
}
