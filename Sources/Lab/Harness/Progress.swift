import Foundation

/// Progress lines on stderr for long runs: which experiment, variant and trial, elapsed/expected.
// @unchecked: only immutable lets; printing goes through one write(2) per line.
public final class Progress: @unchecked Sendable {
    public let experiment: String
    private let start = Date()
    private let expectedSeconds: Double
    private let quiet: Bool

    public init(experiment: String, expectedSeconds: Double, quiet: Bool = false) {
        self.experiment = experiment
        self.expectedSeconds = expectedSeconds
        self.quiet = quiet
    }

    public var elapsedSeconds: Double { Date().timeIntervalSince(start) }

    /// One progress line, e.g. `[multiapp 0:42/4:30] two-apps trial 1/1: apps running 20/45 s`.
    public func note(_ what: String) {
        guard !quiet else { return }
        let line = "[\(experiment) \(Self.clock(elapsedSeconds))/\(Self.clock(expectedSeconds))] \(what)\n"
        FileHandle.standardError.write(line.data(using: .utf8)!)
    }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return String(format: "%d:%02d", t / 60, t % 60)
    }
}
