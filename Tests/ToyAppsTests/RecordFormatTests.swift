import Foundation
import Testing
import ToyProtocol
@testable import ToyApps

@Suite("JSON log lines")
struct RecordFormatTests {
    @Test("an FG line has the documented fields, in order, with exact values")
    func fgLine() throws {
        let r = FGRequestRecord(appID: 7, sequence: 41, sendNs: 1_700_000_000_000_000_000, receiveNs: 1_700_000_000_020_345_678,
                                requestBytes: 128, replyBytes: 64, variant: .plain)
        #expect(r.jsonLine == #"{"type":"fg","app":7,"seq":41,"send_ns":1700000000000000000,"recv_ns":1700000000020345678,"latency_ms":20.346,"variant":"plain","request_bytes":128,"reply_bytes":64}"#)
        // And it is valid JSON whose numbers survive a parser.
        let obj = try #require(JSONSerialization.jsonObject(with: Data(r.jsonLine.utf8)) as? [String: Any])
        #expect((obj["recv_ns"] as? NSNumber)?.uint64Value == 1_700_000_000_020_345_678)
        #expect(obj["variant"] as? String == "plain")
    }

    @Test("a BG chunk line has seq, send_ns, ack_ns and bytes")
    func bgLine() {
        let r = BGChunkRecord(appID: 2, sequence: 0, sendNs: 10, ackNs: 25, bytes: 262_144, variant: .intnw)
        #expect(r.jsonLine == #"{"type":"bg_chunk","app":2,"seq":0,"send_ns":10,"ack_ns":25,"bytes":262144,"variant":"intnw"}"#)
    }

    @Test("a reply stamped before its request (clock step) gives latency 0, not a wrap-around")
    func clockStep() {
        let r = FGRequestRecord(appID: 1, sequence: 0, sendNs: 100, receiveNs: 50, requestBytes: 128, replyBytes: 64, variant: .plain)
        #expect(r.latencyNs == 0)
        #expect(r.jsonLine.contains(#""latency_ms":0.000"#))
    }

    @Test("fixed-point numbers round half away from zero and never print NaN")
    func fixed() {
        #expect(JSONLine.fixed(20.3456, decimals: 3) == "20.346")
        #expect(JSONLine.fixed(0.0004, decimals: 3) == "0.000")
        #expect(JSONLine.fixed(-1.25, decimals: 1) == "-1.3")
        #expect(JSONLine.fixed(-0.0001, decimals: 2) == "0.00")
        #expect(JSONLine.fixed(3, decimals: 0) == "3")
        #expect(JSONLine.fixed(1.05, decimals: 2) == "1.05")
        #expect(JSONLine.fixed(.nan, decimals: 3) == "null")
        #expect(JSONLine.fixed(.infinity, decimals: 3) == "null")
        #expect(JSONLine.fixed(2e15, decimals: 1) == "2000000000000000.0")
    }

    @Test("strings are escaped so any peer description stays valid JSON")
    func escaping() throws {
        var j = JSONLine()
        j.add("peer", "a\"b\\c\nd\u{01}é")
        let line = j.string
        #expect(line == #"{"peer":"a\"b\\c\nd\u0001é"}"#)
        let obj = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(obj["peer"] == "a\"b\\c\nd\u{01}é")
    }

    @Test("summary lines parse and carry the counts; empty latency is null")
    func summaries() throws {
        var s = FGStats()
        s.recordSent()
        let empty = s.summary(appID: 3, variant: .plain)
        #expect(empty.jsonLine.contains(#""p50_ms":null"#))
        #expect(empty.text == "fg app 3: 1 requests sent, 0 answered")
        s.recordAnswered(latencyNs: 12_000_000)
        let one = s.summary(appID: 3, variant: .plain)
        let obj = try #require(JSONSerialization.jsonObject(with: Data(one.jsonLine.utf8)) as? [String: Any])
        #expect(obj["requests_sent"] as? Int == 1)
        #expect(obj["requests_answered"] as? Int == 1)
        #expect(obj["p50_ms"] as? Double == 12)
        #expect(one.text.contains("p50 12.00 ms, p95 12.00 ms"))
    }
}
