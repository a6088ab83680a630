#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import LinuxSupport
import SystemPackage

/// Where an app's JSON lines go. Implementations are safe to call from any thread.
public protocol LineSink: AnyObject, Sendable {
    /// Writes `line` plus a newline as one unit (lines from different threads never interleave).
    func write(line: String)
}

/// Writes lines to a file descriptor (stdout, or a log file opened for appending).
///
/// Each line is one `write(2)` while holding a lock, and is flushed at once (no user-space
/// buffer), so a log survives a killed process and a tailing reader sees whole lines. Files are
/// opened with O_APPEND, so several processes may share one log.
// @unchecked: writes and the failure flag are serialized by `lock` (a Mutex guarding no value of its own).
public final class FileLineSink: LineSink, @unchecked Sendable {
    private let fd: Int32
    private let ownsFD: Bool
    private let lock = Mutex(())
    private let name: String
    /// First write error, reported once on stderr (the app keeps running: a full disk must not
    /// stop the traffic the experiment measures).
    private var failed = false

    /// Standard output.
    public static func standardOutput() -> FileLineSink { FileLineSink(fd: STDOUT_FILENO, name: "stdout", owns: false) }

    private init(fd: Int32, name: String, owns: Bool) {
        self.fd = fd
        self.name = name
        self.ownsFD = owns
    }

    /// Opens (creating if needed, mode 0644) `path` for appending.
    public convenience init(path: String) throws(ToyAppError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .log(path: path, reason: "\(Errno.last)") }
        self.init(fd: fd, name: path, owns: true)
    }

    deinit {
        if ownsFD { close(fd) }
    }

    public func write(line: String) {
        var bytes = Array(line.utf8)
        bytes.append(0x0A)
        lock.withLock { _ in
            var off = 0
            while off < bytes.count {
                switch Syscall.retrying({ bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) } }) {
                case .success(let n): off += n
                case .failure(let e):
                    if !failed {
                        failed = true
                        let msg = "intnw-app: warning: cannot write log \(name): \(e)\n"
                        _ = msg.withCString { Glibc.write(STDERR_FILENO, $0, strlen($0)) }
                    }
                    return
                }
            }
        }
    }
}

/// Keeps lines in memory (tests).
public final class MemoryLineSink: LineSink, Sendable {
    private let stored = Mutex<[String]>([])

    public init() {}

    public func write(line: String) {
        stored.withLock { $0.append(line) }
    }

    /// Every line written so far.
    public var lines: [String] {
        stored.withLock { $0 }
    }
}
