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
    public var gitCommit: String
    public var gitDirty: Bool
    public var swift: String
    public var kernel: String
    public var host: String

    public static func current() async -> VersionRecord {
        let commit = (try? await CommandRunner.run(["git", "rev-parse", "HEAD"]))?.trimmed ?? "unknown"
        let dirty = !((try? await CommandRunner.run(["git", "status", "--porcelain", "--untracked-files=no"]))?.trimmed ?? "").isEmpty
        let swift = (try? await CommandRunner.run(["swift", "--version"]))?.split(separator: "\n").first.map(String.init) ?? "unknown"
        var u = utsname()
        uname(&u)
        func field<T>(_ v: T) -> String { withUnsafeBytes(of: v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
        return VersionRecord(gitCommit: commit, gitDirty: dirty, swift: swift,
                             kernel: "\(field(u.sysname)) \(field(u.release))", host: field(u.nodename))
    }
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
