import Foundation
import Testing
@testable import Emulation

/// The vnperf drive importer: outage rule, carrier choice, Mahimahi capacity, the shipped real-drive
/// traces (reproduced byte for byte from the committed CSVs) and their statistics against the CSVs.
@Suite struct VnperfImportTests {
    static let header = "vehiclespeed,latitude,longitude,verizon,sprint,xfinitywifi\n"

    /// Writes `text` to a temporary file and returns its path.
    static func temp(_ text: String, _ name: String = "drive.csv") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vnperf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func minusOneAndQueuedProbesBecomeOutagesOthersKeepTheirRTT() throws {
        // Rows: usable; -1 wifi; queued wifi (35 s); just under the threshold; at the threshold;
        // cellular queued (carries the last usable RTT, 0 B/s); cellular -1.
        let csv = Self.header + """
            0.0,42.27,-83.74,61.5,135,35.675
            3.5,42.27,-83.74,70,120,-1
            3.5,42.27,-83.74,80,120,35000.25
            3.5,42.27,-83.74,90,120,999.9
            3.5,42.27,-83.74,95,120,1000
            3.5,42.27,-83.74,2500,120,40
            3.5,42.27,-83.74,-1,120,41

            """
        let path = try Self.temp(csv)
        var o = VnperfImport.Options()
        o.cellularDownBytesPerSecond = 60_000
        o.cellularUpBytesPerSecond = 20_000
        let (trace, comments) = try VnperfImport.trace(csv: path, options: o)
        #expect(trace.slices.count == 7)
        #expect(trace.durationSeconds == 7)
        let wifi = trace.slices.map { trace.isAvailable(link: 0, in: $0) }
        #expect(wifi == [true, false, false, true, false, true, true])
        #expect(trace.slices[0].conditions[0] == LinkConditions(downBytesPerSecond: 700_000, upBytesPerSecond: 350_000, rttMilliseconds: 35.675))
        #expect(trace.slices[3].conditions[0].rttMilliseconds == 999.9)
        #expect(trace.slices[2].conditions[0] == LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0))
        let cell = trace.slices.map { $0.conditions[1] }
        #expect(cell.map(\.rttMilliseconds) == [61.5, 70, 80, 90, 95, 95, 95])
        #expect(cell.map(\.downBytesPerSecond) == [60_000, 60_000, 60_000, 60_000, 60_000, 0, 0])
        #expect(cell.map(\.upBytesPerSecond) == [20_000, 20_000, 20_000, 20_000, 20_000, 0, 0])
        #expect(comments.contains { $0.hasPrefix("MODELLED wifi bandwidth") })
        #expect(comments.contains("usable seconds: wifi 4 of 7, cellular 5 of 7"))

        // Sprint instead of Verizon; a lower threshold turns 135 ms into an outage, and the first
        // usable RTT stands in before it.
        o.carrier = .sprint
        o.queuedMilliseconds = 130
        let sprint = try VnperfImport.trace(csv: path, options: o).trace
        #expect(sprint.slices.map { $0.conditions[1].rttMilliseconds } == [120, 120, 120, 120, 120, 120, 120])
        #expect(sprint.slices[0].conditions[1].downBytesPerSecond == 0)
        #expect(!sprint.isAvailable(link: 0, in: sprint.slices[3]))  // 999.9 >= 130 now
    }

    @Test func badCSVsAreRejectedWithFileAndLine() throws {
        let cases: [(String, String)] = [
            ("speed,lat,lon,a,b,c\n1,2,3,4,5,6\n", ":1: expected the vnperf header"),
            (Self.header + "1,2,3,4,5\n", ":2: expected 6 comma-separated columns"),
            (Self.header + "1,2,3,4,5,abc\n", ":2:"),
            (Self.header + "1,2,3,-2,5,6\n", ":2: verizon is -2"),
            (Self.header + "1,2,3,nan,5,6\n", ":2:"),
            (Self.header, "no slices"),
            ("", "no vnperf header"),
            (Self.header + "1,2,3,-1,5,6\n", "verizon is never usable"),
        ]
        for (text, expected) in cases {
            let path = try Self.temp(text)
            do {
                _ = try VnperfImport.trace(csv: path, options: VnperfImport.Options())
                Issue.record("accepted: \(text.debugDescription)")
            } catch {
                #expect("\(error)".contains(expected), "\(error) lacks \(expected)")
            }
        }
        var o = VnperfImport.Options()
        o.wifiDownBytesPerSecond = 0
        #expect(throws: TraceError.self) { try VnperfImport.trace(csv: try Self.temp(Self.header + "1,2,3,4,5,6\n"), options: o) }
    }

