#if canImport(Glibc)
import Glibc
#endif
import Emulation
import Foundation

/// How `intnw-lab trial run` picks the testbed's namespace prefix.
///
/// `fixed`: exactly `value` (what `intnw-lab experiment --prefix` uses). `auto`: the first free one of
/// `value` followed by 0, 1, ... 99 (cut to 8 characters), so jobs started together on one host take
/// different prefixes. Either way the prefix is claimed first (`PrefixClaim`).
public struct PrefixPolicy: Codable, Sendable, Equatable {
    public enum Mode: String, Codable, Sendable { case fixed, auto }
    public var mode: Mode
    public var value: String

    public init(mode: Mode, value: String) {
        self.mode = mode
        self.value = value
    }

    /// Stems longer than 6 characters are cut so that stem + two digits stays a valid prefix.
    public static func auto(stem: String) -> PrefixPolicy { PrefixPolicy(mode: .auto, value: String(stem.prefix(6))) }

    public var candidates: [String] {
        switch mode {
        case .fixed: return [value]
        case .auto: return (0..<100).map { "\(value)\($0)" }
        }
    }

    public func validate() throws {
        guard let sample = candidates.last, TopologySpec.isValidPrefix(sample), sample == sample.lowercased() else {
            throw TrialSpecError.invalid("prefix policy \(mode.rawValue) '\(value)' does not give 1-8 lowercase letters/digits starting with a letter")
        }
    }
}

public enum TrialSpecError: Error, CustomStringConvertible {
    case invalid(String)
    case unreadable(String, String)

    public var description: String {
        switch self {
        case .invalid(let why): return why
        case .unreadable(let path, let why): return "\(path): \(why)"
        }
    }
}

/// One trial as a self-contained job: everything `intnw-lab trial run` needs to run it on any Linux host
/// with root and the built binaries, and everything `intnw-lab analyze --merge` needs to put it back
/// together with the other trials of its plan.
///
/// The conditions, apps, seed, shaper and environment are the experiment's `TrialPlan` verbatim (with
/// its trace copied in, and the trace's hash to check the copy against); the run-wide options are the
/// ones the experiment's verdict is judged with. New experiment options are simply new fields of those
/// two Codable types.
public struct TrialSpec: Codable, Sendable {
    public static let currentFormat = "intnw-lab trial spec 1"

    public var format: String
    /// `<variant>.trial-<k>`: the spec's file name without `.json`, unique within the plan.
    public var id: String
    public var experiment: String
    /// The recipe's version when the plan was made; merging refuses another version.
    public var recipeVersion: Int
    public var expectation: String
    public var options: ExperimentOptions
    public var plan: TrialPlan
    /// Source, 64-bit FNV-1a hash of the trace's text form and its duration (the trace itself is in `plan`).
    public var trace: TraceRecord
    public var prefix: PrefixPolicy
    /// Identifies the plan (a hash of its specs); every trial of one plan carries the same id.
    public var planId: String
    /// Every trial id of the plan, in order: a merge reports the ones it was not given.
    public var planTrials: [String]
    /// Commit, toolchain and host the plan was made with.
    public var planned: VersionRecord

    public static func id(variant: String, trial: Int) -> String { "\(variant).trial-\(trial)" }

    /// Ids become file and directory names: letters, digits, `.`, `-`, `_` only.
    static func isSafeId(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 200 && !s.hasPrefix(".")
            && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "_") }
    }

    /// Checks what a spec file could get wrong: format, id, prefix policy, the trace against its hash.
    public func validate() throws {
        guard format == Self.currentFormat else {
            throw TrialSpecError.invalid("format '\(format)' is not '\(Self.currentFormat)' (made by another intnw-lab version?)")
        }
        guard Self.isSafeId(id), id == Self.id(variant: plan.variant, trial: plan.trial) else {
            throw TrialSpecError.invalid("id '\(id)' does not match variant '\(plan.variant)' trial \(plan.trial)")
        }
        guard planTrials.contains(id) else { throw TrialSpecError.invalid("id '\(id)' is not among the plan's trials") }
        guard plan.durationSeconds > 0, plan.durationSeconds <= 86_400 else {
            throw TrialSpecError.invalid("duration \(plan.durationSeconds) s is outside 0...86400 s")
        }
        try prefix.validate()
        let hash = fnv1a64(TraceWriter.text(of: plan.trace))
        guard hash == trace.fnv1a64 else {
            throw TrialSpecError.invalid("trace does not match its recorded hash (\(hash) != \(trace.fnv1a64)): the spec was altered")
        }
    }

    /// Reads and validates a spec file (at most 64 MiB).
    public static func load(_ path: String) throws -> TrialSpec {
        let data: Data
        guard FileManager.default.fileExists(atPath: path) else { throw TrialSpecError.unreadable(path, "does not exist") }
        do {
            let attrs = try FileManager.default.attributesOfItem(atPath: path)
            if let size = attrs[.size] as? NSNumber, size.int64Value > 64 << 20 {
                throw TrialSpecError.unreadable(path, "larger than 64 MiB, not a trial spec")
            }
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch let e as TrialSpecError {
            throw e
        } catch {
            throw TrialSpecError.unreadable(path, "cannot read: \(error.localizedDescription)")
        }
        let spec: TrialSpec
        do {
            spec = try JSONDecoder().decode(TrialSpec.self, from: data)
        } catch {
            throw TrialSpecError.unreadable(path, "not a trial spec (\(Self.describe(error)))")
        }
        do { try spec.validate() } catch { throw TrialSpecError.unreadable(path, "\(error)") }
        return spec
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let c):
            return "missing field '\((c.codingPath + [key]).map(\.stringValue).joined(separator: "."))'"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "wrong type at '\(c.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.dataCorrupted(let c):
            return c.codingPath.isEmpty ? "not valid JSON" : "bad value at '\(c.codingPath.map(\.stringValue).joined(separator: "."))'"
        default:
            return "\(error)"
        }
    }
}

