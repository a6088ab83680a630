import Foundation
import Testing
@testable import Emulation

/// A small valid two-link trace used as the base of many cases.
let sampleTrace = """
# intnw-trace v1
# start_s  wifi_down_Bps  wifi_up_Bps  wifi_rtt_ms  cell_down_Bps  cell_up_Bps  cell_rtt_ms
0.0        1250000        625000       35           48000          16000        220
1.0        0              0            0            48000          16000        240

2.5        900000         300000       41.5         50000          17000        210   # back in range
"""

/// Parses `text` and returns the error it must throw.
func parseError(_ text: String, source: String = "t.trace") throws -> TraceError {
    do {
        let trace = try TraceParser.parse(text, source: source)
        Issue.record("expected an error, parsed \(trace.slices.count) slices")
        throw CancellationError()
    } catch let error as TraceError {
        return error
    }
}

/// A line made of the sample's first data line with field `index` replaced by `value`.
func lineWith(_ index: Int, _ value: String, loss: Bool = false) -> String {
    var fields = ["0", "1250000", "625000", "35", "48000", "16000", "220"]
    if loss { fields += ["0", "0"] }
    fields[index] = value
    return fields.joined(separator: " ")
}

@Suite struct TraceParserTests {
    @Test func parsesTheSample() throws {
        let trace = try TraceParser.parse(sampleTrace, source: "sample")
        #expect(trace.links == ["wifi", "cellular"])
        #expect(trace.slices.count == 3)
        #expect(trace.source == "sample")
        #expect(trace.slices[0].conditions[0] == LinkConditions(downBytesPerSecond: 1_250_000, upBytesPerSecond: 625_000, rttMilliseconds: 35))
        #expect(trace.slices[2].startSeconds == 2.5)
        #expect(trace.slices[2].conditions[0].rttMilliseconds == 41.5)
        #expect(trace.slices[2].conditions[1] == LinkConditions(downBytesPerSecond: 50_000, upBytesPerSecond: 17_000, rttMilliseconds: 210))
        // No "# duration:": the last slice lasts one second.
        #expect(trace.durationSeconds == 3.5)
        #expect(!trace.isAvailable(link: 0, in: trace.slices[1]))
        #expect(trace.isAvailable(link: 1, in: trace.slices[1]))
    }

    @Test func durationDirectiveAndLossColumns() throws {
        let text = """
        # intnw-trace v1
        # Duration: 10
        0 100 100 20 50 50 200 0.01 0.5
        4 100 100 20 50 50 200 0 1
        """
        let trace = try TraceParser.parse(text, source: "x")
        #expect(trace.durationSeconds == 10)
        #expect(trace.slices[0].conditions[0].lossFraction == 0.01)
        #expect(trace.slices[0].conditions[1].lossFraction == 0.5)
        #expect(trace.slices[1].conditions[1].lossFraction == 1)
        #expect(trace.endSeconds(ofSlice: 1) == 10)
    }

    @Test func headerIsOptionalAndCRLFAndTabsAreAccepted() throws {
        let trace = try TraceParser.parse("0\t1\t2\t3\t4\t5\t6\r\n1 1 2 3 4 5 6\r\n", source: "x")
        #expect(trace.slices.count == 2)
        #expect(trace.slices[1].conditions[1].rttMilliseconds == 6)
    }

