import Foundation
import Synchronization
import Subprocess
import SystemPackage

/// A program the harness runs inside a network namespace (`ip netns exec NS PROGRAM ...`: ip calls
/// setns and then execs in place, so signals reach the program itself), with stdout and stderr in
/// files. `stop()` sends SIGTERM, waits, then SIGKILL; a process that exits on its own is noticed.
// @unchecked: `task` is assigned once in init and only read afterwards; the rest is in a `Mutex`.
public final class ManagedProcess: @unchecked Sendable {
    public let name: String
    public let argv: [String]
    private var task: Task<TerminationStatus?, Never>!
    /// The exit status once ended, and the error if the program could not be started.
    private let state = Mutex<(finished: TerminationStatus?, launchError: String?)>((nil, nil))

    /// Starts `argv` in namespace `namespace` (nil: this namespace). Output goes to `stdoutPath` and
    /// `stderrPath`; `environment` adds variables.
    public init(name: String, namespace: String?, argv: [String], stdoutPath: String, stderrPath: String,
                environment: [String: String] = [:], gracePeriod: Duration = .seconds(3)) throws {
        self.name = name
        self.argv = namespace.map { ["ip", "netns", "exec", $0] + argv } ?? argv
        let out = try FileDescriptor.open(FilePath(stdoutPath), .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        let err = try FileDescriptor.open(FilePath(stderrPath), .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite, .groupRead, .otherRead])
        var options = PlatformOptions()
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: gracePeriod)]
        var env: [Environment.Key: String?] = [:]
        for (k, v) in environment { env[Environment.Key(rawValue: k)!] = v }
        let config = Configuration(executable: .name(self.argv[0]), arguments: Arguments(Array(self.argv.dropFirst())),
                                   environment: .inherit.updating(env), platformOptions: options)
        task = Task { [weak self] in
            do {
                let r = try await Subprocess.run(config, output: .fileDescriptor(out, closeAfterSpawningProcess: true),
                                                 error: .fileDescriptor(err, closeAfterSpawningProcess: true))
                self?.finish(r.terminationStatus)
                return r.terminationStatus
            } catch {
                self?.fail("\(error)")
                return nil
            }
        }
    }

    private func finish(_ s: TerminationStatus) { state.withLock { $0.finished = s } }
    private func fail(_ e: String) { state.withLock { $0.launchError = e } }

    /// Exit status once the process has ended on its own or been stopped; nil while it runs.
    public var exitStatus: TerminationStatus? { state.withLock { $0.finished } }
    /// Set if the program could not be started.
    public var startError: String? { state.withLock { $0.launchError } }
    public var hasEnded: Bool { exitStatus != nil || startError != nil }

    /// Stops the process (SIGTERM, then SIGKILL after the grace period) and waits for it.
    @discardableResult
    public func stop() async -> TerminationStatus? {
        task.cancel()
        return await task.value
    }

    /// Waits for the process to end by itself.
    @discardableResult
    public func wait() async -> TerminationStatus? { await task.value }
}
