/// The TCP configuration the testbed pins in both namespaces, so a run does not silently measure
/// whatever the host's defaults are (this kernel defaults to BBR; most distributions to CUBIC).
///
/// Default congestion control: CUBIC. It is the Linux default on nearly every distribution (so what a
/// phone or laptop running the toy apps would use) and the algorithm of the Linux kernels the original
/// Intentional Networking evaluation ran on; BBR and Reno are one option away (`--tcp-cc`).
public struct TCPSettings: Sendable, Codable, Equatable {
    public enum CongestionControl: String, Sendable, Codable, CaseIterable {
        case cubic, bbr, reno
    }

    public var congestionControl: CongestionControl

    public init(congestionControl: CongestionControl = .cubic) {
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
