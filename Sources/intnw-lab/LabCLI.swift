import ArgumentParser
import Emulation
import Foundation
import Lab
import Synchronization

/// Helpers shared by subcommands: user errors become one line on stderr and exit status 1.
enum LabCLI {
    /// The trace at `path`, or the shipped constant lab trace (traces/lab-constant.trace when run from
    /// the repository, otherwise the same conditions built in).
    static func loadTrace(_ path: String?) throws -> Trace {
        if let path {
            do { return try TraceParser.parse(contentsOfFile: path) } catch { throw fail("\(error)") }
        }
        let shipped = "traces/lab-constant.trace"
        if FileManager.default.fileExists(atPath: shipped) {
            do { return try TraceParser.parse(contentsOfFile: shipped) } catch { throw fail("\(error)") }
        }
        return Trace.constant(wifi: TraceGenerator.labWiFi, cellular: TraceGenerator.labCellular, durationSeconds: 120)
    }

    /// Resolves `--shaper`, saying which backend was chosen and why.
    static func resolveShaper(_ choice: ShaperChoice) throws -> ShaperKind {
        do {
            let selection = try ShaperSelection.choose(requested: ShaperRequest(rawValue: choice.rawValue)!)
            stderr(selection.reason)
            return selection.kind
        } catch {
            throw fail("\(error)")
        }
    }

    /// Runs `body`, turning any error into a one-line message and exit status 1.
    static func userError<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch { throw fail("\(error)") }
    }

    static func check<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw fail("\(error)") }
    }

    static func fail(_ message: String) -> ExitCode {
        stderr("intnw-lab: \(message)")
        return ExitCode.failure
    }
}

func stderr(_ line: String) {
    FileHandle.standardError.write((line + "\n").data(using: .utf8)!)
}

/// Catches termination signals so the run can tear down before exiting.
// @unchecked: `sources` is filled in init and never touched again (it only keeps the sources alive);
// the handler is in a `Mutex`.
final class SignalTrap: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let handler = Mutex<(@Sendable () -> Void)?>(nil)

    init(_ signals: [Int32]) {
        for s in signals {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler { [weak self] in
                stderr("\nintnw-lab: signal \(s) received, tearing down")
                let h = self?.handler.withLock { $0 }
                h?()
            }
            src.resume()
            sources.append(src)
        }
    }

    func onSignal(_ h: @escaping @Sendable () -> Void) {
        handler.withLock { $0 = h }
    }
}

extension LabCLI {
    /// Directory of this executable: `intnw-app` is built next to it.
    static var binDirectory: String { RunningExecutable.directory }
}