/// `plan.manifest` next to the specs: what the plan is, for a reader and for the Slurm scripts.
public struct PlanManifest: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var id: String
        public var file: String
        public var variant: String
        public var trial: Int
        public var seed: UInt64
        public var durationSeconds: Double
        public var traceFnv1a64: String
    }

    public var format: String
    public var experiment: String
    public var recipeVersion: Int
    public var expectation: String
    public var options: ExperimentOptions
    public var planId: String
    public var prefix: PrefixPolicy
    public var versions: VersionRecord
    /// The recipe's own estimate of the whole sweep run one trial after another, seconds.
    public var expectedSeconds: Double
    public var trials: [Entry]
}

/// Turns an experiment's trial plans into specs, and writes them.
public enum TrialPlanner {
    public static let manifestFile = "plan.manifest"
    /// One spec path per line, in plan order (Slurm's array index is the line number - 1).
    public static let listFile = "specs.txt"

    public static func specs(_ experiment: any Experiment, options: ExperimentOptions, prefix: PrefixPolicy,
                             versions: VersionRecord) throws -> (PlanManifest, [TrialSpec]) {
        try prefix.validate()
        // `--trace/--trace-start/--duration` replace every plan's conditions and length here, so the
        // specs (and `trial plan`) carry them.
        let override = try TraceOverride.load(options)
        let allPlans = try experiment.plans(options).map { p -> TrialPlan in
            var p = p
            p.applyTraceOverride(override, durationSeconds: options.durationSeconds)
            return p
        }
        let plans = try selectVariants(allPlans, options.variants, experiment: experiment.name)
        guard !plans.isEmpty else { throw TrialSpecError.invalid("\(experiment.name) planned no trial") }
        let ids = plans.map { TrialSpec.id(variant: $0.variant, trial: $0.trial) }
        guard Set(ids).count == ids.count, ids.allSatisfy(TrialSpec.isSafeId) else {
            throw TrialSpecError.invalid("\(experiment.name): trial ids are not unique file names: \(ids)")
        }
        var specs = plans.enumerated().map { i, p in
            TrialSpec(format: TrialSpec.currentFormat, id: ids[i], experiment: experiment.name,
                      recipeVersion: experiment.version, expectation: experiment.expectation, options: options,
                      plan: p, trace: traceRecord(p.trace), prefix: prefix, planId: "", planTrials: ids,
                      planned: versions)
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let planId = fnv1a64(specs.map { (try? enc.encode($0)).map { String(decoding: $0, as: UTF8.self) } ?? "" }.joined())
        for i in specs.indices { specs[i].planId = planId }
        let manifest = PlanManifest(
            format: "intnw-lab plan manifest 1", experiment: experiment.name, recipeVersion: experiment.version,
            expectation: experiment.expectation, options: options, planId: planId, prefix: prefix, versions: versions,
            // The recipe estimates all its variants; `--variants` runs that share of its trials.
            expectedSeconds: experiment.expectedSeconds(options) * Double(plans.count) / Double(max(1, allPlans.count)),
            trials: specs.map { .init(id: $0.id, file: "\($0.id).json", variant: $0.plan.variant, trial: $0.plan.trial,
                                      seed: $0.plan.seed, durationSeconds: $0.plan.durationSeconds,
                                      traceFnv1a64: $0.trace.fnv1a64) })
        return (manifest, specs)
    }

    /// The plans of the variants named by `--variants` (all with nil), in the experiment's order; a
    /// name the experiment does not have is a one-line error listing the ones it has.
    static func selectVariants(_ plans: [TrialPlan], _ names: [String]?, experiment: String) throws -> [TrialPlan] {
        guard let names else { return plans }
        var known: [String] = []
        for p in plans where !known.contains(p.variant) { known.append(p.variant) }
        guard !names.isEmpty else { throw LabError.badOption("--variants names no variant; \(experiment) has \(known.joined(separator: ", "))") }
        for n in names where !known.contains(n) {
            throw LabError.badOption("--variants: \(experiment) has no variant '\(n)' (it has \(known.joined(separator: ", ")))")
        }
        return plans.filter { names.contains($0.variant) }
    }

    static func traceRecord(_ t: Trace) -> TraceRecord {
        TraceRecord(source: t.source, copy: nil, fnv1a64: fnv1a64(TraceWriter.text(of: t)), durationSeconds: t.durationSeconds)
    }

    /// Writes `<id>.json` per trial, `plan.manifest` and `specs.txt` into `directory` (created; must not
    /// hold another plan's specs).
    public static func write(_ manifest: PlanManifest, specs: [TrialSpec], to directory: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let old = try? Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(manifestFile)")),
           let m = try? JSONDecoder().decode(PlanManifest.self, from: old), m.planId != manifest.planId {
            // Another plan's specs would mix with ours under P/*.json.
            for e in m.trials { try? fm.removeItem(atPath: "\(directory)/\(e.file)") }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        for s in specs { try enc.encode(s).write(to: URL(fileURLWithPath: "\(directory)/\(s.id).json")) }
        try enc.encode(manifest).write(to: URL(fileURLWithPath: "\(directory)/\(manifestFile)"))
        let abs = URL(fileURLWithPath: directory).standardizedFileURL.path
        try (specs.map { "\(abs)/\($0.id).json" }.joined(separator: "\n") + "\n")
            .write(toFile: "\(directory)/\(listFile)", atomically: true, encoding: .utf8)
    }
}

/// A claimed namespace prefix: an exclusive `flock` on `/run/intnw-lab/claims/<prefix>.lock`, held for
/// the whole trial. The kernel drops the lock when the process dies, so a killed job never blocks a
/// prefix; `release` removes the file.
// @unchecked: `fd` changes only in `release`, which the one owner calls once at the end of the trial.
public final class PrefixClaim: @unchecked Sendable {
    public static var directory: String { "\(Topology.stateDirectory)/claims" }

    public let prefix: String
    private var fd: Int32
    private let path: String

    private init(prefix: String, fd: Int32, path: String) {
        self.prefix = prefix
        self.fd = fd
        self.path = path
    }

    deinit { release() }

    /// The first prefix of `policy` that nobody holds. Auto mode also passes over prefixes whose
    /// namespaces exist (someone's testbed, even one started without a claim); fixed mode takes its
    /// prefix anyway and the testbed reclaims a crashed run's leftovers (unless its owner still runs).
    public static func acquire(_ policy: PrefixPolicy) throws -> PrefixClaim {
        try policy.validate()
        mkdir(Topology.stateDirectory, 0o755)
        mkdir(directory, 0o755)
        for p in policy.candidates {
            if policy.mode == .auto, access("/run/netns/\(p)-client", F_OK) == 0 || access("/run/netns/\(p)-server", F_OK) == 0 {
                continue
            }
            if let c = tryClaim(p) {
                if let owner = Topology.ownerPID(prefix: p), owner != getpid() {
                    c.release()
                    if policy.mode == .fixed { throw TopologyError.inUse(prefix: p, pid: owner) }
                    continue
                }
                return c
            }
            if policy.mode == .fixed {
                throw TrialSpecError.invalid("prefix '\(p)' is claimed by another job (\(directory)/\(p).lock, pid \(holder(p) ?? "?")); pick another --prefix")
            }
        }
        throw TrialSpecError.invalid("no free prefix among \(policy.value)0...\(policy.value)99: 100 trials already run on this host")
    }

    static func holder(_ prefix: String) -> String? {
        (try? String(contentsOfFile: "\(directory)/\(prefix).lock", encoding: .utf8))?.trimmed
    }

    /// Locks `<prefix>.lock` without waiting; nil if another process holds it. The file may be unlinked
    /// by its previous holder between our open and our lock: then the lock is on a dead inode, so check
    /// that the path still names the file we locked, and try again if not.
    static func tryClaim(_ prefix: String) -> PrefixClaim? {
        let path = "\(directory)/\(prefix).lock"
        for _ in 0..<5 {
            let fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return nil }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                close(fd)
                return nil
            }
            var mine = stat(), there = stat()
            if fstat(fd, &mine) == 0, stat(path, &there) == 0, mine.st_ino == there.st_ino, mine.st_dev == there.st_dev {
                _ = ftruncate(fd, 0)
                let text = "\(getpid())\n"
                _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
                return PrefixClaim(prefix: prefix, fd: fd, path: path)
            }
            close(fd)
        }
        return nil
    }

    /// Removes the claim file, then drops the lock. Idempotent.
    public func release() {
        guard fd >= 0 else { return }
        unlink(path)
        close(fd)
        fd = -1
    }
}
