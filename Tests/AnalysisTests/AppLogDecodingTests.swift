import Foundation
import Testing
import ToyProtocol
@testable import Analysis

@Suite("App-log contract: the analyzer decodes what the apps write")
struct AppLogDecodingTests {
    static let fg = FGRequestRecord(appID: 1, sequence: 3, sendNs: 1_700_000_000_000_000_000, receiveNs: 1_700_000_000_012_500_000,
                                    requestBytes: 128, replyBytes: 64, variant: .intnw)
    static let unanswered = FGUnansweredRecord(appID: 1, sequence: 4, sendNs: 1_700_000_001_000_000_000, requestBytes: 128, variant: .intnw)
    static let chunk = BGChunkRecord(appID: 2, sequence: 0, sendNs: 10, ackNs: 25, bytes: 262_144, variant: .plain)
    static let progress = BGProgressRecord(appID: 2, timeNs: 99, elapsedSeconds: 1.5, bytesAcked: 524_288, chunksAcked: 2, inFlight: 4,
                                           rateBytesPerSecond: 1024.5, meanRateBytesPerSecond: 2048.5, variant: .plain)
    static let fgSummary = FGSummary(appID: 1, variant: .intnw, requestsSent: 5, requestsAnswered: 4, unexpectedReplies: 0,
                                     p50Milliseconds: 12.5, p95Milliseconds: nil, meanMilliseconds: 12.25, maxMilliseconds: 20)
    static let bgSummary = BGSummary(appID: 2, variant: .plain, chunksSent: 3, chunksAcked: 2, bytesSent: 786_432, bytesAcked: 524_288,
                                     unexpectedAcks: 0, meanRateBytesPerSecond: nil)

    @Test("every record the apps write decodes back to the same value")
    func roundTrip() throws {
        var server = ServerSummary(variant: .intnw)
        server.connections = 2
        server.bytesReceived = 1000
        let lines = [Self.fg.jsonLine, Self.unanswered.jsonLine, Self.chunk.jsonLine, Self.progress.jsonLine,
                     Self.fgSummary.jsonLine, Self.bgSummary.jsonLine, server.jsonLine,
                     #"{"type":"server_connection","event":"opened","peer":"198.18.0.1:4000"}"#]
        let log = AppLog.parse(lines.joined(separator: "\n") + "\n")
        #expect(log.skippedLines == 0)
        #expect(log.firstProblem == nil)
        #expect(log.records == [.fg(Self.fg), .fgUnanswered(Self.unanswered), .bgChunk(Self.chunk), .bgProgress(Self.progress),
                                .fgSummary(Self.fgSummary), .bgSummary(Self.bgSummary), .serverSummary(server),
                                .other(type: "server_connection")])
        #expect(log.fgRequests(app: 1) == [Self.fg])
        #expect(log.fgRequests(app: 2).isEmpty)
        #expect(log.bgChunks(app: 2) == [Self.chunk])
        #expect(log.fgSummary(app: 1)?.requestsSent == 5)
    }

    @Test("malformed lines are counted and named, never fatal; good lines around them still count")
    func malformed() throws {
        let text = [Self.fg.jsonLine,
                    #"{"type":"fg","app":1,"seq":9,"send_ns":5}"#,          // missing recv_ns (and sizes)
                    "not json at all",
                    #"{"type":"bg_chunk","app":"two","seq":0,"send_ns":1,"ack_ns":2,"bytes":10,"variant":"plain"}"#,
                    #"{"type":"fg","app":1,"seq":10,"send_ns":5,"recv_ns":6,"variant":"carrier-pigeon","request_bytes":1,"reply_bytes":1}"#,
                    #"{"type":"summary","role":"mystery"}"#,
                    #"{"no_type":true}"#,
                    "",
                    Self.chunk.jsonLine].joined(separator: "\n")
        let log = AppLog.parse(text)
        #expect(log.records == [.fg(Self.fg), .bgChunk(Self.chunk)])
        #expect(log.skippedLines == 6)
        let problem = try #require(log.firstProblem)
        #expect(problem.hasPrefix("line 2: missing field"))
        let e = AppLogReader.entries(log, appID: nil)
        #expect(e.skippedLines == 6)
        #expect(e.fgLatencyNanoseconds == [3: 12_500_000])
        #expect(e.chunks == 1 && e.chunkBytes == 262_144)
    }

    @Test("the log check reports skipped lines and compares logged latencies with the wire's")
    func check() throws {
        let text = Self.fg.jsonLine + "\n{broken\n" + Self.unanswered.jsonLine + "\n"
        let e = AppLogReader.entries(AppLog.parse(text), appID: 1)
        let c = AppLogReader.check(file: "fg.jsonl", log: e, wire: [])
        #expect(c.skippedLines == 1)
        #expect(c.loggedUnanswered == 1)
        #expect(c.onlyInLog == 1)
        #expect(c.matchedRequests == 0)
    }
}
