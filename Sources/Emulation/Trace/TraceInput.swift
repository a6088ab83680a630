import SystemPackage

/// Reading and tokenizing untrusted text input (traces and imported logs). Everything here treats the
/// bytes as hostile: bounded size, checked encoding, strict decimal numbers; it never traps.
/// A field parsed from untrusted text: its value, or what is wrong with it.
enum FieldValue {
    case ok(Double)
    case bad(TraceProblem)
}

enum TraceInput {
    /// Writes `text` to `path` (created or truncated, mode 0644).
    static func writeFile(_ path: String, text: String) throws {
        do {
            let fd = try FileDescriptor.open(FilePath(path), .writeOnly, options: [.create, .truncate],
                                             permissions: [.ownerReadWrite, .groupRead, .otherRead])
            try fd.closeAfter { _ = try fd.writeAll(Array(text.utf8)) }
        } catch {
            throw TraceError(file: path, line: nil, problem: .unwritable(reason(error)))
        }
    }

    private static func reason(_ error: Error) -> String {
        if let errno = error as? Errno { return errno.description }
        return "\(error)"
    }

    /// One line of input: its 1-based number and its text (without the line break).
    struct Line {
        var number: Int
        var text: Substring
    }

    /// Longest line accepted (bytes, without the line break). Real trace and log lines are well under
    /// a kilobyte; the bound keeps a streaming read's carry-over buffer small whatever the file holds.
    static let maxLineBytes = 1 << 20

    /// Calls `body` with each line of the file at `path` (LF, with an optional CR before it), reading
    /// it in 64 KiB chunks: memory is bounded by one line plus what `body` keeps, not by the file
    /// size. Rejects invalid UTF-8, NUL and other control characters (tab is allowed), lines longer
    /// than `maxLineBytes` and files larger than `TraceLimits.maxFileBytes`. Returns the number of the
    /// last line, at least 1 (an empty file is "line 1"). Errors name the file `name` (default: `path`).
    @discardableResult
    static func forEachLine(path: String, name: String? = nil, _ body: (Line) throws -> Void) throws -> Int {
        let label = name ?? path
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(path), .readOnly)
        } catch {
            throw TraceError(file: label, line: nil, problem: .unreadable(reason(error)))
        }
        defer { try? fd.close() }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var carry: [UInt8] = []
        var number = 0
        var total = 0
        while true {
            let n: Int
            do {
                n = try chunk.withUnsafeMutableBytes { try fd.read(into: $0) }
            } catch {
                throw TraceError(file: label, line: nil, problem: .unreadable(reason(error)))
            }
            if n == 0 { break }
            total += n
            if total > TraceLimits.maxFileBytes {
                throw TraceError(file: label, line: nil, problem: .fileTooLarge(limitBytes: TraceLimits.maxFileBytes))
            }
            var start = 0
            var i = 0
            while i < n {
                if chunk[i] == UInt8(ascii: "\n") {
                    number += 1
                    if carry.isEmpty {
                        try body(decode(chunk[start..<i], number: number, file: label))
                    } else {
                        carry.append(contentsOf: chunk[start..<i])
                        try checkLength(carry.count, number: number, file: label)
                        try body(decode(carry[...], number: number, file: label))
                        carry.removeAll(keepingCapacity: true)
                    }
                    start = i + 1
                }
                i += 1
            }
            carry.append(contentsOf: chunk[start..<n])
            try checkLength(carry.count, number: number + 1, file: label)
        }
        if !carry.isEmpty {
            number += 1
            try body(decode(carry[...], number: number, file: label))
        }
        return max(1, number)
    }

    /// `forEachLine(path:_:)` over bytes already in memory; the same lines, errors and return value.
    @discardableResult
    static func forEachLine(_ bytes: [UInt8], file: String, _ body: (Line) throws -> Void) throws -> Int {
        var start = 0
        var number = 0
        while start < bytes.count {
            number += 1
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            try checkLength(end - start, number: number, file: file)
            try body(decode(bytes[start..<end], number: number, file: file))
            start = end + 1
        }
        return max(1, number)
    }

    private static func checkLength(_ count: Int, number: Int, file: String) throws {
        if count > maxLineBytes {
            throw TraceError(file: file, line: number, problem: .lineTooLong(limitBytes: maxLineBytes))
        }
    }

    /// One line's bytes (without the LF) checked and decoded.
    private static func decode(_ bytes: ArraySlice<UInt8>, number: Int, file: String) throws -> Line {
        var raw = bytes
        if let last = raw.last, last == UInt8(ascii: "\r") { raw = raw.dropLast() }
        var ascii = true
        for b in raw {
            if b == 0x09 { continue }
            if b < 0x20 || b == 0x7F {
                throw TraceError(file: file, line: number, problem: .controlCharacter(b))
            }
            if b >= 0x80 { ascii = false }
        }
        let text: String
        if ascii {
            text = String(decoding: raw, as: UTF8.self)
        } else if let valid = String(validating: raw, as: UTF8.self) {
            text = valid
        } else {
            throw TraceError(file: file, line: number, problem: .invalidUTF8)
        }
        return Line(number: number, text: Substring(text))
    }

    /// Whitespace-separated fields (space and tab).
    static func fields(_ text: Substring) -> [Substring] {
        text.split(whereSeparator: { $0 == " " || $0 == "\t" })
    }

    /// Text with leading and trailing spaces/tabs removed.
    static func trimmed(_ text: Substring) -> Substring {
        var s = text
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }

    /// Parses a strict decimal number: optional sign, digits with an optional fraction, optional
    /// exponent. Hex floats, "nan", "inf" and anything else are rejected; a valid decimal that overflows
    /// is reported as absurdly large. `limit` is the largest acceptable value, rendered with `unit`.
    static func number(_ token: Substring, column: String, limit: Double, unit: String) -> FieldValue {
        let text = String(token)
        guard isDecimal(token.utf8) else {
            let lower = text.lowercased()
            let unsigned = lower.hasPrefix("-") || lower.hasPrefix("+") ? String(lower.dropFirst()) : lower
            if unsigned == "nan" || unsigned == "inf" || unsigned == "infinity" || unsigned.hasPrefix("nan(") {
                return .bad(.notFinite(column: column, text: text))
            }
            return .bad(.notANumber(column: column, text: text))
        }
        guard let value = Double(text) else { return .bad(.notANumber(column: column, text: text)) }
        if value < 0 { return .bad(.negative(column: column, text: text)) }
        if !value.isFinite || value > limit {
            return .bad(.absurdlyLarge(column: column, text: text, limit: "\(format(limit)) \(unit)"))
        }
        return .ok(value)
    }

    /// `[+-]? (digits ('.' digits*)? | '.' digits) ([eE] [+-]? digits)?`, at most 64 characters.
    static func isDecimal(_ utf8: Substring.UTF8View) -> Bool {
        let bytes = Array(utf8)
        if bytes.isEmpty || bytes.count > 64 { return false }
        var i = 0
        func digits() -> Int {
            let s = i
            while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
            return i - s
        }
        if bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
        var mantissaDigits = digits()
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            mantissaDigits += digits()
        }
        if mantissaDigits == 0 { return false }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { return false }
        }
        return i == bytes.count
    }

    /// Canonical text for a number: integers without a fraction, everything else in Swift's shortest
    /// round-trip form (so parsing the text gives back exactly the same Double).
    static func format(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