    @Test func mahimahiCapacityIsBinnedPerSecondAndLooped() throws {
        // Period 2000 ms: opportunities at 500, 1500, 2000, then 2500, 3500, 4000, then 4500 (5500 is past 5 s).
        let looped: [Double] = [1500, 1500, 3000, 1500, 3000]
        #expect(try VnperfImport.mahimahiRates(stamps: [500, 1500, 2000], name: "x", seconds: 5) == looped)
        let upFile = try Self.temp("0\n0\n999\n1000\n", "c.up")
        let downFile = try Self.temp("250\n500\n", "c.down")
        var o = VnperfImport.Options()
        o.cellularCapacity = (upFile, downFile)
        let trace = try VnperfImport.trace(csv: try Self.temp(Self.header + "0,0,0,50,60,-1\n0,0,0,50,60,-1\n0,0,0,50,60,-1\n"), options: o).trace
        // up: period 1000 -> 0,0,999 in second 0, 1000 counted in second 1 with the next loop's 1000+0, 1000+0, 1000+999.
        let expected: [Double] = [4500, 6000, 6000]
        let up: [Double] = trace.slices.map { $0.conditions[1].upBytesPerSecond }
        #expect(up == expected)
        // down: period 500 -> 250, 500, 750, 1000, ... two per 500 ms after the first: 4 per second.
        let down: [Double] = trace.slices.map { $0.conditions[1].downBytesPerSecond }
        #expect(down == expected)
    }

    // MARK: the shipped real-drive traces

    static let shipped = ["traces/annarbor-downtown.trace", "traces/annarbor-highway.trace", "traces/annarbor-rural.trace"]

