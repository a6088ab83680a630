import Foundation
import Testing
@testable import Analysis

/// The verdict opens the report; it is written with it (not spliced in later) and escaped once.
@Suite struct ReportVerdictTests {
    let v = ReportVerdict(experiment: "multiapp", expectation: "FG p95 < 2x <alone> & more", held: false,
                          lines: ["fg p95 3.1x", "a \"quoted\" <b>line</b>"], plots: ["plots/x.svg"])

    @Test func markdownStatesTheVerdictFirst() {
        let md = v.markdown
        #expect(md.hasPrefix("## multiapp: expectation NOT HELD\n\nFG p95 < 2x <alone> & more\n\n- fg p95 3.1x\n"))
        #expect(md.contains("![plots/x.svg](plots/x.svg)"))
    }

    @Test func htmlEscapesEverythingItShows() {
        let h = v.html
        #expect(h.hasPrefix("<section><h2>multiapp: expectation NOT held</h2>"))
        #expect(h.contains("FG p95 &lt; 2x &lt;alone&gt; &amp; more"))
        #expect(h.contains("<li>a &quot;quoted&quot; &lt;b&gt;line&lt;/b&gt;</li>"))
        #expect(!h.contains("<b>"))
    }

    @Test func verdictOnlySummaryWhenThereIsNoAnalysis() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("verdict-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ReportWriter.writeVerdictOnly(v, to: dir)
        let text = try String(contentsOfFile: dir + "/summary.md", encoding: .utf8)
        #expect(text == v.markdown)
        #expect(!FileManager.default.fileExists(atPath: dir + "/report.html"))
    }
}
