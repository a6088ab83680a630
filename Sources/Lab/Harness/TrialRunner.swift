import Analysis
import Capture
import Emulation
import Foundation
import Logging
import ToyProtocol

/// What one trial left behind.
public struct TrialOutcome: Sendable {
    public var plan: TrialPlan
    public var directory: String
    /// Analysis of the captures (filled in by `ExperimentRunner`); nil if it failed (see `problems`).
    public var analysis: TrialAnalysis?
    /// Apps that failed, capture drops, analysis errors: things the reader must know.
    public var problems: [String]
    public var interrupted: Bool
    /// TCP sysctls read back from the namespaces: "client"/"server" -> key -> value.
    public var tcpSysctls: [String: [String: String]] = [:]
    /// Whether the emulation kept up (also the trial's `fidelity.json`).
    public var fidelity: TrialFidelity? = nil

    /// True when the trial failed only because the emulation fell behind (as
    /// `TrialJobRecord.onlyEmulationFellBehind`): void, not wrong, so running it again is fair.
    public var onlyEmulationFellBehind: Bool {
        !interrupted && fidelity?.isTheOnlyProblem(among: problems) == true
    }

    public init(plan: TrialPlan, directory: String, analysis: TrialAnalysis?, problems: [String], interrupted: Bool,
                tcpSysctls: [String: [String: String]] = [:], fidelity: TrialFidelity? = nil) {
        self.plan = plan
        self.directory = directory
        self.analysis = analysis
        self.problems = problems
        self.interrupted = interrupted
        self.tcpSysctls = tcpSysctls
        self.fidelity = fidelity
    }
}

/// Runs one trial: testbed up, captures, servers, apps, wait, stop everything, tear down, analyse.
/// Whatever happens (an app failing, Ctrl-C, an error), everything started is stopped and the
/// testbed removed before this returns or throws.
public struct TrialRunner: Sendable {
    public var context: HarnessContext

    public init(_ context: HarnessContext) { self.context = context }

    var appBinary: String { "\(context.binDirectory)/intnw-app" }

    public func run(_ plan: TrialPlan, in run: RunDirectory, progress: Progress) async throws -> TrialOutcome {
        try await self.run(plan, directory: try run.subdirectory("\(plan.variant)/trial-\(plan.trial)"), progress: progress)
    }

    /// `run(_:in:progress:)`, and again while the fidelity guard alone invalidated the trial, at
    /// most `retries` times (as experiments and `trial run` do, `--retry-invalid`): each invalid
    /// attempt's directory is kept beside the trial's as `trial-N.invalid-attempt-K`. Returns the
    /// last attempt's outcome. For callers that run single trials (tests): on a host whose timers
    /// stall now and then, one attempt in a few is void, not wrong.
    public func run(_ plan: TrialPlan, in run: RunDirectory, retryingInvalid retries: Int, progress: Progress) async throws -> TrialOutcome {
        var outcome = try await self.run(plan, in: run, progress: progress)
        var attempt = 0
        while attempt < retries && outcome.onlyEmulationFellBehind && !context.interruption.isTriggered {
            attempt += 1
            let kept = "\(outcome.directory).invalid-attempt-\(attempt)"
            try TrialJob.setAside(outcome.directory, as: kept)
            progress.note("\(plan.variant) trial \(plan.trial): \(outcome.problems.joined(separator: "; ")); kept in \(kept); running it again (\(attempt) of \(retries))")
            outcome = try await self.run(plan, in: run, progress: progress)
        }
        return outcome
    }

