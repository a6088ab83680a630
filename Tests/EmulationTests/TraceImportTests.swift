import Foundation
import Testing
@testable import Emulation

/// Writes `text` to a fresh temporary file and returns its path; the caller removes it.
func writeTemporary(_ text: String, _ name: String) throws -> String {
    let path = temporaryPath(name)
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// Runs `body` and returns the `TraceError` it must throw.
func importError(_ body: () throws -> Trace) -> TraceError? {
    do {
        let trace = try body()
        Issue.record("expected an error, got \(trace.slices.count) slices")
        return nil
    } catch let e as TraceError {
        return e
    } catch {
        Issue.record("unexpected error type: \(error)")
        return nil
    }
}

@Suite struct TraceImportTests {
    let off = LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 0)

    @Test func mahimahiBinsOpportunitiesIntoSeconds() throws {
        // Downlink period 2500 ms: 3 opportunities in [0,1), 2 in [1,2), 1 in the last half second.
        let down = try writeTemporary("0\n500\n999\n1000\n1500\n\n2500\n", "down")
        // Uplink period 1000 ms, looped to 2500 ms: opportunities at 1000 and 2000.
        let up = try writeTemporary("1000\n", "up")
        defer { for p in [down, up] { try? FileManager.default.removeItem(atPath: p) } }

        let trace = try TraceImport.mahimahi(uplink: .file(up), downlink: .file(down),
                                             mapping: .init(link: .cellular, rttMilliseconds: 80))
        #expect(trace.durationSeconds == 2.5)
        #expect(trace.slices.map(\.startSeconds) == [0, 1, 2])
        #expect(trace.slices.map { $0.conditions[0] } == [off, off, off])
        #expect(trace.slices.map { $0.conditions[1].downBytesPerSecond } == [4500, 3000, 3000])
        #expect(trace.slices.map { $0.conditions[1].upBytesPerSecond } == [0, 1500, 3000])
        #expect(trace.slices.allSatisfy { $0.conditions[1].rttMilliseconds == 80 })
        #expect(trace.source.contains(down) && trace.source.contains(up))
    }

    @Test func mahimahiOntoWiFiWithAConstantDirection() throws {
        let down = try writeTemporary(String(repeating: "1\n", count: 10) + "1000\n1999\n", "down")
        defer { try? FileManager.default.removeItem(atPath: down) }
        let cellular = LinkConditions(downBytesPerSecond: 30_000, upBytesPerSecond: 10_000, rttMilliseconds: 250)
        let trace = try TraceImport.mahimahi(uplink: .constant(bytesPerSecond: 20_000), downlink: .file(down),
                                             mapping: .init(link: .wifi, rttMilliseconds: 30, otherCellular: cellular))
        #expect(trace.durationSeconds == 1.999)
        #expect(trace.slices.count == 2)
        #expect(trace.slices[0].conditions[0] == LinkConditions(downBytesPerSecond: 15_000, upBytesPerSecond: 20_000, rttMilliseconds: 30))
        // The last slice is 0.999 s long with 2 opportunities.
        #expect(trace.slices[1].conditions[0].downBytesPerSecond == (3000 / 0.999).rounded())
        #expect(trace.slices.allSatisfy { $0.conditions[1] == cellular })
    }

    @Test func mahimahiErrorsNameFileAndLine() throws {
        let cases: [(String, Int?, String)] = [
            ("0\n10\n12.5\n", 3, "\"12.5\" is not a whole number of milliseconds"),
            ("0\n10\n-4\n", 3, "is not a whole number"),
            ("5\n10\n\n7\n", 4, "timestamp 7 ms is before the previous one, 10 ms (line 2)"),
            ("", 1, "no timestamps: the file is empty"),
            ("0\n0\n", 2, "the last timestamp is 0 ms"),
            ("99999999999\n", 1, "is absurdly large"),
            ("1 2\n", 1, "is not a whole number"),
        ]
        for (text, line, message) in cases {
            let path = try writeTemporary(text, "bad-mm")
            defer { try? FileManager.default.removeItem(atPath: path) }
            let e = importError {
                try TraceImport.mahimahi(uplink: .file(path), downlink: .constant(bytesPerSecond: 1), mapping: .init(link: .cellular, rttMilliseconds: 1))
            }
            #expect(e?.file == path)
            #expect(e?.line == line)
            #expect(e?.description.contains(message) == true, "\(e?.description ?? "no error")")
        }
        let binary = temporaryPath("bin-mm")
        try Data([0x31, 0x0A, 0x00, 0x0A]).write(to: URL(fileURLWithPath: binary))
        defer { try? FileManager.default.removeItem(atPath: binary) }
        let e = importError {
            try TraceImport.mahimahi(uplink: .file(binary), downlink: .file(binary), mapping: .init(link: .cellular, rttMilliseconds: 1))
        }
        #expect(e?.line == 2)
        #expect(e?.problem == .controlCharacter(0))

        let missing = importError {
            try TraceImport.mahimahi(uplink: .file("/nonexistent/up"), downlink: .constant(bytesPerSecond: 1), mapping: .init(link: .cellular, rttMilliseconds: 1))
        }
        #expect(missing?.description == "/nonexistent/up: cannot read: No such file or directory")
        let noFile = importError {
            try TraceImport.mahimahi(uplink: .constant(bytesPerSecond: 1), downlink: .constant(bytesPerSecond: 1), mapping: .init(link: .cellular, rttMilliseconds: 1))
        }
        #expect(noFile != nil)
    }

    @Test func hsdpaLogBecomesSlicesOfTheLoggedIntervals() throws {
        let log = try writeTemporary("""
            1289406399 1000 59.851745 10.651145 125000 1000
            1289406400 2000 59.851745 -10.651145 31250 500

            1289406402 4000 -33.9 151.2 0 1500
            """, "hsdpa.log")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let trace = try TraceImport.hsdpa(file: log, mapping: .init(link: .cellular, rttMilliseconds: 200), upFraction: 0.5)
        #expect(trace.source == log)
        #expect(trace.slices.map(\.startSeconds) == [0, 1, 1.5])
        #expect(trace.durationSeconds == 3)
        #expect(trace.slices.map { $0.conditions[1] } == [
            LinkConditions(downBytesPerSecond: 125_000, upBytesPerSecond: 62_500, rttMilliseconds: 200),
            LinkConditions(downBytesPerSecond: 62_500, upBytesPerSecond: 31_250, rttMilliseconds: 200),
            LinkConditions(downBytesPerSecond: 0, upBytesPerSecond: 0, rttMilliseconds: 200),
        ])
        #expect(trace.slices.allSatisfy { $0.conditions[0] == off })

        // Onto WiFi, a zero-byte interval is an outage.
        let wifi = try TraceImport.hsdpa(file: log, mapping: .init(link: .wifi, rttMilliseconds: 40))
        #expect(wifi.isAvailable(link: 0, in: wifi.slices[0]))
        #expect(!wifi.isAvailable(link: 0, in: wifi.slices[2]))
        #expect(wifi.slices[0].conditions[0].upBytesPerSecond == 125_000)
        #expect(wifi.slices[0].conditions[1] == TraceGenerator.labCellular)
    }

    @Test func hsdpaErrorsNameFileAndLine() throws {
        let good = "1289406399 1000 59.85 10.65 125000 1000\n"
        let cases: [(String, Int, String)] = [
            (good + "1289406400 2000 59.85 10.65 125000\n", 2, "expected 6 columns (unix_s mono_ms lat lon bytes ms), found 5"),
            (good + "1289406400 2000 59.85 10.65 lots 1000\n", 2, "bytes: \"lots\" is not a number"),
            (good + "1289406400 2000 59.85 10.65 -5 1000\n", 2, "bytes: -5 is negative"),
            (good + "1289406400 2000 nan 10.65 5 1000\n", 2, "lat: \"nan\" is not allowed"),
            (good + "1289406400 2000 59.85 10.65 5 0\n", 2, "ms is 0"),
            (good + "1289406400 900 59.85 10.65 5 100\n", 2, "mono_ms 900 is before the previous line's 1000 (line 1)"),
            (good + "1289406400 2000 59.85 10.65 1e14 1\n", 2, "absurdly large"),
            ("# only a comment\n", 1, "no slices"),
        ]
        for (text, line, message) in cases {
            let path = try writeTemporary(text, "bad-hsdpa")
            defer { try? FileManager.default.removeItem(atPath: path) }
            let e = importError { try TraceImport.hsdpa(file: path, mapping: .init(link: .cellular, rttMilliseconds: 200)) }
            #expect(e?.file == path)
            #expect(e?.line == line)
            #expect(e?.description.contains(message) == true, "\(e?.description ?? "no error")")
        }
        let path = try writeTemporary(good, "ok-hsdpa")
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(importError { try TraceImport.hsdpa(file: path, mapping: .init(link: .cellular, rttMilliseconds: .nan)) } != nil)
        #expect(importError { try TraceImport.hsdpa(file: path, mapping: .init(link: .cellular, rttMilliseconds: 1), upFraction: -1) } != nil)
    }

    @Test func importedTracesRoundTripThroughTheWriter() throws {
        let log = try writeTemporary("1 10 0 0 1234 997\n2 20 0 0 99 3\n", "rt.log")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let trace = try TraceImport.hsdpa(file: log, mapping: .init(link: .cellular, rttMilliseconds: 123.5))
        var again = try TraceParser.parse(TraceWriter.text(of: trace), source: trace.source)
        again.source = trace.source
        #expect(again == trace)
        #expect(trace.slices[1].startSeconds == 0.997)
        #expect(trace.slices[0].conditions[1].downBytesPerSecond == (1234.0 / 997 * 1000).rounded())
    }
}
