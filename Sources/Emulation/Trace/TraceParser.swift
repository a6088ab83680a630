/// Parser and validator for the canonical trace text format (docs/testbed.md, Traces; the full
/// specification with units is in traces/README.md).
///
/// ```
/// # intnw-trace v1
/// # duration: 600
/// # start_s  wifi_down_Bps  wifi_up_Bps  wifi_rtt_ms  cell_down_Bps  cell_up_Bps  cell_rtt_ms
/// 0.0        1250000        625000       35           48000          16000        220
/// ```
///
/// - `#` starts a comment (also after data on a line). Recognised comment directives: the optional
///   `# intnw-trace v1` header (first line when present), `# duration: S` (seconds; default: last start
///   + 1) and `# links: NAME...` (default `wifi cellular`; must precede the data).
/// - Each data line: `start_s`, then per link `down_Bps up_Bps rtt_ms`, then optionally one loss
///   fraction per link. Loss columns are on every data line or on none.
/// - Rejected, with `FILE:LINE`: wrong column count, non-numbers, NaN/inf, negative values, loss above 1,
///   values beyond `TraceLimits`, start times not strictly increasing, no slices, invalid UTF-8 or
///   control characters. Nothing is silently fixed.
public enum TraceParser {
    /// Parses and validates the trace file at `path`; throws `TraceError`.
    /// The file is streamed line by line: memory grows with the slices, not with the file's bytes.
    public static func parse(contentsOfFile path: String) throws -> Trace {
        var state = ParseState(source: path)
        let last = try TraceInput.forEachLine(path: path) { try state.consume($0) }
        return try state.finish(lastLine: last)
    }

    /// Parses and validates trace text; `source` names it in errors (like a file name). Throws `TraceError`.
    public static func parse(_ text: String, source: String) throws -> Trace {
        try parse(bytes: Array(text.utf8), source: source)
    }

    /// Parses and validates raw bytes (which may be anything); throws `TraceError`.
    public static func parse(bytes: [UInt8], source: String) throws -> Trace {
        var state = ParseState(source: source)
        let last = try TraceInput.forEachLine(bytes, file: source) { try state.consume($0) }
        return try state.finish(lastLine: last)
    }

    /// Default links of the two-link format.
    public static let defaultLinks = ["wifi", "cellular"]

    /// Column names for `links`: `start_s`, then `<link>_down_Bps <link>_up_Bps <link>_rtt_ms` per link,
    /// then `<link>_loss` per link. The link "cellular" is abbreviated "cell" as in the original format.
    public static func columnNames(links: [String]) -> [String] {
        let short = links.map { $0 == "cellular" ? "cell" : $0 }
        return ["start_s"] + short.flatMap { ["\($0)_down_Bps", "\($0)_up_Bps", "\($0)_rtt_ms"] }
            + short.map { "\($0)_loss" }
    }

    /// Checks one field value against its column's unit and limits; shared with the importers.
    static func checkedValue(_ token: Substring, column: String) -> FieldValue {
        let (limit, unit) = limits(forColumn: column)
        let result = TraceInput.number(token, column: column, limit: limit, unit: unit)
        if case .ok(let v) = result, column.hasSuffix("_loss"), v > 1 {
            return .bad(.lossAboveOne(column: column, text: String(token)))
        }
        return result
    }

    private static func limits(forColumn column: String) -> (Double, String) {
        if column.hasSuffix("_Bps") { return (TraceLimits.maxBytesPerSecond, "B/s") }
        if column.hasSuffix("_ms") { return (TraceLimits.maxRTTMilliseconds, "ms") }
        if column.hasSuffix("_loss") { return (.greatestFiniteMagnitude, "") }
        return (TraceLimits.maxSeconds, "s")
    }

    /// Whether `name` is a valid link name for a `# links:` header.
    static func isValidLinkName(_ name: Substring) -> Bool {
        guard let first = name.unicodeScalars.first, ("a"..."z").contains(first),
              name.unicodeScalars.count <= TraceLimits.maxLinkNameLength else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }
}

/// Incremental parse of one file, line by line.
private struct ParseState {
    let source: String
    var links = TraceParser.defaultLinks
    var columns = TraceParser.columnNames(links: TraceParser.defaultLinks)
    var slices: [TraceSlice] = []
    var sawContent = false
    var headerLine: Int?
    var durationLine: Int?
    var durationText = ""
    var duration: Double?
    var linksLine: Int?
    var firstDataLine = 0
    var dataColumnCount = 0
    var lastStartText = ""
    var lastStartLine = 0

    init(source: String) { self.source = source }

    func fail(_ line: Int, _ problem: TraceProblem) -> TraceError {
        TraceError(file: source, line: line, problem: problem)
    }

    mutating func consume(_ line: TraceInput.Line) throws {
        let content = TraceInput.trimmed(line.text)
        if content.isEmpty { return }
        if content.first == "#" {
            try directive(TraceInput.trimmed(content.dropFirst()), line: line.number)
        } else {
            let data = content.firstIndex(of: "#").map { content[..<$0] } ?? content
            try dataLine(TraceInput.fields(data), line: line.number)
        }
        sawContent = true
    }

