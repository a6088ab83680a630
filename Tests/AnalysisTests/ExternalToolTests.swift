import Foundation
import Testing
@testable import Analysis
import Capture
import SyntheticTraffic

/// The synthetic captures the analyzer tests build on must look real to tshark: otherwise the
/// hand-computed analyzer results would be checked against packets no real tool would parse.
@Suite final class ExternalToolTests {
    let dir = tempDir("tools")
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// Catches: synthetic packets tshark counts differently, flags as malformed or whose TCP payload
    /// bytes differ from what was written (20 requests of 128 B up, 20 replies of 64 B down). Under CI
    /// a missing tshark fails here instead of passing.
    @Test(.enabled(if: ToolGate.shouldRun("tshark"), "tshark not installed (CI=true makes this a failure)"))
    func tsharkParsesSyntheticCaptures() throws {
        try #require(ToolGate.installed("tshark"), "tshark is not installed (make setup installs it)")
        let path = dir + "/fg.pcap"
        let cap = try SyntheticCapture(path: path, linkType: .ethernet)
        writeFGPlain(cap, clientPort: 40001, serverPort: 7001, app: 1, count: 20,
                     start: t0 + 10 * ms, interval: 100 * ms, base: 20 * ms, step: ms)
        let written = cap.packetsWritten
        try cap.close()
        let r = shell("tshark -n -r \(path) -T fields -e tcp.srcport -e tcp.len 2>/dev/null")
        try #require(r.status == 0, "tshark failed: \(r.err)")
        let rows = r.out.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        #expect(rows.count == written)
        let up = rows.filter { $0.first == "40001" }.compactMap { $0.count > 1 ? Int($0[1]) : nil }.reduce(0, +)
        let down = rows.filter { $0.first == "7001" }.compactMap { $0.count > 1 ? Int($0[1]) : nil }.reduce(0, +)
        #expect(up == 20 * 128 && down == 20 * 64, "tshark saw \(up) B up, \(down) B down")
        let malformed = shell("tshark -n -r \(path) -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null")
        #expect(malformed.status == 0 && malformed.out.isEmpty, "tshark flags packets: \(malformed.out)")
    }
}
