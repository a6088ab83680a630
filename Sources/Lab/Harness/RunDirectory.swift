import Crypto
import Emulation
import Foundation

/// A run's home: `runs/<experiment>/<UTC timestamp>/`, with the resolved configuration, versions,
/// trace, logs, pcaps and results, so a run can be analysed again and compared later. `runs/<name>/latest`
/// points at the newest one.
public struct RunDirectory: Sendable {
    public let path: String
    public let experiment: String

    /// Creates a fresh run directory under `root` (default `runs`).
    public static func create(experiment: String, root: String = "runs", now: Date = Date()) throws -> RunDirectory {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let base = "\(root)/\(experiment)"
        var path = "\(base)/\(f.string(from: now))"
        var n = 2
        while FileManager.default.fileExists(atPath: path) {
            path = "\(base)/\(f.string(from: now))-\(n)"
            n += 1
        }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let latest = "\(base)/latest"
        try? FileManager.default.removeItem(atPath: latest)
        try? FileManager.default.createSymbolicLink(atPath: latest, withDestinationPath: (path as NSString).lastPathComponent)
        return RunDirectory(path: path, experiment: experiment)
    }

    public init(path: String, experiment: String) {
        self.path = path
        self.experiment = experiment
    }

    public func subdirectory(_ name: String) throws -> String {
        let p = "\(path)/\(name)"
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    /// Writes `value` as pretty, key-sorted JSON to `name` inside the run directory.
    public func writeJSON<T: Encodable>(_ value: T, to name: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(value).write(to: URL(fileURLWithPath: "\(path)/\(name)"))
    }

    /// Copies the trace into the run (small traces) or records its path and hash (large ones).
    public func recordTrace(_ trace: Trace, name: String) throws -> TraceRecord {
        let text = TraceWriter.text(of: trace)
        let hash = fnv1a64(text)
        if text.utf8.count <= 4 << 20 {
            try text.write(toFile: "\(path)/\(name).trace", atomically: true, encoding: .utf8)
            return TraceRecord(source: trace.source, copy: "\(name).trace", fnv1a64: hash, durationSeconds: trace.durationSeconds)
        }
        return TraceRecord(source: trace.source, copy: nil, fnv1a64: hash, durationSeconds: trace.durationSeconds)
    }
}

public struct TraceRecord: Codable, Sendable {
    public var source: String
    public var copy: String?
    public var fnv1a64: String
    public var durationSeconds: Double
}

/// Tool and system versions recorded with every run.
public struct VersionRecord: Codable, Sendable {
    /// The checkout's state when the record was made (the working directory's `git`): what the
    /// source said then, which is not always what was built (a tree edited or committed during
    /// a long run still runs the binary built before).
    public var gitCommit: String
    public var gitDirty: Bool
    public var swift: String
    public var kernel: String
    public var host: String
    /// SHA-256 (hex) of the executables that ran: `intnw-lab` itself and the `intnw-app` built
    /// beside it (absent in records made before 7 Dec 2026, or where a file was unreadable).
    public var binaries: [String: String]?

    public init(gitCommit: String, gitDirty: Bool, swift: String, kernel: String, host: String, binaries: [String: String]? = nil) {
        self.gitCommit = gitCommit
        self.gitDirty = gitDirty
        self.swift = swift
        self.kernel = kernel
        self.host = host
        self.binaries = binaries
    }

    /// The build, as one string: the executables' hashes when recorded, else the checkout's state.
    public var buildIdentity: String {
        if let binaries, !binaries.isEmpty {
            return binaries.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.prefix(12))" }.joined(separator: ", ")
        }
        return checkout
    }

    /// The checkout's state, as one string.
    public var checkout: String { "\(gitCommit)\(gitDirty ? "+dirty" : "")" }

    /// This process's executable and the `intnw-app` beside it, hashed once per process.
    static let runningBinaries: [String: String] = {
        let exe = RunningExecutable.path
        var out: [String: String] = [:]
        for (name, path) in [((exe as NSString).lastPathComponent, exe), ("intnw-app", "\(RunningExecutable.directory)/intnw-app")] {
            if let h = sha256Hex(ofFile: path) { out[name] = h }
        }
        return out
    }()

    public static func current() async -> VersionRecord {
        let commit = (try? await CommandRunner.run(["git", "rev-parse", "HEAD"]))?.trimmed ?? "unknown"
        let dirty = !((try? await CommandRunner.run(["git", "status", "--porcelain", "--untracked-files=no"]))?.trimmed ?? "").isEmpty
        let swift = (try? await CommandRunner.run(["swift", "--version"]))?.split(separator: "\n").first.map(String.init) ?? "unknown"
        var u = utsname()
        uname(&u)
        func field<T>(_ v: T) -> String { withUnsafeBytes(of: v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
        return VersionRecord(gitCommit: commit, gitDirty: dirty, swift: swift,
                             kernel: "\(field(u.sysname)) \(field(u.release))", host: field(u.nodename),
                             binaries: runningBinaries.isEmpty ? nil : runningBinaries)
    }
}

/// Where this process's executable is: `intnw-app` is built next to `intnw-lab`.
public enum RunningExecutable {
    /// Its path (`/proc/self/exe`, else the name it was started by), read once per process.
    public static let path: String =
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    /// Its directory.
    public static let directory: String = (path as NSString).deletingLastPathComponent
}

/// SHA-256 of a file's bytes, hex, read in 1 MiB pieces; nil when it cannot be read.
func sha256Hex(ofFile path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    var hasher = SHA256()
    // `read(upToCount:)` gives nil or empty data at the end of the file, and throws on a read error.
    do {
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
    } catch {
        return nil
    }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// 64-bit FNV-1a of a string's UTF-8, hex. Identifies a trace in run records (not a security hash).
func fnv1a64(_ s: String) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01b3
    }
    return String(h, radix: 16)
}
