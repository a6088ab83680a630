import Analysis
import Emulation
import Foundation
import LinuxSupport
import SystemPackage
import Logging

/// `trial.json` in a trial's directory: the spec it ran, where, and how it ended. Written with status
/// `running` before the testbed comes up, so a job killed half-way is recognisable.
public struct TrialJobRecord: Codable, Sendable {
    public static let file = "trial.json"

    public enum Status: String, Codable, Sendable {
        case running, completed, failed, interrupted
    }

    public var format = "intnw-lab trial result 1"
    public var spec: TrialSpec
    public var status: Status
    /// The namespace prefix the trial ran under.
    public var prefix: String?
    public var host: String
    public var startedAt: Date
    public var finishedAt: Date?
    /// Apps that failed, capture drops, the error that stopped the trial: anything here fails the trial.
    public var problems: [String]
    /// Build and kernel of the host that ran it, and the TCP congestion control pinned in its
    /// namespaces (`TrialPlan.tcp`): the merge notes trials that ran under different ones.
    public var versions: VersionRecord? = nil
    public var tcpCongestionControl: String? = nil
    /// The TCP sysctls read back from the namespaces after setup: "client"/"server" -> key -> value.
    public var tcpSysctls: [String: [String: String]]? = nil
    /// Emulator/replayer lateness and CPU load of the trial; an invalid one is also a problem.
    public var fidelity: TrialFidelity? = nil

    /// True when the trial failed only because the emulation fell behind (a host stall or load): the
    /// measurement is void, not wrong, so running it again is a fair remedy. Any other problem (an app
    /// failed, capture drops, an error) is the trial's result and is kept.
    public var onlyEmulationFellBehind: Bool {
        status == .failed && fidelity?.isTheOnlyProblem(among: problems) == true
    }

    public static func load(directory: String) throws -> TrialJobRecord {
        let path = "\(directory)/\(file)"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrialSpecError.unreadable(directory, "no \(file) (not a trial directory, or the job never started)")
        }
        let dec = JSONDecoder()
        dec.dateDecodingStrategy = .iso8601
        let r: TrialJobRecord
        do { r = try dec.decode(TrialJobRecord.self, from: data) } catch {
            throw TrialSpecError.unreadable(path, "not a trial record (\(TrialSpec.describe(error)))")
        }
        do { try r.spec.validate() } catch { throw TrialSpecError.unreadable(path, "\(error)") }
        return r
    }

    func write(directory: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.dateEncodingStrategy = .iso8601
        let tmp = "\(directory)/.\(Self.file).tmp"
        try enc.encode(self).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, "\(directory)/\(Self.file)") == 0 else {
            throw TrialSpecError.unreadable(directory, "cannot write \(Self.file): \(Errno.last)")
        }
    }
}

/// Runs one trial spec into its own directory under a prefix it claims (`intnw-lab trial run`, and each
/// trial of `intnw-lab experiment`).
public struct TrialJob: Sendable {
    public var context: HarnessContext

    public init(_ context: HarnessContext) { self.context = context }

    /// Makes `dir` ready for a trial: created if missing; a previous trial's results there are removed
    /// (rerunning a spec replaces that trial); any other non-empty directory is refused.
    public static func prepare(directory dir: String) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: dir, isDirectory: &isDir) {
            guard isDir.boolValue else { throw TrialSpecError.invalid("--out \(dir) is a file") }
            let entries = try fm.contentsOfDirectory(atPath: dir)
            if !entries.isEmpty {
                guard entries.contains(TrialJobRecord.file) else {
                    throw TrialSpecError.invalid("--out \(dir) is not empty and holds no \(TrialJobRecord.file): refusing to overwrite it")
                }
                for e in entries { try fm.removeItem(atPath: "\(dir)/\(e)") }
            }
        } else {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
    }

    /// Runs `spec` into `dir` and returns its record (also written as `dir/trial.json`). Throws only when
    /// the directory cannot be prepared or written; a trial that fails is a record with status `failed`.
    public func run(_ spec: TrialSpec, directory dir: String, prefix override: PrefixPolicy? = nil,
                    progress: Progress) async throws -> TrialJobRecord {
        try Self.prepare(directory: dir)
        var record = TrialJobRecord(spec: spec, status: .running, prefix: nil, host: Self.hostName(),
                                    startedAt: Date(), finishedAt: nil, problems: [])
        try record.write(directory: dir)
        let claim: PrefixClaim
        do {
            claim = try PrefixClaim.acquire(override ?? spec.prefix)
        } catch {
            record.status = .failed
            record.problems = ["no namespace prefix: \(error)"]
            record.finishedAt = Date()
            try record.write(directory: dir)
            return record
        }
        defer { claim.release() }
        record.prefix = claim.prefix
        record.versions = await VersionRecord.current()
        record.tcpCongestionControl = spec.plan.tcp.congestionControl.rawValue
        try record.write(directory: dir)
        var plan = spec.plan
        plan.prefix = claim.prefix
        progress.note("\(spec.id): prefix \(claim.prefix), directory \(dir)")
        do {
            let outcome = try await TrialRunner(context)
                .run(plan, directory: dir, progress: progress)
            record.problems = outcome.problems
            record.tcpSysctls = outcome.tcpSysctls
            record.fidelity = outcome.fidelity
            if let cc = outcome.tcpSysctls["client"]?["net.ipv4.tcp_congestion_control"] { record.tcpCongestionControl = cc }
            record.status = outcome.interrupted ? .interrupted : outcome.problems.isEmpty ? .completed : .failed
        } catch {
            record.problems.append("\(error)")
            record.status = context.interruption.isTriggered ? .interrupted : .failed
        }
        record.finishedAt = Date()
        try record.write(directory: dir)
        return record
    }

    /// `run`, and again while the fidelity guard alone invalidated the trial, at most `retries` times.
    /// Before each rerun the invalid trial's directory is moved to `keep(attempt)` (attempt 1, 2, ...),
    /// a trial directory of its own that a merge finds and names. Returns the last run's record.
    public func run(_ spec: TrialSpec, directory dir: String, prefix override: PrefixPolicy? = nil, retryingInvalid retries: Int,
                    progress: Progress, keep: (Int) -> String) async throws -> TrialJobRecord {
        var record = try await run(spec, directory: dir, prefix: override, progress: progress)
        var attempt = 0
        while attempt < retries && record.onlyEmulationFellBehind && !context.interruption.isTriggered {
            attempt += 1
            let kept = keep(attempt)
            try Self.setAside(dir, as: kept)
            progress.note("\(spec.id): \(record.problems.joined(separator: "; ")); kept in \(kept); running it again (\(attempt) of \(retries))")
            record = try await run(spec, directory: dir, prefix: override, progress: progress)
        }
        return record
    }

    /// Moves an invalid attempt's directory `dir` to `kept` (replacing what was there, its parent
    /// created), so that the trial can run again into `dir`.
    static func setAside(_ dir: String, as kept: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: (kept as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if fm.fileExists(atPath: kept) { try fm.removeItem(atPath: kept) }
        try fm.moveItem(atPath: dir, toPath: kept)
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        return gethostname(&buf, buf.count) == 0 ? String(cString: buf) : "unknown"
    }
}
