import Foundation

/// The wire measurements compared with what an app logged about itself (DESIGN §7: the apps'
/// logs are a cross-check, never the source). Only apps whose `logFile` is in the run metadata
/// and readable get one.
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
}

/// Reads the apps' JSON-lines logs (format of `intnw-app`: objects with `type`, `app`, `seq`,
/// `send_ns`, `recv_ns`, `bytes`).
enum AppLogReader {
    struct Entries {
        var fgLatencyNanoseconds: [UInt64: UInt64] = [:]
        /// Answered FG requests: the app's submit and reply times (CLOCK_REALTIME ns).
        var fgTimes: [UInt64: (send: UInt64, receive: UInt64)] = [:]
        /// Unanswered FG requests: submit time.
        var unanswered: [UInt64: UInt64] = [:]
        var chunks = 0
        var chunkBytes: UInt64 = 0
    }

    static func read(path: String, appID: UInt32?) -> Entries? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        var e = Entries()
        for line in text.split(separator: "\n") where line.first == "{" {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let type = obj["type"] as? String else { continue }
            if let id = appID, let app = (obj["app"] as? NSNumber)?.uint32Value, app != id { continue }
            switch type {
            case "fg":
                guard let seq = (obj["seq"] as? NSNumber)?.uint64Value,
                      let s = (obj["send_ns"] as? NSNumber)?.uint64Value,
                      let r = (obj["recv_ns"] as? NSNumber)?.uint64Value, r >= s else { continue }
                e.fgLatencyNanoseconds[seq] = r - s
                e.fgTimes[seq] = (s, r)
            case "fg_unanswered":
                guard let seq = (obj["seq"] as? NSNumber)?.uint64Value,
                      let s = (obj["send_ns"] as? NSNumber)?.uint64Value else { continue }
                e.unanswered[seq] = s
            case "bg_chunk":
                e.chunks += 1
                e.chunkBytes += (obj["bytes"] as? NSNumber)?.uint64Value ?? 0
            default:
                continue
            }
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
            loggedChunks: log.chunks, loggedChunkBytes: log.chunkBytes, loggedUnanswered: log.unanswered.count)
    }
}
