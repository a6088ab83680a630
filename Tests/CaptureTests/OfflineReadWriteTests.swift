import Foundation
import Testing
@testable import Capture

@Suite final class OfflineReadWriteTests {
    let dir = makeTempDir("offline")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func packets() -> [(UInt64, [UInt8])] {
        (0 ..< 5).map { i in (1_700_000_000_123_456_789 + UInt64(i) * 1_000_001, [UInt8](repeating: UInt8(i), count: 60 + i)) }
    }

    @Test(arguments: [TimestampPrecision.nanoseconds, .microseconds])
    func roundTrip(precision: TimestampPrecision) throws {
        let path = dir + "/rt-\(precision).pcap"
        let w = try PcapFileWriter(path: path, linkType: .raw, precision: precision)
        for (ts, bytes) in packets() { w.write(timestampNanoseconds: ts, bytes: bytes, originalLength: bytes.count + 10) }
        try w.close()
        #expect(w.packetsWritten == 5)

        let r = try PcapFileReader(path: path)
        #expect(r.linkType.isRawIP)
        #expect(r.filePrecision == precision)
        var seen: [(UInt64, [UInt8], Int)] = []
        let summary = try r.forEachPacket { p in seen.append((p.timestampNanoseconds, p.copyBytes(), p.originalLength)) }
        #expect(summary == ReadSummary(packets: 5, truncation: nil))
        for (i, (ts, bytes)) in packets().enumerated() {
            let expectedTS = precision == .nanoseconds ? ts : ts / 1000 * 1000
            #expect(seen[i].0 == expectedTS)
            #expect(seen[i].1 == bytes)
            #expect(seen[i].2 == bytes.count + 10)
        }
        #expect(try PcapFileReader.firstTimestampNanoseconds(path: path) == seen[0].0)
    }

    /// Catches: a pcap writer whose files real tools reject or miscount. Under CI a missing tcpdump
    /// fails here instead of passing.
    @Test(.enabled(if: ToolGate.shouldRun("tcpdump"), "tcpdump not installed (CI=true makes this a failure)"))
    func tcpdumpReadsWhatWeWrite() throws {
        try #require(ToolGate.installed("tcpdump"), "tcpdump is not installed (make setup installs it)")
        let path = dir + "/tcpdump.pcap"
        let w = try PcapFileWriter(path: path, linkType: .ethernet)
        for (ts, bytes) in packets() { w.write(timestampNanoseconds: ts, bytes: bytes) }
        try w.close()
        let r = shell("tcpdump -nn -r \(path) 2>&1 >/dev/null | grep -v '^reading from file'; tcpdump -nn -r \(path) 2>/dev/null | grep -c '^[0-9]'")
        #expect(r.out.trimmingCharacters(in: .whitespacesAndNewlines) == "5")
    }

    @Test func emptyFileIsAClearError() throws {
        let path = dir + "/empty.pcap"
        FileManager.default.createFile(atPath: path, contents: Data())
        #expect(throws: CaptureError.emptyFile(path: path)) { try PcapFileReader(path: path) }
        #expect(CaptureError.emptyFile(path: path).description.contains("empty"))
    }

    @Test func missingFileIsAClearError() {
        do {
            _ = try PcapFileReader(path: dir + "/nope.pcap")
            Issue.record("expected an error")
        } catch {
            guard case .fileUnreadable = error else { Issue.record("wrong error \(error)"); return }
            #expect(error.description.contains("nope.pcap"))
        }
    }

    @Test func garbageIsNotAPcap() {
        let path = dir + "/garbage.pcap"
        FileManager.default.createFile(atPath: path, contents: Data((0 ..< 100).map { UInt8(truncatingIfNeeded: $0 &* 37) }))
        do {
            _ = try PcapFileReader(path: path)
            Issue.record("expected an error")
        } catch {
            guard case .notAPcapFile = error else { Issue.record("wrong error \(error)"); return }
        }
    }

    @Test func truncatedFileReportsCompletePackets() throws {
        let path = dir + "/trunc.pcap"
        let w = try PcapFileWriter(path: path, linkType: .raw)
        for (ts, bytes) in packets() { w.write(timestampNanoseconds: ts, bytes: bytes) }
        try w.close()
        let full = try Data(contentsOf: URL(fileURLWithPath: path))
        try full.prefix(full.count - 20).write(to: URL(fileURLWithPath: path))

        var n = 0
        do {
            try PcapFileReader(path: path).forEachPacket { _ in n += 1 }
            Issue.record("expected truncation error")
        } catch let e as CaptureError {
            guard case .truncated(_, let complete, _) = e else { Issue.record("wrong error \(e)"); return }
            #expect(complete == 4)
            #expect(e.description.contains("truncated after 4 complete packets"))
        }
        let summary = try PcapFileReader(path: path).forEachPacket(allowTruncation: true) { _ in }
        #expect(summary.packets == 4)
        #expect(summary.truncation != nil)

        // Cut inside the 24-byte file header: not a pcap at all.
        try full.prefix(10).write(to: URL(fileURLWithPath: path))
        #expect(throws: CaptureError.self) { try PcapFileReader(path: path) }
    }

    @Test func corruptRecordLengthIsAnError() throws {
        let path = dir + "/corrupt.pcap"
        let w = try PcapFileWriter(path: path, linkType: .raw, snapLength: 1000)
        for (ts, bytes) in packets() { w.write(timestampNanoseconds: ts, bytes: bytes) }
        try w.close()
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        // Second record's caplen (file header 24 + record 16 + 60 bytes, then +8) := 0x7fffffff.
        let off = 24 + 16 + 60 + 8
        data.replaceSubrange(off ..< off + 4, with: [0xFF, 0xFF, 0xFF, 0x7F])
        try data.write(to: URL(fileURLWithPath: path))
        var n = 0
        do {
            try PcapFileReader(path: path).forEachPacket(allowTruncation: true) { _ in n += 1 }
            Issue.record("expected an error")
        } catch let e as CaptureError {
            guard case .corrupt(_, let complete, _) = e else { Issue.record("wrong error \(e)"); return }
            #expect(complete == 1)
        }
    }
}
