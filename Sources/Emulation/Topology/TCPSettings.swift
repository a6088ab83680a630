#if canImport(Glibc)
import Glibc
#endif

/// The TCP configuration the testbed pins in both namespaces, so a run does not silently measure
/// whatever the host's defaults are (this kernel defaults to BBR; most distributions to CUBIC).
///
/// Default congestion control: BBR. Every measurement the project has recorded so far, and the committed
/// regression baseline, ran under BBR (this kernel's default, which new namespaces inherited before the
/// algorithm was pinned), so pinning BBR keeps results comparable. The choice matters: on the emulated
/// links' deep drop-tail queues CUBIC fills the queue and multiplies FG latency behind BG traffic
/// (quick multiapp: FG p95 837-1099 ms with CUBIC against 260 ms with BBR), which is an experiment in
/// itself: run it with `--tcp-cc cubic` (CUBIC is what most Linux clients use, and what the original
/// IntNW evaluation's kernels ran).
public struct TCPSettings: Sendable, Codable, Equatable {
    public enum CongestionControl: String, Sendable, Codable, CaseIterable {
        case cubic, bbr, reno
    }

    public var congestionControl: CongestionControl

    public init(congestionControl: CongestionControl = .bbr) {
        self.congestionControl = congestionControl
    }

    /// The sysctls set in both namespaces. Besides the congestion control, the loss-recovery and option
    /// settings that change TCP's behaviour are pinned to the mainline kernel defaults (so a host that
    /// changed them does not leak into a run), with one deliberate exception: `tcp_no_metrics_save=1`,
    /// so a trial does not start from the RTT/ssthresh that an earlier connection cached for the same
    /// destination (trials must be independent).
    public var sysctls: [String] {
        ["net.ipv4.tcp_congestion_control=\(congestionControl.rawValue)",
         "net.ipv4.tcp_no_metrics_save=1",
         "net.ipv4.tcp_slow_start_after_idle=1",
         "net.ipv4.tcp_ecn=2",
         "net.ipv4.tcp_sack=1",
         "net.ipv4.tcp_timestamps=1",
         "net.ipv4.tcp_window_scaling=1",
         "net.ipv4.tcp_frto=2",
         "net.ipv4.tcp_mtu_probing=0",
         "net.ipv4.tcp_notsent_lowat=4294967295"]
    }

    /// Keys read back from each namespace after setup and recorded with every run (the pinned ones plus
    /// the buffer sizes and MPTCP's switch).
    public static let recordedKeys = [
        "net.ipv4.tcp_congestion_control", "net.ipv4.tcp_no_metrics_save", "net.ipv4.tcp_slow_start_after_idle",
        "net.ipv4.tcp_ecn", "net.ipv4.tcp_sack", "net.ipv4.tcp_timestamps", "net.ipv4.tcp_window_scaling",
        "net.ipv4.tcp_frto", "net.ipv4.tcp_mtu_probing", "net.ipv4.tcp_notsent_lowat",
        "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.mptcp.enabled",
    ]
}

/// How Linux Multipath TCP is configured in the testbed (the in-kernel path manager, set up with
/// `ip mptcp`): the client announces its cellular address as an endpoint that opens a subflow, either
/// as a `backup` subflow (used only when no other subflow is usable) or as a normal one. The first
/// subflow goes where the routing table sends it (WiFi while it is up). Both namespaces allow two
/// extra subflows and two accepted addresses.
public enum MPTCPMode: String, Sendable, Codable, CaseIterable {
    case backup
    case subflow

    /// Whether this kernel has MPTCP switched on (`net.mptcp.enabled` = 1 in a new namespace follows
    /// the host's module; the file is missing without MPTCP).
    public static var kernelSupport: String? {
        guard let f = fopen("/proc/sys/net/mptcp/enabled", "r") else { return "this kernel has no MPTCP (/proc/sys/net/mptcp/enabled is missing)" }
        fclose(f)
        return nil
    }
}
