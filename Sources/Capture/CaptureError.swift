import LinuxSupport
import SystemPackage

/// Everything that can go wrong capturing or reading packets. Each case prints one line that says
/// what happened and, where the user can do something about it, what to do.
public enum CaptureError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The named network namespace does not exist (no /run/netns/NAME).
    case namespaceNotFound(String)
    /// setns(2) into the namespace failed.
    case enterNamespaceFailed(namespace: String, errno: Errno)
    /// libpcap refused to open the interface for lack of privileges.
    case permissionDenied(interface: String, detail: String)
    /// There is no interface of that name (in that namespace).
    case noSuchInterface(String)
    /// Any other failure opening or configuring a live capture.
    case activateFailed(interface: String, detail: String)
    /// A BPF filter did not compile or could not be installed.
    case badFilter(String, detail: String)
    /// The capture thread could not be started or did not start in time.
    case threadStartFailed(String)
    /// The pcap output file could not be created or written.
    case writeFailed(path: String, detail: String)
    /// The capture was already stopped.
    case alreadyStopped
    /// The pcap file does not exist or cannot be read.
    case fileUnreadable(path: String, detail: String)
    /// The pcap file is empty (0 bytes): the capture never started or wrote nothing.
    case emptyFile(path: String)
    /// The file is not a pcap file libpcap understands (bad magic, bad header).
    case notAPcapFile(path: String, detail: String)
    /// The file ends in the middle of a packet record (typically a capture that was killed).
    case truncated(path: String, completePackets: Int, detail: String)
    /// A packet record is corrupt (impossible length); `completePackets` records were read before it.
    case corrupt(path: String, completePackets: Int, detail: String)

    public var description: String {
        switch self {
        case .namespaceNotFound(let ns):
            return "network namespace '\(ns)' does not exist (no /run/netns/\(ns)); create it first (ip netns add)"
        case .enterNamespaceFailed(let ns, let e):
            return "cannot enter network namespace '\(ns)': \(errnoText(e)) (capturing in a namespace needs root)"
        case .permissionDenied(let i, let d):
            return "no permission to capture on '\(i)': \(d) (run as root or grant CAP_NET_RAW)"
        case .noSuchInterface(let i):
            return "no interface named '\(i)' in the capture's network namespace"
        case .activateFailed(let i, let d):
            return "cannot start capture on '\(i)': \(d)"
        case .badFilter(let f, let d):
            return "bad capture filter '\(f)': \(d)"
        case .threadStartFailed(let d):
            return "capture thread failed: \(d)"
        case .writeFailed(let p, let d):
            return "cannot write pcap file \(p): \(d)"
        case .alreadyStopped:
            return "capture already stopped"
        case .fileUnreadable(let p, let d):
            return "cannot read pcap file \(p): \(d)"
        case .emptyFile(let p):
            return "pcap file \(p) is empty (0 bytes): the capture wrote nothing"
        case .notAPcapFile(let p, let d):
            return "\(p) is not a readable pcap file: \(d)"
        case .truncated(let p, let n, let d):
            return "pcap file \(p) is truncated after \(n) complete packets (\(d))"
        case .corrupt(let p, let n, let d):
            return "pcap file \(p) is corrupt after \(n) packets (\(d))"
        }
    }
}

func errnoText(_ e: Errno) -> String {
    "\(e) (errno \(e.rawValue))"
}