    @Test func linksHeaderForThreeLinks() throws {
        let text = """
        # intnw-trace v1
        # links: wifi wifi2 lte
        # duration: 3
        0 1 1 10  2 2 20  3 3 30
        1 0 0 0   2 2 20  3 3 30  # wifi gone, wifi2 still there
        """
        let trace = try TraceParser.parse(text, source: "x")
        #expect(trace.links == ["wifi", "wifi2", "lte"])
        #expect(trace.kind(ofLink: 1) == .wifi)
        #expect(trace.kind(ofLink: 2) == .cellular)
        #expect(trace.slices[1].conditions.count == 3)
        #expect(!trace.isAvailable(link: 0, in: trace.slices[1]))
        #expect(trace.isAvailable(link: 1, in: trace.slices[1]))
        #expect(TraceParser.columnNames(links: trace.links).last == "lte_loss")

        let bad = try parseError("# links: wifi lte\n0 1 1 10 2 2 20 3 3 30\n")
        #expect(bad.line == 2)
        #expect(bad.problem == .wrongColumnCount(found: 10, expected: 7, expectedWithLoss: 9,
                                                 columns: TraceParser.columnNames(links: ["wifi", "lte"])))
    }

    @Test func parsesFromAFile() throws {
        let path = temporaryPath("good.trace")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try sampleTrace.write(toFile: path, atomically: true, encoding: .utf8)
        let trace = try TraceParser.parse(contentsOfFile: path)
        #expect(trace.source == path)
        #expect(trace.slices.count == 3)
    }

    // MARK: malformed input: each case names the file, the line and what is wrong

    @Test func wrongColumnCount() throws {
        let e = try parseError("# intnw-trace v1\n0 1 2 3 4 5\n")
        #expect(e.file == "t.trace")
        #expect(e.line == 2)
        #expect(e.problem == .wrongColumnCount(found: 6, expected: 7, expectedWithLoss: 9,
                                               columns: TraceParser.columnNames(links: TraceParser.defaultLinks)))
        #expect(e.description.hasPrefix("t.trace:2: expected 7 columns (start_s wifi_down_Bps"))
        #expect(e.description.contains("found 6"))
        #expect(!e.description.contains("\n"))
        // 8 columns (one loss column only) fits neither form.
        #expect(try parseError(lineWith(0, "0") + " 0.1").problem
            == .wrongColumnCount(found: 8, expected: 7, expectedWithLoss: 9, columns: TraceParser.columnNames(links: TraceParser.defaultLinks)))
    }

    @Test func lossColumnsOnSomeLinesOnly() throws {
        let e = try parseError(lineWith(0, "0", loss: true) + "\n" + lineWith(0, "1") + "\n")
        #expect(e.line == 2)
        #expect(e.problem == .inconsistentColumnCount(found: 7, expected: 9, firstDataLine: 1))
    }

    @Test func textInANumber() throws {
        let e = try parseError("# intnw-trace v1\n\n" + lineWith(3, "fast"))
        #expect(e.line == 3)
        #expect(e.problem == .notANumber(column: "wifi_rtt_ms", text: "fast"))
        #expect(e.description == "t.trace:3: wifi_rtt_ms: \"fast\" is not a number")
        for garbage in ["0x10", "1,5", "1.2.3", "--1", "1e", ".", "e5", "12abc", "１２"] {
            #expect(try parseError(lineWith(4, garbage)).problem == .notANumber(column: "cell_down_Bps", text: garbage))
        }
    }

    @Test func nanAndInfinity() throws {
        for text in ["nan", "NaN", "-nan", "inf", "+Infinity", "-inf"] {
            let e = try parseError(lineWith(1, text))
            #expect(e.line == 1)
            #expect(e.problem == .notFinite(column: "wifi_down_Bps", text: text))
        }
    }

    @Test func negativeValues() throws {
        let e = try parseError(sampleTrace + "\n" + lineWith(0, "3").replacingOccurrences(of: " 16000 ", with: " -16000 "))
        #expect(e.line == 7)
        #expect(e.problem == .negative(column: "cell_up_Bps", text: "-16000"))
        #expect(try parseError(lineWith(0, "-1")).problem == .negative(column: "start_s", text: "-1"))
        #expect(try parseError(lineWith(8, "-0.1", loss: true)).problem == .negative(column: "cell_loss", text: "-0.1"))
    }

    @Test func lossAboveOne() throws {
        let e = try parseError(lineWith(7, "1.5", loss: true))
        #expect(e.problem == .lossAboveOne(column: "wifi_loss", text: "1.5"))
        #expect(e.description.contains("fraction 0..1"))
    }

    @Test func absurdlyLargeValues() throws {
        #expect(try parseError(lineWith(1, "1e11")).problem == .absurdlyLarge(column: "wifi_down_Bps", text: "1e11", limit: "10000000000 B/s"))
        #expect(try parseError(lineWith(6, "60001")).problem == .absurdlyLarge(column: "cell_rtt_ms", text: "60001", limit: "60000 ms"))
        #expect(try parseError(lineWith(0, "1e8")).problem == .absurdlyLarge(column: "start_s", text: "1e8", limit: "10000000 s"))
        // Overflowing decimals are "too large", not infinity sneaking through.
        #expect(try parseError(lineWith(2, "1e999")).problem == .absurdlyLarge(column: "wifi_up_Bps", text: "1e999", limit: "10000000000 B/s"))
        #expect(try parseError(lineWith(2, String(repeating: "9", count: 65))).problem
            == .notANumber(column: "wifi_up_Bps", text: String(repeating: "9", count: 65)))
    }

    @Test func timeGoingBackwardsOrStanding() throws {
        let back = try parseError("0 1 1 1 1 1 1\n5 1 1 1 1 1 1\n# comment\n4 1 1 1 1 1 1\n")
        #expect(back.line == 4)
        #expect(back.problem == .startNotIncreasing(text: "4", previous: "5", previousLine: 2))
        #expect(back.description == "t.trace:4: start_s 4 is not after the previous slice's start 5 (line 2); start times must strictly increase")
        let same = try parseError("0 1 1 1 1 1 1\n0.0 1 1 1 1 1 1\n")
        #expect(same.line == 2)
        #expect(same.problem == .startNotIncreasing(text: "0.0", previous: "0", previousLine: 1))
    }

    @Test func emptyFiles() throws {
        let empty = try parseError("")
        #expect(empty.line == 1)
        #expect(empty.problem == .noSlices)
        #expect(empty.description == "t.trace:1: no slices: the trace has no data lines")
        let commentsOnly = try parseError("# intnw-trace v1\n# duration: 5\n\n# nothing here\n")
        #expect(commentsOnly.line == 4)
        #expect(commentsOnly.problem == .noSlices)
    }

    @Test func binaryGarbage() throws {
        var bytes = Array("# intnw-trace v1\n0 1 1 1 1 1 1\n".utf8)
        bytes += [0xFF, 0xFE, 0x41, 0x0A]
        var e = try bytesError(bytes)
        #expect(e.line == 3)
        #expect(e.problem == .invalidUTF8)
        #expect(e.description == "t.trace:3: not valid UTF-8 text (binary file?)")

        e = try bytesError(Array("0 1 1 1 1 1 1\n1 1 1\u{0}1 1 1 1\n".utf8))
        #expect(e.line == 2)
        #expect(e.problem == .controlCharacter(0))
        #expect(e.description == "t.trace:2: contains a NUL byte (binary file?)")

        e = try bytesError([0x1B, 0x5B, 0x32, 0x4A])
        #expect(e.line == 1)
        #expect(e.problem == .controlCharacter(0x1B))

        // A gzip header: caught at line 1, whatever follows.
        e = try bytesError([0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00])
        #expect(e.line == 1)
    }

    @Test func directivesAreChecked() throws {
        #expect(try parseError("# intnw-trace v2\n").problem == .unsupportedVersion("intnw-trace v2"))
        #expect(try parseError("# comment\n# intnw-trace v1\n").problem == .headerNotFirst)
        let dup = try parseError("# duration: 5\n# duration: 6\n0 1 1 1 1 1 1\n")
        #expect(dup.line == 2)
        #expect(dup.problem == .duplicateDirective(name: "duration", firstLine: 1))
        #expect(try parseError("# duration: soon\n0 1 1 1 1 1 1\n").problem == .notANumber(column: "duration", text: "soon"))
        #expect(try parseError("# duration: 0\n0 1 1 1 1 1 1\n").problem == .malformedDirective(name: "duration", detail: "must be more than 0 seconds"))
        #expect(try parseError("# duration: 1 2\n").problem == .malformedDirective(name: "duration", detail: "needs exactly one number of seconds"))
        let short = try parseError("# duration: 2\n0 1 1 1 1 1 1\n2 1 1 1 1 1 1\n")
        #expect(short.line == 1)
        #expect(short.problem == .durationNotAfterLastStart(duration: "2", lastStart: "2", lastStartLine: 3))
        let late = try parseError("0 1 1 1 1 1 1\n# links: wifi cellular lte\n")
        #expect(late.line == 2)
        #expect(late.problem == .linksAfterData)
        #expect(try parseError("# links: wifi wifi\n").problem == .malformedDirective(name: "links", detail: "names a link twice"))
        #expect(try parseError("# links:\n").problem == .malformedDirective(name: "links", detail: "needs 1 to 16 link names"))
        #expect(try parseError("# links: Wifi\n").description.contains("is not a link name"))
        // An ordinary comment with a colon is just a comment.
        #expect(try TraceParser.parse("# note: duration unknown\n0 1 1 1 1 1 1\n", source: "x").slices.count == 1)
    }

    @Test func unreadableFile() throws {
        let missing = temporaryPath("missing.trace")
        do {
            _ = try TraceParser.parse(contentsOfFile: missing)
            Issue.record("parsed a missing file")
        } catch let e as TraceError {
            #expect(e.line == nil)
            #expect(e.description == "\(missing): cannot read: No such file or directory")
        }
        do {
            _ = try TraceParser.parse(contentsOfFile: NSTemporaryDirectory())
            Issue.record("parsed a directory")
        } catch let e as TraceError {
            #expect(e.description.contains("cannot read"))
        }
    }

    // MARK: writer

    @Test func writerRoundTrip() throws {
        for text in [sampleTrace,
                     "# links: wifi lte\n# duration: 7.25\n0 1 2 3 4 5 6 0.125 0\n0.001 1e-5 0 3 1e9 5 6 0 1\n",
                     "0 0.1 0.2 0.30000000000000004 123456789.123 5 6\n"] {
            let trace = try TraceParser.parse(text, source: "in")
            let written = TraceWriter.text(of: trace, comments: ["a comment", "two\nlines"])
            var again = try TraceParser.parse(written, source: "out")
            again.source = "in"
            #expect(again == trace)
            // Canonical text is a fixed point.
            #expect(TraceWriter.text(of: again, comments: ["a comment", "two\nlines"]) == written)
        }
    }

    @Test func writerOutputShape() throws {
        let trace = try TraceParser.parse(sampleTrace, source: "x")
        let text = TraceWriter.text(of: trace, comments: ["hello"])
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[0] == "# intnw-trace v1")
        #expect(lines[1] == "# hello")
        #expect(lines[2] == "# duration: 3.5")
        #expect(lines[3].hasPrefix("# start_s  wifi_down_Bps"))
        #expect(!text.contains("links:"))
        #expect(!text.contains("_loss"))
        #expect(lines[4].split(separator: " ") == ["0", "1250000", "625000", "35", "48000", "16000", "220"])
        #expect(text.hasSuffix("\n"))
        // Writing to a file and back.
        let path = temporaryPath("written.trace")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try TraceWriter.write(trace, toFile: path)
        var back = try TraceParser.parse(contentsOfFile: path)
        back.source = "x"
        #expect(back == trace)
    }

    @Test func commentsCannotSmuggleDirectives() throws {
        let trace = try TraceParser.parse(sampleTrace, source: "x")
        let text = TraceWriter.text(of: trace, comments: ["from file a\nduration: 1", " Links: a b", "intnw-trace v2"])
        #expect(text.contains("# (comment) duration: 1\n"))
        #expect(text.contains("# (comment)  Links: a b\n"))
        var back = try TraceParser.parse(text, source: "x")
        back.source = trace.source
        #expect(back == trace)
    }

    // MARK: robustness

    /// Thousands of mutated and random inputs: the parser must only ever throw `TraceError`, and whatever
    /// it accepts must satisfy the format's invariants and survive a writer round trip.
    @Test func randomizedGarbageNeverCrashes() throws {
        var rng = DeterministicRNG(seed: 0xC0FFEE)
        let base = Array(sampleTrace.utf8) + Array("\n# duration: 9\n4 1 1 1 1 1 1 0 0\n".utf8)
        let tokens = ["nan", "-1", "1e999", "0x1p3", "\u{0}", "#", "# links: a b", "# duration: -1", "\t", "\r",
                      "99999999999", "1.5", "\n", "# intnw-trace v1", "é", "\u{FEFF}", "  ", "-0", "+3", "1e-400"]
        var accepted = 0, rejected = 0
        for round in 0..<4000 {
            var bytes: [UInt8]
            switch round % 4 {
            case 0: // flip random bytes
                bytes = base
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 1: // splice in tokens
                bytes = base
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    let at = Int(rng.next() % UInt64(bytes.count + 1))
                    bytes.insert(contentsOf: Array(tokens[Int(rng.next() % UInt64(tokens.count))].utf8), at: at)
                }
            case 2: // shuffle, drop and duplicate lines
                var lines = sampleTrace.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    let i = Int(rng.next() % UInt64(lines.count)), j = Int(rng.next() % UInt64(lines.count))
                    switch rng.next() % 3 {
                    case 0: lines.swapAt(i, j)
                    case 1: lines.remove(at: i)
                    default: lines.insert(lines[i], at: j)
                    }
                    if lines.isEmpty { break }
                }
                bytes = Array(lines.joined(separator: "\n").utf8)
            default: // pure random bytes, sometimes truncated valid text
                if rng.next() % 2 == 0 {
                    bytes = (0..<Int(rng.next() % 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                } else {
                    bytes = Array(base.prefix(Int(rng.next() % UInt64(base.count))))
                }
            }
            do {
                let trace = try TraceParser.parse(bytes: bytes, source: "fuzz")
                accepted += 1
                try checkInvariants(trace)
                var again = try TraceParser.parse(TraceWriter.text(of: trace), source: "fuzz")
                again.source = trace.source
                #expect(again == trace)
            } catch let error as TraceError {
                rejected += 1
                #expect(error.file == "fuzz")
                #expect(!error.description.contains("\n"))
                if let line = error.line { #expect(line >= 1) }
            } catch {
                Issue.record("unexpected error type \(type(of: error)): \(error)")
            }
        }
        // Both paths must have been exercised for the test to mean anything.
        #expect(accepted > 100)
        #expect(rejected > 1000)
    }

    func checkInvariants(_ trace: Trace) throws {
        #expect(!trace.slices.isEmpty)
        #expect(trace.durationSeconds > trace.slices.last!.startSeconds)
        for (i, slice) in trace.slices.enumerated() {
            #expect(slice.conditions.count == trace.links.count)
            #expect(slice.startSeconds >= 0)
            if i > 0 { #expect(slice.startSeconds > trace.slices[i - 1].startSeconds) }
            for c in slice.conditions {
                for v in [c.downBytesPerSecond, c.upBytesPerSecond, c.rttMilliseconds, c.lossFraction] {
                    #expect(v.isFinite && v >= 0)
                }
                #expect(c.lossFraction <= 1)
            }
        }
    }

    func bytesError(_ bytes: [UInt8]) throws -> TraceError {
        do {
            _ = try TraceParser.parse(bytes: bytes, source: "t.trace")
            Issue.record("expected an error")
            throw CancellationError()
        } catch let e as TraceError {
            return e
        }
    }
}

/// A unique path under the temporary directory (not created).
func temporaryPath(_ name: String) -> String {
    NSTemporaryDirectory() + "itr-\(getpid())-\(UUID().uuidString)-\(name)"
}

/// The file parser streams: same result and errors as parsing the bytes, lines split across read
/// chunks, memory bounded by one line.
@Suite struct TraceStreamingTests {
    func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "stream-\(getpid())-\(UInt32.random(in: 0 ... .max))-\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func fileAndBytesParseAlikeAcrossChunkBoundaries() throws {
        // ~200 KiB: many lines straddle the 64 KiB read chunks, with CRLF endings and no final break.
        var text = "# intnw-trace v1\r\n"
        for i in 0 ..< 4000 { text += "\(i).0  1250000 625000 35 48000 16000 \(200 + i % 50)   # slice \(i)\r\n" }
        text += "4000.0 1 1 1 1 1 1"
        let bytes = Array(text.utf8)
        #expect(bytes.count > 3 << 16)
        let path = try file("crlf.trace", bytes)
        defer { unlink(path) }
        let fromFile = try TraceParser.parse(contentsOfFile: path)
        let fromBytes = try TraceParser.parse(bytes: bytes, source: path)
        #expect(fromFile == fromBytes)
        #expect(fromFile.slices.count == 4001)
    }

    @Test func errorsNameTheSameLine() throws {
        var text = "# intnw-trace v1\n"
        for i in 0 ..< 3000 { text += "\(i).0  1250000 625000 35 48000 16000 220\n" }
        text += "3000.0 1 1 bad 1 1 1\n"
        let path = try file("bad.trace", Array(text.utf8))
        defer { unlink(path) }
        var fileError: TraceError?, bytesError: TraceError?
        do { _ = try TraceParser.parse(contentsOfFile: path) } catch let e as TraceError { fileError = e }
        do { _ = try TraceParser.parse(bytes: Array(text.utf8), source: path) } catch let e as TraceError { bytesError = e }
        #expect(fileError != nil && fileError == bytesError)
        #expect(fileError?.line == 3002)
    }

    @Test func overlongLineAndEmptyFile() throws {
        let long = try file("long.trace", [UInt8](repeating: UInt8(ascii: "7"), count: TraceInput.maxLineBytes + 10))
        defer { unlink(long) }
        do {
            _ = try TraceParser.parse(contentsOfFile: long)
            Issue.record("an over-long line was accepted")
        } catch let e as TraceError {
            #expect(e.line == 1 && e.problem == .lineTooLong(limitBytes: TraceInput.maxLineBytes))
        }
        let empty = try file("empty.trace", [])
        defer { unlink(empty) }
        do {
            _ = try TraceParser.parse(contentsOfFile: empty)
            Issue.record("an empty file was accepted")
        } catch let e as TraceError {
            #expect(e.line == 1 && e.problem == .noSlices)
        }
    }
}
