import ToyProtocol
import Foundation

/// What the harness records about a run so the analyzer can attribute flows to apps: the file
/// `apps.json` in the run directory.
///
/// ```json
/// {
///   "schemaVersion": 1,
///   "captures": [
///     { "file": "client-wifi0.pcap", "interface": "wifi0", "side": "client" },
///     { "file": "client-cell0.pcap", "interface": "cell0", "side": "client" }
///   ],
///   "apps": [
///     { "name": "fg", "role": "fg", "variant": "intnw", "appId": 1, "serverPorts": [7001] },
///     { "name": "bg", "role": "bg", "variant": "plain", "appId": 2, "clientPorts": [40100], "logFile": "bg.log" }
///   ]
/// }
/// ```
///
/// - `captures[].file` is relative to the run directory; `side` is `client` (latency and
///   throughput are measured there) or `server` (reported per interface only). Kernel drop counts
///   come from `<file>.stats.json`, which `LiveCapture` writes. Without `captures`, every `*.pcap`
///   in the run directory is used as a client-side capture named after its file.
/// - An app matches a connection when the connection's server port is in `serverPorts` or its
///   client port is in `clientPorts`; otherwise when the toy header's `appId` equals the app's.
///   Give each app its own server port (simplest) or its own `appId`.
/// - `role`: `fg` or `bg`; `variant`: `intnw` or `plain` (which decoder the app's streams need).
/// - Unknown keys are ignored, so the harness may record more.
public struct RunMetadata: Codable, Sendable, Equatable {
    public var schemaVersion: Int
    public var captures: [CaptureEntry]?
    public var apps: [AppEntry]

    public struct CaptureEntry: Codable, Sendable, Equatable {
        public var file: String
        public var interface: String?
        public var side: Side?
        public init(file: String, interface: String? = nil, side: Side? = nil) {
            self.file = file
            self.interface = interface
            self.side = side
        }
    }

    public enum Side: String, Codable, Sendable { case client, server }

    public struct AppEntry: Codable, Sendable, Equatable {
        public var name: String
        public var role: AppRole
        public var variant: ToyVariant
        public var appId: UInt32?
        public var clientPorts: [UInt16]?
        public var serverPorts: [UInt16]?
        /// The app's own log (JSON lines): the app-perceived FG latency (submit to reply) and the
        /// cross-checks; byte counts never come from it.
        public var logFile: String?

        public init(name: String, role: AppRole, variant: ToyVariant, appId: UInt32? = nil,
                    clientPorts: [UInt16]? = nil, serverPorts: [UInt16]? = nil, logFile: String? = nil) {
            self.name = name
            self.role = role
            self.variant = variant
            self.appId = appId
            self.clientPorts = clientPorts
            self.serverPorts = serverPorts
            self.logFile = logFile
        }
    }

    public init(schemaVersion: Int = 1, captures: [CaptureEntry]? = nil, apps: [AppEntry]) {
        self.schemaVersion = schemaVersion
        self.captures = captures
        self.apps = apps
    }

    /// The metadata file name inside a run directory.
    public static let fileName = "apps.json"

    /// Reads `apps.json` from `runDirectory`; nil when absent.
    public static func load(runDirectory: String) throws(AnalysisError) -> RunMetadata? {
        let path = (runDirectory as NSString).appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .badMetadata(path: path, detail: "unreadable")
        }
        do {
            let m = try JSONDecoder().decode(RunMetadata.self, from: data)
            guard m.schemaVersion == 1 else {
                throw AnalysisError.badMetadata(path: path, detail: "unsupported schemaVersion \(m.schemaVersion) (expected 1)")
            }
            return m
        } catch let e as AnalysisError {
            throw e
        } catch {
            throw .badMetadata(path: path, detail: describeDecodingError(error))
        }
    }

    public func write(to runDirectory: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(self).write(to: URL(fileURLWithPath: (runDirectory as NSString).appendingPathComponent(Self.fileName)))
    }
}

/// FG (interactive) or BG (bulk).
public enum AppRole: String, Codable, Sendable { case fg, bg }

func describeDecodingError(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, let ctx):
        return "missing key '\(key.stringValue)' at \(path(ctx))"
    case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
        return "\(ctx.debugDescription) at \(path(ctx))"
    case DecodingError.dataCorrupted(let ctx):
        return "not valid JSON (\(ctx.debugDescription))"
    default:
        return "\(error)"
    }
}

private func path(_ ctx: DecodingError.Context) -> String {
    let p = ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    return p.isEmpty ? "top level" : p
}

/// Analyzer errors the user can hit. Each prints one line.
public enum AnalysisError: Error, CustomStringConvertible, Equatable {
    case badMetadata(path: String, detail: String)
    case noInputs(String)
    case capture(String)
    case output(path: String, detail: String)

    public var description: String {
        switch self {
        case .badMetadata(let p, let d): return "bad run metadata \(p): \(d)"
        case .noInputs(let d): return d
        case .capture(let d): return d
        case .output(let p, let d): return "cannot write \(p): \(d)"
        }
    }
}
