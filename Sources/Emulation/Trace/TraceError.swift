/// What is wrong with a trace file or an imported log, without the location (see `TraceError`).
///
/// Every case renders as one line of text saying what is wrong and, where it helps, what was expected.
public enum TraceProblem: Sendable, Equatable, CustomStringConvertible {
    /// The file could not be opened or read (the text is the system's reason).
    case unreadable(String)
    /// The output file could not be written (the text is the system's reason).
    case unwritable(String)
    /// The file is bigger than `TraceLimits.maxFileBytes`.
    case fileTooLarge(limitBytes: Int)
    /// A line is longer than `limitBytes` bytes.
    case lineTooLong(limitBytes: Int)
    /// A line is not valid UTF-8 text.
    case invalidUTF8
    /// A line holds a NUL or another control character (its byte value).
    case controlCharacter(UInt8)
    /// No slices at all (empty file, or only comments and blank lines).
    case noSlices
    /// A data line has a column count that fits neither form of the format.
    case wrongColumnCount(found: Int, expected: Int, expectedWithLoss: Int, columns: [String])
    /// A data line has a different column count from the first data line (loss columns are all or none).
    case inconsistentColumnCount(found: Int, expected: Int, firstDataLine: Int)
    /// A field is not a decimal number.
    case notANumber(column: String, text: String)
    /// A field is NaN or infinity.
    case notFinite(column: String, text: String)
    /// A field is below zero.
    case negative(column: String, text: String)
    /// A loss fraction above 1.
    case lossAboveOne(column: String, text: String)
    /// A field is beyond the sanity limit for its unit (`limit` is in that unit).
    case absurdlyLarge(column: String, text: String, limit: String)
    /// A start time is not after the previous slice's.
    case startNotIncreasing(text: String, previous: String, previousLine: Int)
    /// The `# intnw-trace vN` header names a version this build cannot read.
    case unsupportedVersion(String)
    /// The `# intnw-trace` header appears after other content.
    case headerNotFirst
    /// A `# key:` directive appears twice.
    case duplicateDirective(name: String, firstLine: Int)
    /// A `# key:` directive whose value is malformed (the detail says how).
    case malformedDirective(name: String, detail: String)
    /// `# links:` after the first data line.
    case linksAfterData
    /// `# duration:` is not after the last slice's start.
    case durationNotAfterLastStart(duration: String, lastStart: String, lastStartLine: Int)
    /// An importer's input record is wrong in a format-specific way (the text says how).
    case badRecord(String)

    public var description: String {
        switch self {
        case .unreadable(let why): return "cannot read: \(why)"
        case .unwritable(let why): return "cannot write: \(why)"
        case .fileTooLarge(let limit): return "file is larger than \(limit >> 20) MiB; refusing to load it"
        case .lineTooLong(let limit): return "line is longer than \(limit >> 10) KiB (binary file?)"
        case .invalidUTF8: return "not valid UTF-8 text (binary file?)"
        case .controlCharacter(0): return "contains a NUL byte (binary file?)"
        case .controlCharacter(let b):
            return "contains control character 0x\(String(b, radix: 16, uppercase: true)) (binary file?)"
        case .noSlices: return "no slices: the trace has no data lines"
        case let .wrongColumnCount(found, expected, withLoss, columns):
            return "expected \(expected) columns (\(columns.prefix(expected).joined(separator: " "))) or \(withLoss) "
                + "with loss columns (\(columns.suffix(withLoss - expected).joined(separator: " "))), found \(found)"
        case let .inconsistentColumnCount(found, expected, first):
            return "expected \(expected) columns like the first data line (line \(first)), found \(found); "
                + "loss columns must be on every line or on none"
        case let .notANumber(column, text): return "\(column): \(quoted(text)) is not a number"
        case let .notFinite(column, text): return "\(column): \(quoted(text)) is not allowed (values must be finite)"
        case let .negative(column, text): return "\(column): \(text) is negative"
        case let .lossAboveOne(column, text): return "\(column): \(text) is above 1 (loss is a fraction 0..1)"
        case let .absurdlyLarge(column, text, limit): return "\(column): \(text) is absurdly large (limit \(limit))"
        case let .startNotIncreasing(text, previous, previousLine):
            return "start_s \(text) is not after the previous slice's start \(previous) (line \(previousLine)); "
                + "start times must strictly increase"
        case .unsupportedVersion(let v):
            return "unsupported trace format \(quoted(v)); this build reads \"intnw-trace v1\""
        case .headerNotFirst: return "the \"# intnw-trace v1\" header must be the first line"
        case let .duplicateDirective(name, first): return "second \"# \(name):\" line (the first is line \(first))"
        case let .malformedDirective(name, detail): return "\"# \(name):\" \(detail)"
        case .linksAfterData: return "\"# links:\" must come before the first data line"
        case let .durationNotAfterLastStart(duration, lastStart, line):
            return "duration \(duration) s is not after the last slice's start \(lastStart) s (line \(line))"
        case .badRecord(let what): return what
        }
    }

    /// Quotes user text for a one-line message, shortening long garbage.
    private func quoted(_ text: String) -> String {
        let shown = text.count > 40 ? String(text.prefix(40)) + "..." : text
        return "\"\(shown)\""
    }
}

/// A trace or log that cannot be used. Prints as `FILE:LINE: what is wrong` (or `FILE: what is wrong`
/// when the problem concerns the whole file, such as an unreadable path).
public struct TraceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file name as given by the user (or the source name of an in-memory text).
    public var file: String
    /// 1-based line number, `nil` for whole-file problems.
    public var line: Int?
    public var problem: TraceProblem

    public init(file: String, line: Int?, problem: TraceProblem) {
        self.file = file
        self.line = line
        self.problem = problem
    }

    public var description: String {
        if let line { return "\(file):\(line): \(problem)" }
        return "\(file): \(problem)"
    }
}

/// Sanity limits beyond which a value is treated as a mistake rather than a network condition.
public enum TraceLimits {
    /// Largest trace or log file we load into memory: 256 MiB (a 1-second-slice trace of a year is ~2 GB,
    /// so anything this big is almost certainly the wrong file).
    public static let maxFileBytes = 256 << 20
    /// 10 GB/s (80 Gbit/s): beyond any wireless link.
    public static let maxBytesPerSecond: Double = 1e10
    /// 60 s round trip: beyond this a link is down, not slow.
    public static let maxRTTMilliseconds: Double = 60_000
    /// 10^7 s (about 116 days) for start times and durations.
    public static let maxSeconds: Double = 1e7
    /// At most 16 links in a `# links:` header.
    public static let maxLinks = 16
    /// Link names are 1...32 characters of `[a-z0-9_-]`, starting with a letter.
    public static let maxLinkNameLength = 32
}
