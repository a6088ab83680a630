import Analysis
import Capture
import Foundation
@testable import Lab

/// Experiments read the apps' logs only through the analyzer (`TrialAnalysis`): this analyzes a test
/// trial directory holding app logs the way a real trial is analyzed, with the `apps.json` the trial
/// runner writes for `apps` and one empty client capture.
enum AnalyzedTrial {
    static func analysis(directory dir: String, apps: [AppLaunch]) throws -> TrialAnalysis {
        let capture = "client-wifi0.pcap"
        try TrialRunner.metadata(apps: apps, captures: [.init(file: capture, interface: "wifi0", side: .client)]).write(to: dir)
        try PcapFileWriter(path: "\(dir)/\(capture)", linkType: .raw).close()
        return try Analyzer.analyze(TrialInput.runDirectory(dir))
    }
}
