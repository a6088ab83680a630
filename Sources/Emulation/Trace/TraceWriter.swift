/// Serializes a `Trace` to the canonical text format that `TraceParser` reads.
///
/// The output always has the `# intnw-trace v1` header and an explicit `# duration:`, a `# links:` line
/// only for non-default links, loss columns only when some slice has loss, and columns padded for
/// reading. Numbers are written so that parsing gives back exactly the same values (integers without a
/// fraction, everything else in shortest round-trip form), so `parse(text(of: t))` equals `t` up to
/// `source`. The writer does not validate: write only traces that came from the parser, an importer or
/// the generator, or check them with `TraceParser` afterwards.
public enum TraceWriter {
    /// Canonical text of `trace`. Each of `comments` becomes a `# ` line after the header (line breaks
    /// inside a comment start a new comment line; a line that would read as a directive is prefixed
    /// with "(comment) ").
    public static func text(of trace: Trace, comments: [String] = []) -> String {
        let withLoss = trace.slices.contains { $0.conditions.contains { $0.lossFraction != 0 } }
        let n = trace.links.count
        let allColumns = TraceParser.columnNames(links: trace.links)
        let header = withLoss ? allColumns : Array(allColumns.prefix(1 + 3 * n))

        var rows: [[String]] = []
        rows.reserveCapacity(trace.slices.count)
        for slice in trace.slices {
            var row = [TraceInput.format(slice.startSeconds)]
            for c in slice.conditions {
                row.append(TraceInput.format(c.downBytesPerSecond))
                row.append(TraceInput.format(c.upBytesPerSecond))
                row.append(TraceInput.format(c.rttMilliseconds))
            }
            if withLoss { row += slice.conditions.map { TraceInput.format($0.lossFraction) } }
            rows.append(row)
        }
        var widths = header.map(\.count)
        for row in rows {
            for (i, field) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], field.count) }
        }

        var out = "# intnw-trace v1\n"
        for comment in comments {
            for line in comment.split(separator: "\n", omittingEmptySubsequences: false) {
                out += line.isEmpty ? "#\n" : "# \(looksLikeDirective(line) ? "(comment) " : "")\(line)\n"
            }
        }
        if trace.links != TraceParser.defaultLinks {
            out += "# links: \(trace.links.joined(separator: " "))\n"
        }
        out += "# duration: \(TraceInput.format(trace.durationSeconds))\n"
        // The column header is a comment, so data lines start with two spaces to line up under it.
        out += "# " + padded(header, widths) + "\n"
        for row in rows {
            out += "  " + padded(row, widths) + "\n"
        }
        return out
    }

    /// Writes the canonical text of `trace` to `path`; throws `TraceError` (`.unwritable`).
    public static func write(_ trace: Trace, toFile path: String, comments: [String] = []) throws {
        try TraceInput.writeFile(path, text: text(of: trace, comments: comments))
    }

    /// Writes already-rendered trace text (e.g. `TraceGenerator.text`) to `path`; throws `TraceError`.
    public static func write(text: String, toFile path: String) throws {
        try TraceInput.writeFile(path, text: text)
    }

    /// Whether a comment line would be read back as a directive (e.g. a file name that contains a
    /// line break followed by "duration: 5"); such lines get a "(comment) " prefix.
    private static func looksLikeDirective(_ line: Substring) -> Bool {
        let text = TraceInput.trimmed(line).lowercased()
        return text.hasPrefix("intnw-trace") || text.hasPrefix("duration") || text.hasPrefix("links")
    }

    private static func padded(_ fields: [String], _ widths: [Int]) -> String {
        var line = ""
        for (i, field) in fields.enumerated() {
            if i > 0 { line += "  " }
            line += field
            if i < fields.count - 1, field.count < widths[i] {
                line += String(repeating: " ", count: widths[i] - field.count)
            }
        }
        return line
    }
}
