import Foundation
import ToyProtocol

/// The wire measurements compared with what an app logged about itself (the apps' logs are a
/// cross-check, never the source), and the figures of that log the experiments judge
/// app-perceived results by: experiments read these (and `TrialAnalysis.appLatencies`), never the
/// log files. Only apps whose `logFile` is in the run metadata and readable get one.
public struct AppLogCheck: Codable, Sendable, Equatable {
    /// The log file compared against.
    public var file: String
    /// FG requests found both in the log (`type: fg`) and on the wire, by sequence number.
    public var matchedRequests: Int
    /// FG requests in the log with no wire measurement, and the reverse.
    public var onlyInLog: Int
    public var onlyOnWire: Int
    /// Median and largest |wire latency − logged latency|, milliseconds.
    public var medianAbsDifferenceMs: Double?
    public var maxAbsDifferenceMs: Double?
    /// Median latency as logged and as measured on the wire (over matched requests), ms.
    public var loggedMedianLatencyMs: Double?
    public var wireMedianLatencyMs: Double?
    /// BG: chunks the app logged as acknowledged, and their bytes (header included).
    public var loggedChunks: Int
    public var loggedChunkBytes: UInt64
    /// FG requests the app logged as never answered (`fg_unanswered`).
    public var loggedUnanswered: Int
    /// Lines of the log that were not records of the app-log contract (left out; nil in results
    /// written before this was counted).
    public var skippedLines: Int?
    /// The first such line's number (1-based) and why, as one line; nil when none.
    public var firstSkippedLine: String?
    /// FG: requests the app says it sent (its last FG summary); nil when it logged no summary.
    public var loggedRequestsSent: UInt64?
}

/// An app's JSON-lines log decoded through the ToyProtocol contract (`AppLogRecord`): the only
/// place that parses the apps' logs.
public struct AppLog: Sendable, Equatable {
    /// The decoded lines, in file order.
    public var records: [AppLogRecord] = []
    /// Non-empty lines that are not a record of the contract (not a JSON object, or a known `type`
    /// with a missing or mistyped field): counted and left out, never fatal.
    public var skippedLines = 0
    /// The first skipped line's number (1-based) and why, as one line.
    public var firstProblem: String?

    public init(records: [AppLogRecord] = [], skippedLines: Int = 0, firstProblem: String? = nil) {
        self.records = records
        self.skippedLines = skippedLines
        self.firstProblem = firstProblem
    }

    /// Decodes `text` line by line; blank lines are ignored.
    public static func parse(_ text: String) -> AppLog {
        var log = AppLog()
        let decoder = JSONDecoder()
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            do {
                log.records.append(try decoder.decode(AppLogRecord.self, from: Data(line.utf8)))
            } catch {
                log.skippedLines += 1
                if log.firstProblem == nil { log.firstProblem = "line \(i + 1): \(describe(error))" }
            }
        }
        return log
    }

    /// The log at `path`, or nil when it cannot be read.
    public static func read(path: String) -> AppLog? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return parse(text)
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing field \(key.stringValue)"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "field \(c.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type"
        case DecodingError.dataCorrupted(let c):
            return c.codingPath.isEmpty ? "not a JSON object" : "field \(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        default: return "not a JSON object"
        }
    }

    /// Answered FG requests of app `appID` (every app when nil), in file order.
    public func fgRequests(app appID: UInt32? = nil) -> [FGRequestRecord] {
        records.compactMap { if case .fg(let r) = $0, appID == nil || r.appID == appID { return r } else { return nil } }
    }
    /// FG requests of app `appID` left unanswered at shutdown.
    public func fgUnanswered(app appID: UInt32? = nil) -> [FGUnansweredRecord] {
        records.compactMap { if case .fgUnanswered(let r) = $0, appID == nil || r.appID == appID { return r } else { return nil } }
    }
    /// Acknowledged BG chunks of app `appID`.
    public func bgChunks(app appID: UInt32? = nil) -> [BGChunkRecord] {
        records.compactMap { if case .bgChunk(let r) = $0, appID == nil || r.appID == appID { return r } else { return nil } }
    }
    /// The last FG summary of app `appID`.
    public func fgSummary(app appID: UInt32? = nil) -> FGSummary? {
        records.lazy.reversed().compactMap { if case .fgSummary(let r) = $0, appID == nil || r.appID == appID { return r } else { return nil } }.first
    }
}

