#if canImport(Glibc)
import Glibc
#endif
import Emulation
import Foundation
import Lab
import Testing

/// `--tcp-cc cubic` and `--tcp-cc bbr` both work: the testbed pins the algorithm in both namespaces,
/// records what it reads back, and a new TCP socket in the namespace uses it and moves data.
@Suite(.netnsAvailableOrRequired, .netnsRequired, .serialized)
struct TCPSettingsNetnsTests {
    @Test("cubic and bbr are pinned, recorded and used by new sockets", arguments: [TCPSettings.CongestionControl.cubic, .bbr])
    func congestionControl(cc: TCPSettings.CongestionControl) async throws {
        var config = Testbed.Configuration(trace: Trace.constant(wifi: TraceGenerator.labWiFi, cellular: TraceGenerator.labCellular,
                                                                 durationSeconds: 30))
        config.prefix = "ttcp"
        config.tcp = TCPSettings(congestionControl: cc)
        try await withTestbed(config) { bed in
            #expect(bed.tcpRecord["client"]?["net.ipv4.tcp_congestion_control"] == cc.rawValue)
            #expect(bed.tcpRecord["server"]?["net.ipv4.tcp_congestion_control"] == cc.rawValue)
            #expect(bed.tcpRecord["client"]?["net.ipv4.tcp_no_metrics_save"] == "1")
            let spec = bed.topology.spec
            // A second way: the socket's own TCP_CONGESTION option.
            let fd = try NamespaceSocket.tcp(ns: spec.clientNamespace, source: spec.links[0].clientAddress)
            defer { close(fd) }
            var name = [CChar](repeating: 0, count: 16)
            var len = socklen_t(name.count)
            #expect(getsockopt(fd, Int32(IPPROTO_TCP), 13 /* TCP_CONGESTION */, &name, &len) == 0)
            #expect(String(cString: name) == cc.rawValue)
            bed.startReplay()
            let bps = try await NamespaceMeasure.tcpGoodput(spec: spec, source: spec.links[0].clientAddress, port: 5077, seconds: 3, warmupSeconds: 1)
            // Lab WiFi uplink is 625 000 B/s = 5 Mbit/s: the transfer must move a real fraction of it.
            #expect(bps > 1_000_000 && bps < 6_000_000, "goodput \(bps) bit/s with \(cc.rawValue)")
        }
    }
}