    private mutating func directive(_ text: Substring, line: Int) throws {
        let words = TraceInput.fields(text)
        if let first = words.first, first.lowercased() == "intnw-trace" {
            if let earlier = headerLine { throw fail(line, .duplicateDirective(name: "intnw-trace", firstLine: earlier)) }
            if sawContent { throw fail(line, .headerNotFirst) }
            guard words.count == 2, words[1] == "v1" else {
                throw fail(line, .unsupportedVersion(String(text)))
            }
            headerLine = line
            return
        }
        guard let colon = text.firstIndex(of: ":") else { return }
        let key = TraceInput.trimmed(text[..<colon]).lowercased()
        let value = TraceInput.trimmed(text[text.index(after: colon)...])
        switch key {
        case "duration":
            if let earlier = durationLine { throw fail(line, .duplicateDirective(name: "duration", firstLine: earlier)) }
            let parts = TraceInput.fields(value)
            guard parts.count == 1 else {
                throw fail(line, .malformedDirective(name: "duration", detail: "needs exactly one number of seconds"))
            }
            switch TraceInput.number(parts[0], column: "duration", limit: TraceLimits.maxSeconds, unit: "s") {
            case .bad(let problem): throw fail(line, problem)
            case .ok(let seconds):
                guard seconds > 0 else {
                    throw fail(line, .malformedDirective(name: "duration", detail: "must be more than 0 seconds"))
                }
                duration = seconds
                durationText = String(parts[0])
                durationLine = line
            }
        case "links":
            if let earlier = linksLine { throw fail(line, .duplicateDirective(name: "links", firstLine: earlier)) }
            if !slices.isEmpty { throw fail(line, .linksAfterData) }
            let names = TraceInput.fields(value)
            guard !names.isEmpty, names.count <= TraceLimits.maxLinks else {
                throw fail(line, .malformedDirective(name: "links", detail: "needs 1 to \(TraceLimits.maxLinks) link names"))
            }
            for name in names where !TraceParser.isValidLinkName(name) {
                throw fail(line, .malformedDirective(
                    name: "links", detail: "\"\(name.prefix(40))\" is not a link name (a-z, 0-9, _ and -, starting with a letter, at most \(TraceLimits.maxLinkNameLength))"))
            }
            if Set(names).count != names.count {
                throw fail(line, .malformedDirective(name: "links", detail: "names a link twice"))
            }
            links = names.map(String.init)
            columns = TraceParser.columnNames(links: links)
            linksLine = line
        default:
            return  // an ordinary comment that happens to contain a colon
        }
    }

    private mutating func dataLine(_ fields: [Substring], line: Int) throws {
        let base = 1 + 3 * links.count
        let withLoss = 1 + 4 * links.count
        if slices.isEmpty {
            guard fields.count == base || fields.count == withLoss else {
                throw fail(line, .wrongColumnCount(found: fields.count, expected: base, expectedWithLoss: withLoss, columns: columns))
            }
            dataColumnCount = fields.count
            firstDataLine = line
        } else if fields.count != dataColumnCount {
            if fields.count == base || fields.count == withLoss {
                throw fail(line, .inconsistentColumnCount(found: fields.count, expected: dataColumnCount, firstDataLine: firstDataLine))
            }
            throw fail(line, .wrongColumnCount(found: fields.count, expected: base, expectedWithLoss: withLoss, columns: columns))
        }
        var values = [Double](repeating: 0, count: withLoss)
        for (i, field) in fields.enumerated() {
            switch TraceParser.checkedValue(field, column: columns[i]) {
            case .bad(let problem): throw fail(line, problem)
            case .ok(let v): values[i] = v
            }
        }
        let start = values[0]
        if let previous = slices.last, start <= previous.startSeconds {
            throw fail(line, .startNotIncreasing(text: String(fields[0]), previous: lastStartText, previousLine: lastStartLine))
        }
        let n = links.count
        let conditions = (0..<n).map { k in
            LinkConditions(downBytesPerSecond: values[1 + 3 * k], upBytesPerSecond: values[2 + 3 * k],
                           rttMilliseconds: values[3 + 3 * k], lossFraction: values[1 + 3 * n + k])
        }
        slices.append(TraceSlice(startSeconds: start, conditions: conditions))
        lastStartText = String(fields[0])
        lastStartLine = line
    }

    func finish(lastLine: Int) throws -> Trace {
        guard let last = slices.last else { throw fail(lastLine, .noSlices) }
        let total: Double
        if let duration, let durationLine {
            guard duration > last.startSeconds else {
                throw fail(durationLine, .durationNotAfterLastStart(duration: durationText, lastStart: lastStartText, lastStartLine: lastStartLine))
            }
            total = duration
        } else {
            total = last.startSeconds + 1
        }
        return Trace(links: links, slices: slices, durationSeconds: total, source: source)
    }
}