/// The figures of one app's log the wire measurements are checked against.
enum AppLogReader {
    struct Entries {
        var fgLatencyNanoseconds: [UInt64: UInt64] = [:]
        /// Answered FG requests: the app's submit and reply times (CLOCK_REALTIME ns).
        var fgTimes: [UInt64: (send: UInt64, receive: UInt64)] = [:]
        /// Unanswered FG requests: submit time.
        var unanswered: [UInt64: UInt64] = [:]
        var chunks = 0
        var chunkBytes: UInt64 = 0
        /// Lines of the log that were not records of the contract, and the first one's problem.
        var skippedLines = 0
        var firstSkippedLine: String?
        /// The FG summary's `requests_sent`.
        var requestsSent: UInt64?
    }

    static func read(path: String, appID: UInt32?) -> Entries? {
        guard let log = AppLog.read(path: path) else { return nil }
        return entries(log, appID: appID)
    }

    static func entries(_ log: AppLog, appID: UInt32?) -> Entries {
        var e = Entries()
        e.skippedLines = log.skippedLines
        e.firstSkippedLine = log.firstProblem
        e.requestsSent = log.fgSummary(app: appID)?.requestsSent
        for r in log.fgRequests(app: appID) where r.receiveNs >= r.sendNs {
            e.fgLatencyNanoseconds[r.sequence] = r.receiveNs - r.sendNs
            e.fgTimes[r.sequence] = (r.sendNs, r.receiveNs)
        }
        for r in log.fgUnanswered(app: appID) { e.unanswered[r.sequence] = r.sendNs }
        for r in log.bgChunks(app: appID) {
            e.chunks += 1
            e.chunkBytes += UInt64(max(0, r.bytes))
        }
        return e
    }

    static func check(file: String, path: String, appID: UInt32?, wire: [LatencySample]) -> AppLogCheck? {
        guard let log = read(path: path, appID: appID) else { return nil }
        return check(file: file, log: log, wire: wire)
    }

    static func check(file: String, log: Entries, wire: [LatencySample]) -> AppLogCheck {
        var diffs: [Double] = [], logged: [Double] = [], measured: [Double] = []
        var wireSeqs = Set<UInt64>()
        for w in wire {
            wireSeqs.insert(w.sequence)
            guard let l = log.fgLatencyNanoseconds[w.sequence] else { continue }
            let lw = Double(w.latencyNanoseconds) / 1e6, ll = Double(l) / 1e6
            diffs.append(abs(lw - ll))
            logged.append(ll)
            measured.append(lw)
        }
        func median(_ xs: [Double]) -> Double? {
            guard !xs.isEmpty else { return nil }
            let s = xs.sorted()
            return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        return AppLogCheck(
            file: file, matchedRequests: diffs.count,
            onlyInLog: log.fgLatencyNanoseconds.keys.filter { !wireSeqs.contains($0) }.count,
            onlyOnWire: wire.count - diffs.count,
            medianAbsDifferenceMs: median(diffs), maxAbsDifferenceMs: diffs.max(),
            loggedMedianLatencyMs: median(logged), wireMedianLatencyMs: median(measured),
            loggedChunks: log.chunks, loggedChunkBytes: log.chunkBytes, loggedUnanswered: log.unanswered.count, skippedLines: log.skippedLines,
            firstSkippedLine: log.firstSkippedLine, loggedRequestsSent: log.requestsSent)
    }
}
