import ArgumentParser
import Emulation
import Foundation
import Logging

/// `intnw-lab net up|down|status`: the emulated topology on its own, for interactive use.
struct NetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net",
        abstract: "Bring the emulated client/server topology up, down, or show it.",
        subcommands: [Up.self, Down.self, Status.self])

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the namespaces and shaped links, replay a trace in real time, tear down at the end.",
            discussion: """
            Runs in the foreground until the replay duration ends or Ctrl-C, then removes every namespace,
            device and process it created. Meanwhile anything started with
            `ip netns exec <prefix>-client ...` reaches the server (service address 198.19.0.1) over the
            shaped links: wifi0 (198.18.1.2 -> 198.18.1.1) and cell0 (198.18.2.2 -> 198.18.2.1).
            """)

        @Option(help: "Name prefix for namespaces (<prefix>-client, <prefix>-server); 1-8 lowercase letters/digits.")
        var prefix = "intnw"

        @Option(help: "Trace file (intnw-trace v1: bandwidth in bytes/s, RTT in ms). Default: traces/lab-constant.trace.")
        var trace: String?

        @Option(help: "Shaping backend: auto (netem when the kernel has sch_netem, else userspace), netem, userspace.")
        var shaper: ShaperChoice = .auto

        @Option(help: "Replay length in seconds (default: the trace's length; longer loops the trace).")
        var duration: Double?

        @Option(name: .customLong("notify-delay"), help: "Seconds between WiFi vanishing and its carrier going down.")
        var notifyDelay = 2.0

        @Option(help: ArgumentHelp("Fail WiFi on top of the trace (repeatable). \(LinkFailure.syntax)",
                                   valueName: "blackout@START+DURATION|fade@START+FADE[+OUT]"))
        var fail: [String] = []

        @Option(help: "Drop-tail queue limit per link direction, bytes (userspace; default max(1.5 x BDP, 64 KiB)).")
        var queueBytes: Int?

        @Option(help: "Seed for the loss model.")
        var seed: UInt64 = 1

        @Option(help: "Directory for per-link event logs (Mahimahi format) and the replay log.")
        var logDir: String?

        @Flag(help: "Let the kernel pass TSO/GSO super-packets through the userspace emulator (fast, coarser shaping).")
        var offload = false

        @Option(help: "Raise the namespaces' maximum TCP buffer (tcp_rmem/tcp_wmem), bytes.")
        var tcpBuffer: Int?

        @Flag(name: .shortAndLong, help: "Log every slice applied.")
        var verbose = false

        func validate() throws {
            if let d = duration, !(d > 0 && d.isFinite) { throw ValidationError("--duration must be a positive number of seconds") }
            guard notifyDelay >= 0 && notifyDelay.isFinite else { throw ValidationError("--notify-delay must be >= 0 seconds") }
            if let q = queueBytes, q < 1600 { throw ValidationError("--queue-bytes must hold at least one packet (>= 1600)") }
            for f in fail {
                do { _ = try LinkFailure.parse(f) } catch { throw ValidationError("--fail \(error)") }
            }
        }

        func run() async throws {
            try NetCommand.validatePrefix(prefix)
            var logger = Logger(label: "intnw-lab.net")
            logger.logLevel = verbose ? .debug : .info
            var t = try LabCLI.loadTrace(trace)
            for f in fail { t = try LabCLI.check { try LinkFailure.parse(f).apply(to: t) } }
            let kind = try LabCLI.resolveShaper(shaper)
            var config = Testbed.Configuration(trace: t)
            config.prefix = prefix
            config.shaper = kind
            config.durationSeconds = duration
            config.notifyDelaySeconds = notifyDelay
            config.userspace.queueLimitBytes = queueBytes
            config.userspace.seed = seed
            config.userspace.offload = offload
            config.tcpBufferBytes = tcpBuffer
            if let dir = logDir {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                config.userspace.eventLogDirectory = dir
                config.replayLogPath = "\(dir)/replay.jsonl"
            }
            let stop = SignalTrap([SIGINT, SIGTERM, SIGHUP])
            let bed = try await LabCLI.userError { try await Testbed.up(config, logger: logger) }
            stderr("net up: testbed '\(prefix)' ready (shaper \(kind.rawValue), trace \(t.source), \(String(format: "%.0f", bed.replayer.durationSeconds)) s); Ctrl-C to stop")
            stop.onSignal { bed.replayer.stop() }
            bed.startReplay()
            await bed.waitForReplay()
            for c in bed.shaper.counters() {
                stderr("  \(c.link) \(c.direction.rawValue): \(c.packetsOut)/\(c.packetsIn) packets delivered, drops queue \(c.queueDrops) loss \(c.lossDrops) outage \(c.outageDrops)")
            }
            await bed.down()
            stderr("net up: testbed '\(prefix)' removed")
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a testbed (also one left by a crashed run).")
        @Option(help: "Name prefix of the testbed; 1-8 lowercase letters/digits.") var prefix = "intnw"
        func run() async throws {
            try NetCommand.validatePrefix(prefix)
            if let pid = Topology.ownerPID(prefix: prefix) { kill(pid, SIGTERM); usleep(500_000) }
            try LabCLI.check { try Topology.preflight() }
            await Topology(spec: TopologySpec(prefix: prefix)).destroy(logger: Logger(label: "intnw-lab.net"))
            Topology.clearOwner(prefix: prefix)
            print("testbed '\(prefix)' removed")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show whether a testbed exists and who runs it.")
        @Option(help: "Name prefix of the testbed; 1-8 lowercase letters/digits.") var prefix = "intnw"
        func run() async throws {
            try NetCommand.validatePrefix(prefix)
            let topo = Topology(spec: TopologySpec(prefix: prefix))
            guard topo.exists else { print("testbed '\(prefix)': not running"); return }
            if let pid = Topology.ownerPID(prefix: prefix) {
                print("testbed '\(prefix)': running (emulator pid \(pid))")
            } else {
                print("testbed '\(prefix)': namespaces exist but no emulator runs (leftover: `intnw-lab net down --prefix \(prefix)`)")
            }
            for ns in [topo.spec.clientNamespace, topo.spec.serverNamespace] {
                print("== \(ns)")
                print((try? await CommandRunner.run(["ip", "-n", ns, "-br", "addr"])) ?? "  (unreadable)", terminator: "")
            }
        }
    }
}

extension NetCommand {
    /// Every subcommand that takes `--prefix`: it names namespaces and files under the state
    /// directory, so only the documented form is accepted (never a path such as `../../../etc/x`).
    /// One line on stderr and exit status 1, before anything is touched.
    static func validatePrefix(_ prefix: String) throws {
        guard TopologySpec.isValidPrefix(prefix), prefix == prefix.lowercased() else {
            throw LabCLI.fail("--prefix must be 1-8 lowercase letters/digits starting with a letter")
        }
    }
}

enum ShaperChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, netem, userspace
}