    /// Runs the trial into `dir` (which must exist): captures, logs, `apps.json`.
    public func run(_ plan: TrialPlan, directory dir: String, progress: Progress) async throws -> TrialOutcome {
        let label = "\(plan.variant) trial \(plan.trial)"
        var problems: [String] = []
        guard FileManager.default.isExecutableFile(atPath: appBinary) else {
            throw LabError.missingBinary(appBinary)
        }

        var config = Testbed.Configuration(trace: plan.trace)
        config.prefix = plan.prefix
        config.shaper = plan.shaper
        config.notifyDelaySeconds = plan.notifyDelaySeconds
        config.durationSeconds = plan.durationSeconds + 10 // covers start-up and shutdown
        config.userspace.seed = plan.seed
        config.replayLogPath = "\(dir)/replay.jsonl"
        config.tcp = plan.tcp
        config.mptcp = plan.mptcp
        progress.note("\(label): bringing the testbed up")
        let bed = try await Testbed.up(config, logger: context.logger)
        let tcpRecord = bed.tcpRecord
        if let data = try? JSONSerialization.data(withJSONObject: tcpRecord, options: [.prettyPrinted, .sortedKeys]) {
            FileManager.default.createFile(atPath: "\(dir)/tcp.json", contents: data)
        }

        var cpuAtStart = TrialFidelity.cpuTimes()
        var captures: [(LiveCapture, RunMetadata.CaptureEntry)] = []
        var servers: [ManagedProcess] = []
        var apps: [ManagedProcess] = []
        func teardown() async {
            for a in apps { await a.stop() }
            for s in servers { await s.stop() }
            for (c, entry) in captures {
                do {
                    let stats = try c.stop()
                    if stats.kernelDropped > 0 { problems.append("capture \(entry.file): kernel dropped \(stats.kernelDropped) packets") }
                } catch {
                    problems.append("capture \(entry.file): \(error)")
                }
            }
            await bed.down()
        }

        do {
            let spec = bed.topology.spec
            var sides: [(String, RunMetadata.Side)] = [(spec.clientNamespace, .client)]
            if plan.captureServer { sides.append((spec.serverNamespace, .server)) }
            for (ns, side) in sides {
                for link in spec.links {
                    let file = "\(side.rawValue)-\(link.interface).pcap"
                    let options = LiveCaptureOptions(interface: link.interface, namespace: ns, outputPath: "\(dir)/\(file)")
                    let c = try LiveCapture.start(options)
                    captures.append((c, .init(file: file, interface: link.interface, side: side)))
                }
            }

            var env = plan.environment
            env["INTNW_SEED"] = String(plan.seed)
            for (k, v) in env where v.contains(TrialPlan.trialDirectoryPlaceholder) {
                env[k] = v.replacingOccurrences(of: TrialPlan.trialDirectoryPlaceholder, with: dir)
            }
            for variant in Set(plan.apps.map(\.variant)).sorted(by: { $0.rawValue < $1.rawValue }) {
                let port = variant.defaultPort
                servers.append(try ManagedProcess(
                    name: "server-\(variant.rawValue)", namespace: spec.serverNamespace,
                    argv: [appBinary, "server", "--variant", variant.rawValue, "--port", String(port)] + plan.serverArguments,
                    stdoutPath: "\(dir)/server-\(variant.rawValue).log", stderrPath: "\(dir)/server-\(variant.rawValue).err",
                    environment: env))
            }
            try await waitForListeners(ns: spec.serverNamespace, ports: servers.isEmpty ? [] :
                                        Set(plan.apps.map { $0.variant.defaultPort }), servers: servers)

            cpuAtStart = TrialFidelity.cpuTimes()
            bed.startReplay()
            try ReplayStartRecord.now(startMonotonicNs: bed.replayer.startNs).write(to: dir)
            // The trace's capacity, for `--estimator oracle` and for judging the measured estimate.
            let sliceStarts = bed.replayer.timeline().compactMap { $0.event == .slice ? (seconds: $0.seconds, slice: $0.slice) : nil }
            try BackgroundEstimates.oracleText(trace: plan.trace, spec: spec, startMonotonicNs: bed.replayer.startNs,
                                               sliceStarts: sliceStarts)
                .write(toFile: "\(dir)/\(BackgroundEstimates.oracleFile)", atomically: true, encoding: .utf8)
            let gridOriginNs = plan.apps.filter { $0.kind == .fgClient }.count == 1 ? bed.replayer.startNs : nil
            for (processName, group) in Self.processes(plan.apps) {
                let argv = [appBinary] + Self.arguments(for: group, server: spec.serviceAddress, dir: dir,
                                                        durationSeconds: plan.durationSeconds, gridOriginNs: gridOriginNs)
                apps.append(try ManagedProcess(name: processName, namespace: spec.clientNamespace, argv: argv,
                                               stdoutPath: "\(dir)/\(processName).out", stderrPath: "\(dir)/\(processName).err",
                                               environment: env))
            }

            // Wait for the apps' duration (they stop by themselves), watching for failures and Ctrl-C.
            let started = Date()
            var lastNote = -10.0
            while true {
                let elapsed = Date().timeIntervalSince(started)
                if context.interruption.isTriggered { problems.append("interrupted at \(Int(elapsed)) s"); break }
                if apps.allSatisfy(\.hasEnded) { break }
                if let failed = apps.first(where: { $0.hasEnded && !($0.exitStatus?.isSuccess ?? false) }) {
                    problems.append("\(failed.name) exited early (\(failed.exitStatus.map { "\($0)" } ?? failed.startError ?? "?")); see \(failed.name).err")
                    break
                }
                if elapsed > plan.durationSeconds + 30 { problems.append("apps still running \(Int(elapsed)) s after start; stopped"); break }
                if elapsed - lastNote >= 5 {
                    progress.note("\(label): apps running \(Int(elapsed))/\(Int(plan.durationSeconds)) s")
                    lastNote = elapsed
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
            for a in apps where a.hasEnded && !(a.exitStatus?.isSuccess ?? false) && !problems.contains(where: { $0.hasPrefix(a.name) }) {
                problems.append("\(a.name) failed (\(a.exitStatus.map { "\($0)" } ?? a.startError ?? "?")); see \(a.name).err")
            }
        } catch {
            progress.note("\(label): \(error); tearing down")
            await teardown()
            throw error
        }
        // Fidelity guard: how late the emulator released packets and the replayer applied slices, and how
        // busy the CPUs were; a trial whose emulation fell behind is invalid (a problem: left out of the
        // results and named in the verdict).
        // An app that failed (e.g. never reached the server) makes the trial no data point either, even
        // though the emulation kept up: fidelity.json says so too.
        let appFailures = apps.filter { $0.hasEnded && !($0.exitStatus?.isSuccess ?? false) }
            .map { "\($0.name) failed (\($0.exitStatus.map { "\($0)" } ?? $0.startError ?? "?"))" }
        let fidelity = TrialFidelity.measure(bed: bed, cpuAtStart: cpuAtStart, appFailures: appFailures)
        if let data = try? JSONEncoder.pretty.encode(fidelity) {
            FileManager.default.createFile(atPath: "\(dir)/fidelity.json", contents: data)
        }
        if let why = fidelity.emulationInvalidReason { problems.append(why) }
        progress.note("\(label): stopping and tearing down")
        await teardown()

        try Self.metadata(apps: plan.apps, captures: captures.map(\.1)).write(to: dir)
        return TrialOutcome(plan: plan, directory: dir, analysis: nil, problems: problems,
                            interrupted: context.interruption.isTriggered, tcpSysctls: tcpRecord, fidelity: fidelity)
    }

    /// The trial's `apps.json`: its captures, and each app with the log it writes (the analyzer reads
    /// the apps' logs by it).
    static func metadata(apps: [AppLaunch], captures: [RunMetadata.CaptureEntry]) -> RunMetadata {
        RunMetadata(captures: captures, apps: apps.map {
            RunMetadata.AppEntry(name: $0.name, role: $0.role, variant: $0.variant, appId: $0.appId,
                                 logFile: AppLogName.file(process: $0.process, app: $0.name))
        })
    }

    /// Groups apps into processes (apps sharing a `process` name run together).
    static func processes(_ apps: [AppLaunch]) -> [(String, [AppLaunch])] {
        var order: [String] = []
        var groups: [String: [AppLaunch]] = [:]
        for a in apps {
            let key = a.process ?? a.name
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(a)
        }
        return order.map { ($0, groups[$0]!) }
    }

    /// `intnw-app` arguments for one process running `group`: one app alone (`fg-client`/`bg-client`),
    /// or an FG app and a BG app together (`fg-bg-client`, on two multisockets or sharing one).
    /// An app keeps trying to reach the server for its whole run (`--connect-timeout` = its duration), as
    /// a real app retries while no path works yet (e.g. a trace window that starts without WiFi).
    /// FG apps send on a grid tied to `gridOriginNs` (the trace replay's start), so that every trial
    /// of a run (FG alone and each layout) puts its requests at the same phase of the trace. The
    /// runner passes it only for trials with one FG app: several FG apps tied to one grid would all
    /// send at the same instants (`fairness` keeps the phases its apps happen to start with).
    static func arguments(for group: [AppLaunch], server: String, dir: String, durationSeconds: Double,
                          gridOriginNs: UInt64? = nil) -> [String] {
        precondition(!group.isEmpty)
        let grid = gridOriginNs.map { ["--grid-origin-ns", String($0)] } ?? []
        let first = group[0]
        func common(_ a: AppLaunch, startDelay: Double) -> [String] {
            let runs = String(max(0.1, durationSeconds - startDelay))
            return ["--variant", a.variant.rawValue, "--server", server, "--port", String(a.variant.defaultPort),
                    "--app-id", String(a.appId), "--start-delay", String(startDelay),
                    "--duration", runs, "--connect-timeout", runs,
                    "--log", "\(dir)/\(AppLogName.file(process: a.process, app: a.name))"]
        }
        if group.count == 1 {
            return [first.kind.rawValue] + common(first, startDelay: first.startDelaySeconds) + first.arguments
                + (first.kind == .fgClient ? grid : [])
        }
        precondition(group.count == 2 && Set(group.map(\.kind)) == [.fgClient, .bgClient],
                     "a process hosts one app or one FG app and one BG app")
        let fg = group.first { $0.kind == .fgClient }!, bg = group.first { $0.kind == .bgClient }!
        let start = min(fg.startDelaySeconds, bg.startDelaySeconds)
        var argv = ["fg-bg-client"] + common(fg, startDelay: start)
            + ["--bg-app-id", String(bg.appId), "--multisockets", group.contains(where: \.shareMultisocket) ? "1" : "2"]
        if fg.startDelaySeconds > start { argv += ["--fg-start-delay", String(fg.startDelaySeconds - start)] }
        if bg.startDelaySeconds > start { argv += ["--bg-start-delay", String(bg.startDelaySeconds - start)] }
        return argv + fg.arguments + bg.arguments + grid
    }

    /// Waits until every port listens in `ns` (or a server died).
    func waitForListeners(ns: String, ports: Set<UInt16>, servers: [ManagedProcess]) async throws {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let dead = servers.first(where: \.hasEnded) {
                throw LabError.serverFailed(dead.name, dead.startError ?? dead.exitStatus.map { "\($0)" } ?? "?")
            }
            let out = (try? await CommandRunner.run(["ip", "netns", "exec", ns, "ss", "-Hltn"])) ?? ""
            let listening = Set(out.split(separator: "\n").compactMap { line -> UInt16? in
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 4, let port = fields[3].split(separator: ":").last else { return nil }
                return UInt16(port)
            })
            if ports.isSubset(of: listening) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw LabError.serverFailed("servers", "not listening on \(ports.sorted()) after 15 s")
    }
}

public enum LabError: Error, CustomStringConvertible {
    case missingBinary(String)
    case serverFailed(String, String)
    case unknownExperiment(String)
    case interrupted
    case badOption(String)

    public var description: String {
        switch self {
        case .missingBinary(let p): return "\(p) not found: build first (make release)"
        case .serverFailed(let n, let why): return "\(n) did not start: \(why)"
        case .unknownExperiment(let n): return "no experiment named '\(n)' (intnw-lab experiment list)"
        case .interrupted: return "interrupted"
        case .badOption(let why): return why
        }
    }
}

/// `fidelity.json` of a trial: whether the emulation kept up.
public struct TrialFidelity: Codable, Sendable {
    /// A trial whose emulator p99 lateness (per packet) exceeds this is invalid.
    public static let maxLatenessP99Microseconds = 2000
    /// A trial whose replayer p99 lateness (per slice or carrier event) exceeds this is invalid. Looser
    /// than the packet limit: an event waits while the one before it is applied (a carrier change runs
    /// `ip` and took tens of ms on the loaded 2-core machine), and 50 ms is 5% of a 1-s slice.
    public static let maxReplayerLatenessP99Microseconds = 50_000
    /// Departure lateness of the user-space emulator's packets (actual - scheduled), µs; nil with netem.
    public var emulatorLatenessP99Microseconds: Int?
    public var emulatorPackets: UInt64?
    /// How late the replayer applied its slice and carrier events, µs.
    public var replayerLatenessP99Microseconds: Int?
    public var replayerEvents: Int
    /// Share of all CPUs' time busy during the trial (from /proc/stat), 0-1; >= 0.95 counts as saturated.
    public var cpuBusyFraction: Double?
    public var cpuSaturated: Bool
    /// Apps of the trial that failed (exited non-zero: e.g. never reached the server); nil or empty
    /// when every app ran. Older records lack it.
    public var appFailures: [String]? = nil
    /// False when the emulation fell behind or an app failed: the trial is no data point.
    public var valid: Bool
    public var invalidReason: String?

    /// Why the emulation (not the apps) makes the trial invalid; nil when it kept up.
    public var emulationInvalidReason: String? {
        guard let r = invalidReason, r.hasPrefix(Self.emulationPrefix) else { return nil }
        return r.components(separatedBy: "; apps failed: ").first
    }
    static let emulationPrefix = "invalid: the emulation fell behind"

    /// Whether this fidelity's emulation lateness is all that is wrong with a trial that left
    /// `problems`: invalid with no app failure, and every problem the guard's own. Such a trial is
    /// void, not wrong (`--retry-invalid`).
    func isTheOnlyProblem(among problems: [String]) -> Bool {
        valid == false && appFailures == nil && !problems.isEmpty && problems.allSatisfy { $0.hasPrefix(Self.emulationPrefix) }
    }

    /// (busy, total) jiffies of all CPUs so far.
    static func cpuTimes() -> (busy: Double, total: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard v.count >= 5 else { return nil }
        let total = v.prefix(8).reduce(0, +)
        return (total - v[3] - v[4], total)  // idle and iowait are not busy
    }

    static func measure(bed: Testbed, cpuAtStart: (busy: Double, total: Double)?, appFailures: [String] = []) -> TrialFidelity {
        var emulatorP99: Int?, packets: UInt64?
        if let u = bed.shaper as? UserspaceShaper {
            let h = u.lateness()
            packets = h.total
            if h.total > 0 { emulatorP99 = h.percentileMicroseconds(0.99) }
        }
        let late = bed.replayer.events.map(\.lateMicroseconds).sorted()
        let replayerP99 = late.isEmpty ? nil : Int(late[min(late.count - 1, Int((Double(late.count) * 0.99).rounded(.up)) - 1)].rounded())
        var busy: Double?
        if let a = cpuAtStart, let b = cpuTimes(), b.total > a.total { busy = (b.busy - a.busy) / (b.total - a.total) }
        return judged(emulatorP99: emulatorP99, packets: packets, replayerP99: replayerP99, replayerEvents: late.count,
                      cpuBusy: busy, appFailures: appFailures)
    }

    /// The record with its verdict: invalid when the emulator's or the replayer's p99 lateness is over
    /// its limit, or when an app failed.
    static func judged(emulatorP99: Int?, packets: UInt64?, replayerP99: Int?, replayerEvents: Int, cpuBusy busy: Double?,
                       appFailures: [String]) -> TrialFidelity {
        var reasons: [String] = []
        let limit = maxLatenessP99Microseconds
        if let e = emulatorP99, e > limit { reasons.append("emulator lateness p99 \(e) µs > \(limit) µs") }
        if let r = replayerP99, r > maxReplayerLatenessP99Microseconds {
            reasons.append("replayer lateness p99 \(r) µs > \(maxReplayerLatenessP99Microseconds) µs")
        }
        var parts: [String] = []
        if !reasons.isEmpty {
            parts.append("\(emulationPrefix) (\(reasons.joined(separator: ", ")))" + (busy.map { String(format: "; CPUs %.0f%% busy", $0 * 100) } ?? ""))
        }
        if !appFailures.isEmpty { parts.append((parts.isEmpty ? "invalid: " : "") + "apps failed: " + appFailures.joined(separator: ", ")) }
        return TrialFidelity(emulatorLatenessP99Microseconds: emulatorP99, emulatorPackets: packets,
                             replayerLatenessP99Microseconds: replayerP99, replayerEvents: replayerEvents,
                             cpuBusyFraction: busy, cpuSaturated: (busy ?? 0) >= 0.95,
                             appFailures: appFailures.isEmpty ? nil : appFailures, valid: parts.isEmpty,
                             invalidReason: parts.isEmpty ? nil : parts.joined(separator: "; "))
    }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }
}