    /// The `trace import --format vnperf` commands in traces/README.md, parsed into importer options.
    static func documentedCommands() throws -> [(line: String, csv: String, options: VnperfImport.Options, output: String)] {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("traces/README.md"), encoding: .utf8)
        var out: [(String, String, VnperfImport.Options, String)] = []
        for line in readme.split(separator: "\n") where line.hasPrefix("intnw-lab trace import --format vnperf ") {
            let words = line.split(separator: " ").map(String.init)
            var o = VnperfImport.Options()
            var csv: String?, output: String?
            var i = 5
            while i < words.count {
                let w = words[i], next = i + 1 < words.count ? words[i + 1] : ""
                switch w {
                case "--carrier": o.carrier = try #require(VnperfImport.Carrier(rawValue: next)); i += 2
                case "--queued-ms": o.queuedMilliseconds = try #require(Double(next)); i += 2
                case "--wifi-down-Bps": o.wifiDownBytesPerSecond = try #require(Double(next)); i += 2
                case "--wifi-up-Bps": o.wifiUpBytesPerSecond = try #require(Double(next)); i += 2
                case "--cellular-capacity":
                    let parts = next.split(separator: ",").map(String.init)
                    try #require(parts.count == 2)
                    o.cellularCapacity = (parts[0], parts[1]); i += 2
                case "--output": output = next; i += 2
                default:
                    try #require(!w.hasPrefix("-"), "unknown option \(w) in: \(line)")
                    csv = w; i += 1
                }
            }
            out.append((String(line), try #require(csv), o, try #require(output)))
        }
        return out
    }

    /// Every documented command regenerates its shipped file byte for byte from the committed CSVs and
    /// Mahimahi files (traces/sources/), and the three drives are all covered.
    @Test func shippedDriveTracesReproduceByteForByte() throws {
        var covered: [String] = []
        for c in try Self.documentedCommands() {
            let text = try VnperfImport.text(csv: c.csv, options: c.options) { repositoryRoot.appendingPathComponent($0).path }
            let shipped = try Data(contentsOf: repositoryRoot.appendingPathComponent(c.output))
            #expect(shipped == Data(text.utf8), "\(c.output) differs from: \(c.line)")
            covered.append(c.output)
        }
        #expect(covered.sorted() == Self.shipped.sorted())
    }

    /// Independent reading of a CSV column: RTTs, with -1 and queued probes (>= threshold) as nil.
    static func column(_ csvPath: String, _ name: String, queued: Double = 1000) throws -> [Double?] {
        let text = try String(contentsOfFile: repositoryRoot.appendingPathComponent(csvPath).path, encoding: .utf8)
        let lines = text.split(whereSeparator: \.isNewline)
        let header = lines[0].split(separator: ",").map(String.init)
        let index = try #require(header.firstIndex(of: name))
        return try lines.dropFirst().map { line in
            let v = try #require(Double(line.split(separator: ",", omittingEmptySubsequences: false)[index]))
            return v >= 0 && v < queued ? v : nil
        }
    }

    /// Nearest-rank percentile of equally weighted samples.
    static func nearestRank(_ values: [Double], _ p: Double) -> Double {
        let s = values.sorted()
        return s[max(0, Int((Double(s.count) * p).rounded(.up)) - 1)]
    }

    /// What `trace show` reports for each shipped drive (availability, WiFi and cellular RTT
    /// percentiles) equals what the CSV says under the documented outage rule; and traces/README.md
    /// prints exactly the current `trace show` output.
    @Test func traceShowMatchesTheCSVs() throws {
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("traces/README.md"), encoding: .utf8)
        for c in try Self.documentedCommands() {
            let trace = try TraceParser.parse(contentsOfFile: repositoryRoot.appendingPathComponent(c.output).path)
            let stats = TraceStats(trace: trace)
            let wifi = try Self.column(c.csv, "xfinitywifi")
            let cell = try Self.column(c.csv, c.options.carrier.rawValue)
            #expect(stats.durationSeconds == Double(wifi.count))
            let usableWiFi = wifi.compactMap { $0 }
            #expect(abs(stats.links[0].availableFraction - Double(usableWiFi.count) / Double(wifi.count)) < 1e-12)
            if usableWiFi.isEmpty {
                #expect(stats.links[0].rttMilliseconds == nil)
            } else {
                let p = try #require(stats.links[0].rttMilliseconds)
                #expect([p.p5, p.p50, p.p95] == [0.05, 0.5, 0.95].map { Self.nearestRank(usableWiFi, $0) })
            }
            // Cellular: outage seconds carry the last usable RTT (the first usable one at the start).
            var last = try #require(cell.first { $0 != nil } ?? nil)
            let carried = cell.map { v -> Double in if let v { last = v }; return last }
            let p = try #require(stats.links[1].rttMilliseconds)
            #expect([p.p5, p.p50, p.p95] == [0.05, 0.5, 0.95].map { Self.nearestRank(carried, $0) })
            let outages = cell.filter { $0 == nil }.count
            #expect(trace.slices.filter { $0.conditions[1].downBytesPerSecond == 0 }.count >= outages)

            let block = "```\n" + stats.render(name: c.output) + "```\n"
            if !readme.contains(block) {
                Issue.record("traces/README.md lacks the current `intnw-lab trace show \(c.output)` output:\n\(block)")
            }
        }
        // The downtown drive has WiFi about 30% of the time, as its publishers say; the others none.
        let downtown = try TraceParser.parse(contentsOfFile: repositoryRoot.appendingPathComponent("traces/annarbor-downtown.trace").path)
        #expect((0.25...0.35).contains(TraceStats(trace: downtown).links[0].availableFraction))
    }
}
