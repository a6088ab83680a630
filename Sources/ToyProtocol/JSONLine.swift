/// Builds one JSON object on one line, fields in the order they are added.
///
/// The apps write a handful of lines per second; a hand-built line keeps field order stable (easy
/// to read, easy to diff) and avoids an encoder round trip. Only the value types the logs need
/// are supported.
public struct JSONLine: Sendable {
    private var text = "{"
    private var empty = true

    public init() {}

    private mutating func key(_ k: String) {
        if !empty { text += "," }
        empty = false
        JSONLine.appendQuoted(k, to: &text)
        text += ":"
    }

    public mutating func add(_ k: String, _ v: UInt64) { key(k); text += String(v) }
    public mutating func add(_ k: String, _ v: Int) { key(k); text += String(v) }
    public mutating func add(_ k: String, _ v: UInt32) { key(k); text += String(v) }
    public mutating func add(_ k: String, _ v: Bool) { key(k); text += v ? "true" : "false" }
    public mutating func add(_ k: String, _ v: String) { key(k); JSONLine.appendQuoted(v, to: &text) }
    /// A number with exactly `decimals` digits after the point; NaN and infinities become `null`.
    public mutating func add(_ k: String, _ v: Double, decimals: Int) { key(k); text += JSONLine.fixed(v, decimals: decimals) }
    /// An optional number; nil becomes `null`.
    public mutating func add(_ k: String, _ v: Double?, decimals: Int) {
        key(k)
        text += v.map { JSONLine.fixed($0, decimals: decimals) } ?? "null"
    }
    /// A value that is already JSON (an object or array built elsewhere).
    public mutating func addRaw(_ k: String, json: String) { key(k); text += json }

    /// The finished object, without a trailing newline.
    public var string: String { text + "}" }

    /// `value` with `decimals` (0...9) fractional digits, rounded half away from zero; `null` when
    /// not finite. Magnitudes of 1e15 and above fall back to Swift's shortest representation.
    public static func fixed(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return "null" }
        let d = max(0, min(decimals, 9))
        var scale: UInt64 = 1
        for _ in 0 ..< d { scale *= 10 }
        let magnitude = abs(value)
        guard magnitude < 1e15 else { return "\(value)" }
        let scaled = UInt64((magnitude * Double(scale)).rounded())
        let whole = scaled / scale
        let frac = scaled % scale
        var s = (value < 0 && scaled != 0) ? "-" : ""
        s += String(whole)
        if d > 0 {
            let f = String(frac)
            s += "." + String(repeating: "0", count: d - f.count) + f
        }
        return s
    }

    /// Appends `s` as a JSON string literal (quotes, backslashes and control characters escaped).
    public static func appendQuoted(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
