/// Importer for the vnperf drive measurements (one CSV row per second of driving: speed, position, and
/// the measured round-trip time over two cellular carriers and a WiFi hotspot), combined with cellular
/// capacity from Mahimahi delivery-opportunity traces and a stated bandwidth model for WiFi.
///
/// What is measured and what is modelled:
/// - measured (from the CSV): per second, whether WiFi and the chosen carrier were usable, and their RTT;
/// - measured (from the Mahimahi files, a different drive): cellular capacity per second, looped;
/// - modelled: WiFi bandwidth (the CSV has no bandwidth column): a constant `wifiDown`/`wifiUp` while
///   WiFi is usable, 0 (out of range) otherwise. Without Mahimahi files cellular capacity is constant too.
///
/// Outage rule, per second and per link: a value of `-1` (no measurement: no signal, or the previous
/// probes had not completed) or a value of at least `queuedMilliseconds` (a probe that sat in a queue
/// while the link was out of reach and was delivered late) makes that second unusable. An unusable WiFi
/// second is out of range (bandwidth 0). Cellular cannot disappear in this testbed, so an unusable
/// cellular second gets bandwidth 0 (the shaper's floor of 1 kB/s: the link crawls) and the RTT of the
/// last usable second (the first usable one if the drive starts unusable).
public enum VnperfImport {
    public enum Carrier: String, Sendable, CaseIterable, Codable {
        case verizon
        case sprint
    }

    public struct Options: Sendable, Equatable {
        public var carrier: Carrier = .verizon
        /// An RTT at or above this many ms is a queued probe: the second is an outage.
        public var queuedMilliseconds: Double = VnperfImport.defaultQueuedMilliseconds
        /// Modelled WiFi rates while WiFi is usable, bytes/s.
        public var wifiDownBytesPerSecond: Double = VnperfImport.defaultWiFiDown
        public var wifiUpBytesPerSecond: Double = VnperfImport.defaultWiFiUp
        /// Mahimahi files for cellular capacity (uplink, downlink), or nil for constant rates.
        public var cellularCapacity: (up: String, down: String)? = nil
        /// Constant cellular rates when there are no Mahimahi files, bytes/s.
        public var cellularDownBytesPerSecond: Double = TraceGenerator.labCellular.downBytesPerSecond
        public var cellularUpBytesPerSecond: Double = TraceGenerator.labCellular.upBytesPerSecond

        public init() {}

        public static func == (a: Options, b: Options) -> Bool {
            a.carrier == b.carrier && a.queuedMilliseconds == b.queuedMilliseconds
                && a.wifiDownBytesPerSecond == b.wifiDownBytesPerSecond && a.wifiUpBytesPerSecond == b.wifiUpBytesPerSecond
                && a.cellularCapacity?.up == b.cellularCapacity?.up && a.cellularCapacity?.down == b.cellularCapacity?.down
                && a.cellularDownBytesPerSecond == b.cellularDownBytesPerSecond && a.cellularUpBytesPerSecond == b.cellularUpBytesPerSecond
        }
    }

    /// Default queued-probe threshold: probes go out once a second, so a reply after 1 s or more means
    /// the probe waited in a queue while the link carried nothing (the CSVs show such probes as
    /// staircases falling by ~1 s per row from tens of seconds).
    public static let defaultQueuedMilliseconds = 1000.0
    /// Default modelled WiFi rates: the median per-hotspot downlink of the project's synthetic Ann Arbor
    /// model (700 000 B/s = 5.6 Mbit/s) and half that up.
    public static let defaultWiFiDown = 700_000.0
    public static let defaultWiFiUp = 350_000.0

    public static let csvColumns = ["vehiclespeed", "latitude", "longitude", "verizon", "sprint", "xfinitywifi"]

    /// One parsed CSV row: the RTT columns (ms, -1 = none).
    struct Row { var verizon: Double; var sprint: Double; var wifi: Double }

