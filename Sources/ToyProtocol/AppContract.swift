/// What the apps, the harness and the analyzer agree on besides the message format: the
/// transport variants with their default server ports, and how an app's JSON-lines log is named.

/// Which transport an app uses.
public enum ToyVariant: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// IntNW multisocket: each toy message is one IROB.
    case intnw
    /// One plain TCP connection: toy messages back to back on the stream.
    case plain

    public var description: String { rawValue }

    /// Default server port of the variant, so both servers can run side by side.
    public var defaultPort: UInt16 {
        switch self {
        case .plain: return 5000
        case .intnw: return 5001
        }
    }
}

/// The name of an app's JSON-lines log in a trial directory: one file per process (apps sharing a
/// process share its log), else per app.
public enum AppLogName {
    public static func file(process: String?, app: String) -> String { "\(process ?? app).jsonl" }
}
