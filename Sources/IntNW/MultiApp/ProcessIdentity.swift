/// Who a process is, as far as the shared segment cares: pid, start time (tells a live process
/// from a reused pid) and PID namespace (pids of another PID namespace cannot be checked here).
#if canImport(Glibc)
import Glibc
#endif
import LinuxSupport
import SystemPackage

struct ProcessIdentity: Equatable, Sendable {
    var pid: UInt64
    /// Start time in clock ticks since boot (/proc/<pid>/stat field 22).
    var startTicks: UInt64
    /// Inode of /proc/<pid>/ns/pid (0 if unknown).
    var pidNamespaceInode: UInt64

    static func current() -> ProcessIdentity {
        let pid = UInt64(getpid())
        return ProcessIdentity(pid: pid, startTicks: ProcessIdentity.status(pid: pid)?.startTicks ?? 0,
                               pidNamespaceInode: inode(of: "/proc/self/ns/pid") ?? 0)
    }

    /// What /proc/<pid>/stat says about a process: nil when it does not exist.
    struct Status {
        /// Zombie or dead (exited, not yet reaped): it will never send again.
        var exited: Bool
        var startTicks: UInt64
    }

    static func status(pid: UInt64) -> Status? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1024)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return parseStat(buf[0..<n])
    }

    /// Parses `pid (comm) state ... starttime ...`; comm may hold spaces and parentheses, so fields
    /// are counted from the last ')'.
    static func parseStat(_ bytes: ArraySlice<UInt8>) -> Status? {
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        // fields[0] is field 3 (state); starttime is field 22.
        guard fields.count > 19, let state = fields[0].first else { return nil }
        var ticks: UInt64 = 0
        for c in fields[19] {
            guard c >= 48 && c <= 57 else { return nil }
            let (m, o1) = ticks.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - 48))
            if o1 || o2 { return nil }
            ticks = a
        }
        let exited = state == UInt8(ascii: "Z") || state == UInt8(ascii: "X") || state == UInt8(ascii: "x")
        return Status(exited: exited, startTicks: ticks)
    }

    static func inode(of path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return UInt64(st.st_ino)
    }

    /// Whether the process recorded as (`pid`, `startTicks`, `pidNamespaceInode`) still runs.
    /// Processes of another PID namespace count as alive: their pid means nothing here.
    func isAlive(pid: UInt64, startTicks: UInt64, pidNamespaceInode ns: UInt64) -> Bool {
        if ns != 0 && pidNamespaceInode != 0 && ns != pidNamespaceInode { return true }
        guard let s = ProcessIdentity.status(pid: pid) else {
            // No /proc entry: gone, unless /proc is not mounted at all (then ask the kernel).
            if access("/proc/self/stat", F_OK) == 0 { return false }
            return kill(pid_t(pid), 0) == 0 || Errno.last == .notPermitted
        }
        if s.exited { return false }
        return startTicks == 0 || s.startTicks == startTicks
    }
}
