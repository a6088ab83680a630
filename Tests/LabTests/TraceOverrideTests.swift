import Emulation
import Foundation
@testable import Lab
import Testing

/// `--trace/--trace-start/--duration` and `--tcp-cc` reach every trial plan of every experiment.
@Suite("trace override and pinned TCP")
struct TraceOverrideTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let downtown = repo.appendingPathComponent("traces/annarbor-downtown.trace").path

    static func options(start: Double = 0, duration: Double? = nil) -> ExperimentOptions {
        var o = ExperimentOptions()
        o.quick = true
        o.traceFile = downtown
        o.traceStartSeconds = start
        o.durationSeconds = duration
        o.tcp = TCPSettings(congestionControl: .cubic)
        return o
    }

    @Test("a window of the file: its slices shifted to 0, its length, the file's FNV-1a hash")
    func window() throws {
        let o = Self.options(start: 1000, duration: 60)
        let w = try #require(try TraceOverride.load(o))
        let full = try TraceParser.parse(contentsOfFile: Self.downtown)
        #expect(w.trace.durationSeconds == 60)
        #expect(w.trace.slices.count == 60)
        for i in 0..<60 {
            #expect(w.trace.slices[i].startSeconds == Double(i))
            #expect(w.trace.slices[i].conditions == full.slices[1000 + i].conditions)
        }
        #expect(w.origin == TraceOrigin(file: Self.downtown, fnv1a64: fnv1a64(try String(contentsOfFile: Self.downtown, encoding: .utf8)),
                                        startSeconds: 1000, durationSeconds: 60))
        // Without --duration the window runs to the end of the trace.
        let rest = try #require(try TraceOverride.load(Self.options(start: 3700)))
        #expect(rest.origin.durationSeconds == full.durationSeconds - 3700)
    }

    @Test("windows outside the trace, --trace-start without --trace and unreadable files are refused")
    func badWindows() throws {
        for o in [Self.options(start: 4000), Self.options(start: 3700, duration: 60), Self.options(start: -1)] {
            #expect(throws: LabError.self) { try TraceOverride.load(o) }
        }
        var o = ExperimentOptions()
        o.traceStartSeconds = 5
        #expect(throws: LabError.self) { try TraceOverride.load(o) }
        o = Self.options()
        o.traceFile = "/nonexistent/x.trace"
        #expect(throws: (any Error).self) { try TraceOverride.load(o) }
        #expect(try TraceOverride.load(ExperimentOptions()) == nil)
    }

    @Test("every experiment's plans take the window, its length and the congestion control", arguments: ["drive", "bgpolicy", "fairness", "multiapp", "trouble"])
    func everyExperiment(name: String) throws {
        let o = Self.options(start: 100, duration: 30)
        let override = try #require(try TraceOverride.load(o))
        // The registry's experiments read their own traces relative to the repository: use absolute paths.
        var drive = DriveExperiment()
        drive.tracePath = Self.repo.appendingPathComponent(drive.tracePath).path
        var bg = BGPolicyExperiment()
        bg.vehicularTracePath = Self.repo.appendingPathComponent(bg.vehicularTracePath).path
        let e: any Experiment = name == "drive" ? drive : name == "bgpolicy" ? bg : try #require(ExperimentRegistry.named(name))
        let plans = try e.plans(o)
        #expect(!plans.isEmpty)
        for var p in plans {
            #expect(p.tcp.congestionControl == .cubic)
            p.applyTraceOverride(override, durationSeconds: o.durationSeconds)
            #expect(p.trace == override.trace)
            #expect(p.durationSeconds == 30)
            #expect(p.traceOrigin?.startSeconds == 100)
        }
    }

    @Test("--duration without --trace only changes the length")
    func durationAlone() throws {
        var o = ExperimentOptions()
        o.quick = true
        let e = MultiappExperiment()
        var p = try #require(try e.plans(o).first)
        let trace = p.trace
        p.applyTraceOverride(nil, durationSeconds: 12)
        #expect(p.durationSeconds == 12)
        #expect(p.trace == trace)
        #expect(p.traceOrigin == nil)
    }

    @Test("both namespaces get the congestion control and the pinned sysctls; bbr is the default")
    func sysctls() {
        #expect(TCPSettings().congestionControl == .bbr)
        let topo = Topology(spec: TopologySpec(prefix: "x"))
        for cc in TCPSettings.CongestionControl.allCases {
            for client in [true, false] {
                let s = topo.sysctls(forClient: client, tcp: TCPSettings(congestionControl: cc))
                #expect(s.contains("net.ipv4.tcp_congestion_control=\(cc.rawValue)"))
                #expect(s.contains("net.ipv4.tcp_no_metrics_save=1"))
                // Every pinned key is also read back and recorded.
                for line in TCPSettings(congestionControl: cc).sysctls {
                    #expect(TCPSettings.recordedKeys.contains(String(line.split(separator: "=")[0])))
                }
            }
        }
    }
}
