/// Importers for public trace formats (docs/testbed.md, Traces), mapping them onto one link of a two-link
/// canonical trace. Both read untrusted files and reject bad input with `FILE:LINE` (`TraceError`).
public enum TraceImport {
    /// Where an imported direction's rate comes from.
    public enum DirectionSource: Sendable, Equatable {
        /// A Mahimahi delivery-opportunity file.
        case file(String)
        /// A fixed rate, bytes per second.
        case constant(bytesPerSecond: Double)
    }

    /// What the trace's other link does while the imported data drives `link`.
    public struct Mapping: Sendable, Equatable {
        /// The link the imported rates drive.
        public var link: LinkKind
        /// RTT of that link, ms (the public formats carry none).
        public var rttMilliseconds: Double
        /// Conditions of the cellular link when `link` is `.wifi` (cellular is always present). When
        /// `link` is `.cellular`, WiFi is unavailable throughout.
        public var otherCellular: LinkConditions

        public init(link: LinkKind, rttMilliseconds: Double, otherCellular: LinkConditions = TraceGenerator.labCellular) {
            self.link = link
            self.rttMilliseconds = rttMilliseconds
            self.otherCellular = otherCellular
        }
    }

    /// Bytes one Mahimahi delivery opportunity carries (one MTU-sized packet).
    public static let mahimahiOpportunityBytes = 1500.0
    /// Length of the slices Mahimahi traces are binned into, seconds.
    public static let mahimahiSliceSeconds = 1.0

    // MARK: Mahimahi

    /// Imports Mahimahi delivery-opportunity traces: each line is an integer millisecond timestamp,
    /// non-decreasing, and each line is one opportunity to deliver 1500 bytes; the last timestamp is the
    /// trace's period (Mahimahi loops the file). Each direction is binned into 1-second slices
    /// (bytes/s = 1500 x opportunities in the slice, divided by the slice length for a shorter last
    /// slice). With two files of different periods the shorter one loops, as in Mahimahi, up to the
    /// longer period, which becomes the trace's duration. An opportunity at exactly the period's end
    /// counts in the last slice. At least one direction must be a file.
    public static func mahimahi(uplink: DirectionSource, downlink: DirectionSource, mapping: Mapping) throws -> Trace {
        var upStamps: [Int]?, downStamps: [Int]?
        if case .file(let path) = uplink { upStamps = try mahimahiTimestamps(file: path) }
        if case .file(let path) = downlink { downStamps = try mahimahiTimestamps(file: path) }
        let periods = [upStamps, downStamps].compactMap { $0?.last }
        guard let periodMs = periods.max() else {
            throw TraceError(file: "mahimahi import", line: nil, problem: .badRecord("needs an uplink or a downlink file"))
        }
        try checkMapping(mapping)
        for (name, source) in [("--uplink-Bps", uplink), ("--downlink-Bps", downlink)] {
            if case .constant(let rate) = source { try checkRate(rate, name: name) }
        }
        // Looping the shorter file costs one step per opportunity; refuse inputs that would take minutes.
        for stamps in [upStamps, downStamps].compactMap({ $0 }) {
            let loops = Double(periodMs) / Double(max(1, stamps.last ?? 1)) + 1
            guard loops * Double(stamps.count) <= maxMahimahiOpportunities else {
                throw TraceError(file: "mahimahi import", line: nil, problem: .badRecord(
                    "looping the shorter file over the longer one's period needs more than \(TraceInput.format(maxMahimahiOpportunities)) opportunities"))
            }
        }
        let binCount = (periodMs + 999) / 1000
        let lastBinSeconds = Double(periodMs - (binCount - 1) * 1000) / 1000
        func rates(_ source: DirectionSource, _ stamps: [Int]?) -> [Double] {
            if case .constant(let bytesPerSecond) = source { return Array(repeating: bytesPerSecond, count: binCount) }
            guard let stamps, let period = stamps.last else { return Array(repeating: 0, count: binCount) }
            var counts = [Int](repeating: 0, count: binCount)
            var base = 0
            loop: while base < periodMs {
                for t in stamps {
                    let at = base + t
                    if at > periodMs { break loop }
                    counts[min(at / 1000, binCount - 1)] += 1
                }
                base += period
            }
            return counts.indices.map { i in
                let seconds = i == binCount - 1 ? lastBinSeconds : mahimahiSliceSeconds
                return (Double(counts[i]) * mahimahiOpportunityBytes / seconds).rounded()
            }
        }
        let up = rates(uplink, upStamps), down = rates(downlink, downStamps)
        for (name, values) in [("uplink", up), ("downlink", down)] {
            if let i = values.firstIndex(where: { $0 > TraceLimits.maxBytesPerSecond }) {
                throw TraceError(file: "mahimahi import", line: nil, problem: .badRecord(
                    "\(name) second \(i) has \(TraceInput.format(values[i])) B/s, above the limit of \(TraceInput.format(TraceLimits.maxBytesPerSecond)) B/s"))
            }
        }
        let names = [("uplink", uplink), ("downlink", downlink)].compactMap { name, source -> String? in
            if case .file(let path) = source { return "\(name) \(path)" }
            return nil
        }
        let starts = (0..<binCount).map { Double($0) * mahimahiSliceSeconds }
        return try assemble(starts: starts, down: down, up: up, durationSeconds: Double(periodMs) / 1000,
                            mapping: mapping, source: names.joined(separator: ", "))
    }

