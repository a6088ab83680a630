import ArgumentParser
import Emulation
import Foundation

/// Helpers shared by subcommands: user errors become one line on stderr and exit status 1.
enum LabCLI {
    static func loadTrace(_ path: String?) throws -> Trace {
        // Until the trace parser lands, only the built-in lab conditions are available.
        if let path { throw fail("trace files are not supported yet (\(path))") }
        return Trace.constant(
            wifi: LinkConditions(downBytesPerSecond: 1_250_000, upBytesPerSecond: 625_000, rttMilliseconds: 20),
            cellular: LinkConditions(downBytesPerSecond: 125_000, upBytesPerSecond: 62_500, rttMilliseconds: 100),
            durationSeconds: 120)
    }

    static func resolveShaper(_ choice: ShaperChoice) throws -> ShaperKind {
        switch choice {
        case .auto, .userspace: return .userspace
        case .netem: throw fail("netem requested but this build has no netem backend yet; use --shaper userspace")
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
final class SignalTrap: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private var handler: (@Sendable () -> Void)?
    private let lock = NSLock()

    init(_ signals: [Int32]) {
        for s in signals {
            signal(s, SIG_IGN)
            let src = DispatchSource.makeSignalSource(signal: s, queue: .global())
            src.setEventHandler { [weak self] in
                stderr("\nintnw-lab: signal \(s) received, tearing down")
                self?.lock.lock()
                let h = self?.handler
                self?.lock.unlock()
                h?()
            }
            src.resume()
            sources.append(src)
        }
    }

    func onSignal(_ h: @escaping @Sendable () -> Void) {
        lock.lock(); handler = h; lock.unlock()
    }
}
