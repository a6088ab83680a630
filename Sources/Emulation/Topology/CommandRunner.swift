import Subprocess
import SystemPackage

/// A command that exited non-zero or could not start. Prints as one line naming the command.
public struct CommandError: Error, CustomStringConvertible {
    public var command: [String]
    public var status: String
    public var stderr: String

    public var description: String {
        let detail = stderr.split(separator: "\n").first.map(String.init) ?? status
        return "\(command.joined(separator: " ")): \(detail)"
    }
}

/// Runs the system tools the testbed drives (`ip`, `sysctl`, `ethtool`). Not a hot path.
public enum CommandRunner {
    /// Runs `argv` (looked up in PATH), feeding `input` on stdin; returns stdout. Throws `CommandError`
    /// on a non-zero exit.
    @discardableResult
    public static func run(_ argv: [String], input: String? = nil) async throws -> String {
        precondition(!argv.isEmpty)
        let exe = Executable.name(argv[0])
        let args = Arguments(Array(argv.dropFirst()))
        let ok: Bool, status: String, out: String?, err: String?
        do {
            if let input {
                let r = try await Subprocess.run(exe, arguments: args, input: .string(input),
                                                 output: .string(limit: 1 << 20), error: .string(limit: 1 << 16))
                (ok, status, out, err) = (r.terminationStatus.isSuccess, "\(r.terminationStatus)", r.standardOutput, r.standardError)
            } else {
                let r = try await Subprocess.run(exe, arguments: args, output: .string(limit: 1 << 20),
                                                 error: .string(limit: 1 << 16))
                (ok, status, out, err) = (r.terminationStatus.isSuccess, "\(r.terminationStatus)", r.standardOutput, r.standardError)
            }
        } catch {
            throw CommandError(command: argv, status: "could not start", stderr: "\(error)")
        }
        guard ok else { throw CommandError(command: argv, status: status, stderr: err ?? "") }
        return out ?? ""
    }
}