    /// Reads one Mahimahi file: its timestamps, validated.
    static func mahimahiTimestamps(file: String) throws -> [Int] {
        var stamps: [Int] = []
        var previousLine = 0
        let lastLine = try TraceInput.forEachLine(path: file) { line in
            let text = TraceInput.trimmed(line.text)
            if text.isEmpty { return }
            func fail(_ what: String) -> TraceError { TraceError(file: file, line: line.number, problem: .badRecord(what)) }
            guard text.utf8.count <= 12, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let ms = Int(text) else {
                throw fail("\"\(text.prefix(40))\" is not a whole number of milliseconds (one timestamp per line)")
            }
            guard Double(ms) <= maxImportSeconds * 1000 else {
                throw fail("timestamp \(ms) ms is absurdly large (limit \(TraceInput.format(maxImportSeconds * 1000)) ms)")
            }
            if let previous = stamps.last, ms < previous {
                throw fail("timestamp \(ms) ms is before the previous one, \(previous) ms (line \(previousLine)); timestamps must not decrease")
            }
            stamps.append(ms)
            previousLine = line.number
        }
        guard let last = stamps.last else {
            throw TraceError(file: file, line: lastLine, problem: .badRecord("no timestamps: the file is empty"))
        }
        guard last > 0 else {
            throw TraceError(file: file, line: previousLine, problem: .badRecord("the last timestamp is 0 ms; a Mahimahi trace must last more than 0 ms"))
        }
        return stamps
    }

    // MARK: HSDPA / 4G logs

    /// Imports a six-column Norway HSDPA or Ghent 4G log: `unix_s mono_ms lat lon bytes ms` per line,
    /// `bytes` received during the `ms` interval ending at the sample. Each line becomes one slice of
    /// `ms` milliseconds starting where the previous one ended (the first at 0), with downlink
    /// `bytes / ms * 1000` bytes/s (rounded to whole bytes/s) and uplink `upFraction` times that (the logs
    /// measure only the downlink). `mono_ms` must not decrease; `lat`/`lon` must be numbers but are
    /// otherwise ignored.
    public static func hsdpa(file: String, mapping: Mapping, upFraction: Double = 1) throws -> Trace {
        try checkMapping(mapping)
        guard upFraction >= 0, upFraction <= 1000, upFraction.isFinite else {
            throw TraceError(file: "--up-fraction", line: nil, problem: .badRecord("must be a finite number from 0 to 1000"))
        }
        let columns = ["unix_s", "mono_ms", "lat", "lon", "bytes", "ms"]
        var starts: [Double] = [], down: [Double] = [], up: [Double] = []
        var elapsedMs = 0.0
        var previousMono: (value: Double, line: Int)?
        let lastLine = try TraceInput.forEachLine(path: file) { line in
            var text = TraceInput.trimmed(line.text)
            if let hash = text.firstIndex(of: "#") { text = text[..<hash] }
            if text.isEmpty { return }
            func fail(_ p: TraceProblem) -> TraceError { TraceError(file: file, line: line.number, problem: p) }
            let fields = TraceInput.fields(text)
            guard fields.count == 6 else {
                throw fail(.badRecord("expected 6 columns (\(columns.joined(separator: " "))), found \(fields.count)"))
            }
            var values = [Double](repeating: 0, count: 6)
            for i in 0..<6 {
                // lat/lon may be negative (south/west); every other column is a non-negative count.
                let signed = i == 2 || i == 3
                let token = signed && fields[i].hasPrefix("-") ? fields[i].dropFirst() : fields[i]
                switch TraceInput.number(token, column: columns[i], limit: signed ? 180 : 1e15, unit: signed ? "degrees" : "") {
                case .bad(let problem): throw fail(problem)
                case .ok(let v): values[i] = v
                }
            }
            let mono = values[1], bytes = values[4], ms = values[5]
            if let previous = previousMono, mono < previous.value {
                throw fail(.badRecord("mono_ms \(fields[1]) is before the previous line's \(TraceInput.format(previous.value)) (line \(previous.line)); time must not go backwards"))
            }
            guard ms > 0 else { throw fail(.badRecord("ms is 0: an interval must last more than 0 ms")) }
            let rate = (bytes / ms * 1000).rounded()
            guard rate <= TraceLimits.maxBytesPerSecond else {
                throw fail(.absurdlyLarge(column: "bytes/ms", text: "\(fields[4])/\(fields[5])", limit: "\(TraceInput.format(TraceLimits.maxBytesPerSecond)) B/s"))
            }
            guard elapsedMs + ms <= maxImportSeconds * 1000 else {
                throw fail(.absurdlyLarge(column: "ms", text: "total \(TraceInput.format(elapsedMs + ms))", limit: "\(TraceInput.format(maxImportSeconds * 1000)) ms"))
            }
            starts.append(elapsedMs / 1000)
            down.append(rate)
            up.append((rate * upFraction).rounded())
            elapsedMs += ms
            previousMono = (mono, line.number)
        }
        guard !starts.isEmpty else {
            throw TraceError(file: file, line: lastLine, problem: .noSlices)
        }
        return try assemble(starts: starts, down: down, up: up, durationSeconds: elapsedMs / 1000, mapping: mapping, source: file)
    }