    /// Imports `csv` (read from `read(csv)`, named `csv` in the header). Returns the trace and the header
    /// comments that say where every number came from.
    public static func trace(csv: String, options: Options, read: (String) -> String = { $0 }) throws -> (trace: Trace, comments: [String]) {
        try check(options)
        let rows = try parseCSV(file: read(csv), name: csv)
        let seconds = rows.count
        var cellDown = [Double](repeating: options.cellularDownBytesPerSecond, count: seconds)
        var cellUp = [Double](repeating: options.cellularUpBytesPerSecond, count: seconds)
        if let files = options.cellularCapacity {
            cellUp = try mahimahiRates(stamps: TraceImport.mahimahiTimestamps(file: read(files.up)), name: files.up, seconds: seconds)
            cellDown = try mahimahiRates(stamps: TraceImport.mahimahiTimestamps(file: read(files.down)), name: files.down, seconds: seconds)
        }
        let q = options.queuedMilliseconds
        func usable(_ v: Double) -> Bool { v >= 0 && v < q }
        let cellRTTs = rows.map { options.carrier == .verizon ? $0.verizon : $0.sprint }
        guard let firstUsable = cellRTTs.first(where: usable) else {
            throw TraceError(file: csv, line: nil, problem: .badRecord("\(options.carrier.rawValue) is never usable (every RTT is -1 or at least \(TraceInput.format(q)) ms); nothing to import"))
        }
        var lastCellRTT = firstUsable
        var slices: [TraceSlice] = []
        slices.reserveCapacity(seconds)
        var wifiUsable = 0, cellUsable = 0
        for (i, row) in rows.enumerated() {
            let wifi: LinkConditions
            if usable(row.wifi) {
                wifiUsable += 1
                wifi = LinkConditions(downBytesPerSecond: options.wifiDownBytesPerSecond, upBytesPerSecond: options.wifiUpBytesPerSecond,
                                      rttMilliseconds: row.wifi)
            } else {
                wifi = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)
            }
            let cell: LinkConditions
            if usable(cellRTTs[i]) {
                cellUsable += 1
                lastCellRTT = cellRTTs[i]
                cell = LinkConditions(downBytesPerSecond: cellDown[i], upBytesPerSecond: cellUp[i], rttMilliseconds: cellRTTs[i])
            } else {
                cell = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: lastCellRTT)
            }
            slices.append(TraceSlice(startSeconds: Double(i), conditions: [wifi, cell]))
        }
        let trace = try TraceParser.parse(
            TraceWriter.text(of: Trace(slices: slices, durationSeconds: Double(seconds), source: csv)), source: csv)
        let capacity = options.cellularCapacity.map { "MEASURED on another drive: Mahimahi delivery traces \($0.up) (up) and \($0.down) (down), 1500 B per opportunity, per 1-s slice, looped from their start" }
            ?? "MODELLED: constant \(TraceInput.format(options.cellularDownBytesPerSecond)) B/s down, \(TraceInput.format(options.cellularUpBytesPerSecond)) B/s up"
        let comments = [
            "imported (vnperf) from \(csv): \(seconds) rows, one per second",
            "wifi = xfinitywifi column, cellular = \(options.carrier.rawValue) column",
            "MEASURED: availability and RTT of both links, per second (RTT as in the CSV, ms)",
            "outage rule: -1 or an RTT >= \(TraceInput.format(q)) ms (a queued probe) = the link is unusable that second;",
            "  wifi is then out of range; cellular gets 0 B/s (the 1 kB/s floor) and the last usable RTT",
            "MODELLED wifi bandwidth (no measurement exists): constant \(TraceInput.format(options.wifiDownBytesPerSecond)) B/s down, \(TraceInput.format(options.wifiUpBytesPerSecond)) B/s up while usable",
            "cellular bandwidth: \(capacity)",
            "usable seconds: wifi \(wifiUsable) of \(seconds), cellular \(cellUsable) of \(seconds)",
        ]
        return (trace, comments)
    }

    /// The canonical file text (`trace import --format vnperf` writes exactly this).
    public static func text(csv: String, options: Options, read: (String) -> String = { $0 }) throws -> String {
        let (trace, comments) = try trace(csv: csv, options: options, read: read)
        return TraceWriter.text(of: trace, comments: comments)
    }

    static func check(_ o: Options) throws {
        guard o.queuedMilliseconds.isFinite, o.queuedMilliseconds > 0, o.queuedMilliseconds <= TraceLimits.maxRTTMilliseconds else {
            throw TraceError(file: "--queued-ms", line: nil, problem: .badRecord("must be more than 0 and at most \(TraceInput.format(TraceLimits.maxRTTMilliseconds)) ms"))
        }
        for (name, rate) in [("--wifi-down-Bps", o.wifiDownBytesPerSecond), ("--wifi-up-Bps", o.wifiUpBytesPerSecond)] {
            guard rate.isFinite, rate >= 1, rate <= TraceLimits.maxBytesPerSecond else {
                throw TraceError(file: name, line: nil, problem: .badRecord("must be 1 to \(TraceInput.format(TraceLimits.maxBytesPerSecond)) bytes/s (0 would make WiFi always out of range)"))
            }
        }
        for (name, rate) in [("--cellular-down-Bps", o.cellularDownBytesPerSecond), ("--cellular-up-Bps", o.cellularUpBytesPerSecond)] {
            guard rate.isFinite, rate >= 0, rate <= TraceLimits.maxBytesPerSecond else {
                throw TraceError(file: name, line: nil, problem: .badRecord("must be 0 to \(TraceInput.format(TraceLimits.maxBytesPerSecond)) bytes/s"))
            }
        }
    }

    /// Parses the CSV: the exact header, then six numeric columns per row; RTTs are -1 or 0...60000 ms.
    static func parseCSV(file: String, name: String) throws -> [Row] {
        var rows: [Row] = []
        var sawHeader = false
        let lastLine = try TraceInput.forEachLine(path: file, name: name) { line in
            let text = TraceInput.trimmed(line.text)
            if text.isEmpty { return }
            func fail(_ what: String) -> TraceError { TraceError(file: name, line: line.number, problem: .badRecord(what)) }
            let fields = text.split(separator: ",", omittingEmptySubsequences: false).map { TraceInput.trimmed($0) }
            if !sawHeader {
                guard fields.map({ $0.lowercased() }) == csvColumns else {
                    throw fail("expected the vnperf header \"\(csvColumns.joined(separator: ","))\"")
                }
                sawHeader = true
                return
            }
            guard fields.count == csvColumns.count else {
                throw fail("expected \(csvColumns.count) comma-separated columns (\(csvColumns.joined(separator: ","))), found \(fields.count)")
            }
            var values = [Double](repeating: 0, count: fields.count)
            for (i, field) in fields.enumerated() {
                let negative = field.hasPrefix("-")
                let token = negative ? field.dropFirst() : field
                switch TraceInput.number(token, column: csvColumns[i], limit: i < 3 ? 1000 : TraceLimits.maxRTTMilliseconds * 10, unit: "") {
                case .bad(let problem): throw TraceError(file: name, line: line.number, problem: problem)
                case .ok(let v): values[i] = negative ? -v : v
                }
                if i >= 3 && negative && values[i] != -1 {
                    throw fail("\(csvColumns[i]) is \(field): an RTT must be -1 (no measurement) or a non-negative number of ms")
                }
            }
            rows.append(Row(verizon: values[3], sprint: values[4], wifi: values[5]))
            guard Double(rows.count) <= TraceImport.maxImportSeconds else {
                throw fail("more than \(TraceInput.format(TraceImport.maxImportSeconds)) rows (seconds)")
            }
        }
        guard sawHeader else { throw TraceError(file: name, line: lastLine, problem: .badRecord("empty file: no vnperf header")) }
        guard !rows.isEmpty else { throw TraceError(file: name, line: lastLine, problem: .noSlices) }
        return rows
    }

    /// Bytes/s per 1-second slice for `seconds` slices from a Mahimahi file's timestamps, looping the
    /// file (period = its last timestamp) as Mahimahi does.
    static func mahimahiRates(stamps: [Int], name: String, seconds: Int) throws -> [Double] {
        guard let period = stamps.last, period > 0 else { return [Double](repeating: 0, count: seconds) }
        let endMs = seconds * 1000
        let loops = Double(endMs) / Double(period) + 1
        guard loops * Double(stamps.count) <= TraceImport.maxMahimahiOpportunities else {
            throw TraceError(file: name, line: nil, problem: .badRecord("looping it over \(seconds) s needs more than \(TraceInput.format(TraceImport.maxMahimahiOpportunities)) opportunities"))
        }
        var counts = [Int](repeating: 0, count: seconds)
        var base = 0
        loop: while base < endMs {
            for t in stamps {
                let at = base + t
                if at >= endMs { break loop }
                counts[at / 1000] += 1
            }
            base += period
        }
        return counts.map { Double($0) * TraceImport.mahimahiOpportunityBytes }
    }
}