    // MARK: Shared

    /// Longest imported trace: 10 days (the generator's limit too).
    public static let maxImportSeconds: Double = 864_000
    /// Most opportunities a Mahimahi import may step through (looping included).
    static let maxMahimahiOpportunities: Double = 200_000_000

    private static func checkMapping(_ mapping: Mapping) throws {
        try checkRTT(mapping.rttMilliseconds, name: "--rtt-ms")
        if mapping.link == .wifi {
            try checkRate(mapping.otherCellular.downBytesPerSecond, name: "cellular downlink")
            try checkRate(mapping.otherCellular.upBytesPerSecond, name: "cellular uplink")
            try checkRTT(mapping.otherCellular.rttMilliseconds, name: "cellular RTT")
            guard mapping.otherCellular.lossFraction >= 0, mapping.otherCellular.lossFraction <= 1 else {
                throw TraceError(file: "cellular loss", line: nil, problem: .badRecord("must be a fraction from 0 to 1"))
            }
        }
    }

    private static func checkRTT(_ rtt: Double, name: String) throws {
        guard rtt.isFinite, rtt >= 0, rtt <= TraceLimits.maxRTTMilliseconds else {
            throw TraceError(file: name, line: nil, problem: .badRecord("RTT must be 0 to \(TraceInput.format(TraceLimits.maxRTTMilliseconds)) ms"))
        }
    }

    private static func checkRate(_ rate: Double, name: String) throws {
        guard rate.isFinite, rate >= 0, rate <= TraceLimits.maxBytesPerSecond else {
            throw TraceError(file: name, line: nil, problem: .badRecord("rate must be 0 to \(TraceInput.format(TraceLimits.maxBytesPerSecond)) bytes/s"))
        }
    }

    private static func assemble(starts: [Double], down: [Double], up: [Double], durationSeconds: Double,
                                 mapping: Mapping, source: String) throws -> Trace {
        let off = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)
        let slices = starts.indices.map { i -> TraceSlice in
            let imported = LinkConditions(downBytesPerSecond: down[i], upBytesPerSecond: up[i], rttMilliseconds: mapping.rttMilliseconds)
            switch mapping.link {
            case .wifi: return TraceSlice(startSeconds: starts[i], conditions: [imported, mapping.otherCellular])
            case .cellular: return TraceSlice(startSeconds: starts[i], conditions: [off, imported])
            }
        }
        let trace = Trace(slices: slices, durationSeconds: durationSeconds, source: source)
        // The result must be a valid trace; check it through the parser rather than trusting the
        // arithmetic above (e.g. constant rates given by the caller).
        return try TraceParser.parse(TraceWriter.text(of: trace), source: source)
    }
}
