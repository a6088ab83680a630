import Testing
import CShims
@testable import IntNW
#if canImport(Glibc)
import Glibc
#endif

@Suite("Network classification, interface table, and the default chooser")
struct NetworkViewTests {
    @Test("explicit configuration beats name heuristics; loopback is ignored")
    func classifier() throws {
        let c = NetworkClassifier(explicit: try NetworkClassifier.parse("wifi:eth1, cellular:cell0"))
        #expect(c.kind(of: "eth1") == .wifi)
        #expect(c.kind(of: "cell0") == .cellular)
        #expect(c.kind(of: "wlan0") == .wifi && c.kind(of: "wlp3s0") == .wifi && c.kind(of: "wifi0") == .wifi)
        #expect(c.kind(of: "wwan0") == .cellular && c.kind(of: "rmnet_data0") == .cellular)
        #expect(c.kind(of: "eth0") == .wired && c.kind(of: "tun3") == .other)
        #expect(c.kind(of: "docker0") == nil && c.kind(of: "veth9") == nil)
        #expect(NetworkClassifier(explicit: ["veth9": .cellular]).kind(of: "veth9") == .cellular)
        #expect(c.kind(of: "lo") == nil)
        #expect(throws: IntNWError.self) { try NetworkClassifier.parse("satellite:sat0") }
        #expect(throws: IntNWError.self) { try NetworkClassifier.parse("wifi") }
    }

    @Test("interfaces are usable with up, carrier and an IPv4 address")
    func table() {
        let up = UInt32(IFF_UP) | UInt32(IFF_RUNNING) | InterfaceState.lowerUp
        var t = InterfaceTable()
        let c = NetworkClassifier()
        t.link(index: 1, name: "lo", flags: up | UInt32(IFF_LOOPBACK), removed: false)
        t.address(index: 1, address: 0x7F00_0001, removed: false)
        t.link(index: 5, name: "wifi0", flags: up, removed: false)
        t.link(index: 6, name: "cell0", flags: up, removed: false)
        #expect(t.usableNetworks(classifier: c, only: nil).isEmpty)
        t.address(index: 5, address: 0xC612_0102, removed: false)
        t.address(index: 6, address: 0xC612_0202, removed: false)
        #expect(t.usableNetworks(classifier: c, only: nil).map(\.interfaceName) == ["wifi0", "cell0"])
        #expect(t.usableNetworks(classifier: c, only: ["cell0"]).map(\.kind) == [.cellular])
        // Carrier loss (peer down: IFF_RUNNING and IFF_LOWER_UP clear) retires the network.
        t.link(index: 5, name: nil, flags: UInt32(IFF_UP), removed: false)
        #expect(t.usableNetworks(classifier: c, only: nil).map(\.interfaceName) == ["cell0"])
        t.link(index: 5, name: nil, flags: up, removed: false)
        #expect(t.usableNetworks(classifier: c, only: nil).count == 2)
        t.address(index: 6, address: 0xC612_0202, removed: true)
        #expect(t.usableNetworks(classifier: c, only: nil).map(\.interfaceName) == ["wifi0"])
        t.link(index: 5, name: nil, flags: 0, removed: true)
        #expect(t.usableNetworks(classifier: c, only: nil).isEmpty)
    }

    private func net(_ id: UInt32, _ kind: NetworkKind, rtt: Double, bw: Double) -> NetworkStatus {
        NetworkStatus(networkID: id, kind: kind, interfaceName: "n\(id)", usable: true, troubled: false,
                      estimate: NetworkEstimate(rttMilliseconds: rtt, bandwidthBytesPerSecond: bw, source: .measured),
                      bytesSent: 0, bytesReceived: 0, lastForegroundActivityNs: 0)
    }

    @Test("WiFi dominates; otherwise FG/small → lowest RTT, BG/large → highest bandwidth; restrictions hold")
    func chooser() {
        let ch = DefaultNetworkChooser()
        let wifi = net(1, .wifi, rtt: 300, bw: 10_000)
        let fastCell = net(2, .cellular, rtt: 50, bw: 5_000)
        let fatCell = net(3, .cellular, rtt: 400, bw: 500_000)
        #expect(ch.choose(for: .foreground, among: [wifi, fastCell, fatCell]) == 1)
        #expect(ch.choose(for: .background | .large, among: [wifi, fastCell, fatCell]) == 1)
        #expect(ch.choose(for: .foreground | .small, among: [fastCell, fatCell]) == 2)
        #expect(ch.choose(for: .background | .large, among: [fastCell, fatCell]) == 3)
        #expect(ch.choose(for: .background | .small, among: [fastCell, fatCell]) == 2)
        #expect(ch.choose(for: .foreground | .large, among: [fastCell, fatCell]) == 3)
        #expect(ch.choose(for: .cellularOnly, among: [wifi, fastCell]) == 2)
        #expect(ch.choose(for: .wifiOnly, among: [fastCell, fatCell]) == nil)
        #expect(ch.choose(for: .wifiPreferred | .background, among: [fastCell, fatCell]) == 3)
        #expect(ch.choose(for: .none, among: []) == nil)
    }

    @Test("passive estimator: small IROBs sample RTT, large ones bandwidth; oracle overrides")
    func estimator() {
        var e = NetworkEstimator(kind: .cellular)
        #expect(e.current.source == .prior)
        // 100 B at the 50 KB/s prior take 2 ms to serialize: 82 ms elapsed → 80 ms RTT.
        e.addIROBSample(bytes: 100, elapsedNs: 82_000_000)
        #expect(abs(e.current.rttMilliseconds - 80) < 1e-9 && e.current.source == .measured)
        // 100 KB behind 900 KB already queued, 80 ms RTT + 1 s transfer → about 1 MB/s.
        e.addIROBSample(bytes: 100_000, queuedAheadBytes: 900_000, elapsedNs: 1_080_000_000)
        #expect(abs(e.current.bandwidthBytesPerSecond - 1_000_000) < 1)
        // A small IROB stuck behind a queue is not an RTT sample.
        e.addIROBSample(bytes: 100, queuedAheadBytes: 500_000, elapsedNs: 600_000_000)
        #expect(abs(e.current.rttMilliseconds - 80) < 1e-9)
        e.oracle = NetworkEstimate(rttMilliseconds: 5, bandwidthBytesPerSecond: 7, source: .oracle)
        #expect(e.current.rttMilliseconds == 5)
    }

    @Test("passive estimator: a queue that swells the smoothed RTT does not read as a link faster than it is")
    func estimatorSubtractsTheMinimumRTT() {
        // A 64 kB/s link with a 200 ms minimum RTT, and a background queue that has swollen the
        // kernel's smoothed RTT to 1.2 s.
        var e = NetworkEstimator(kind: .cellular)
        var info = cshims_tcp_info()
        info.tcpi_rtt = 1_200_000
        info.tcpi_min_rtt = 200_000
        info.tcpi_app_limited_flags = 1
        e.addTCPInfo(info, connection: 3, nowNs: 1_000_000_000)
        #expect(e.minimumRTTMilliseconds == 200)
        #expect(e.current.rttMilliseconds == 700)
        // A 32 KB IROB behind 32 KB not yet sent: 64 KB through the link take 1 s, plus the 200 ms
        // minimum RTT. Subtracting the smoothed 700 ms would read 128 kB/s.
        e.addIROBSample(bytes: 32_768, queuedAheadBytes: 32_768, elapsedNs: 1_200_000_000)
        #expect(abs(e.current.bandwidthBytesPerSecond - 65_536) < 1)
        // The sample is a lower bound: more elapsed time (queueing behind another sender) reads lower.
        e.addIROBSample(bytes: 32_768, queuedAheadBytes: 32_768, elapsedNs: 2_200_000_000)
        #expect(e.current.bandwidthBytesPerSecond < 65_536)
    }

    @Test("passive estimator: a kernel delivery-rate sample counts at most at the rate bytes were acknowledged over a window")
    func estimatorBoundsDeliveryRate() {
        var e = NetworkEstimator(kind: .cellular)
        var info = cshims_tcp_info()
        info.tcpi_rtt = 200_000
        info.tcpi_min_rtt = 200_000
        info.tcpi_delivery_rate = 180_000  // ACKs that arrived bunched
        info.tcpi_bytes_acked = 1_000_000
        e.addTCPInfo(info, connection: 5, nowNs: 10_000_000_000)
        #expect(e.current.bandwidthBytesPerSecond == 50_000)  // no window yet: the prior
        // 250 ms later: shorter than the 400 ms window (2 x min RTT), no sample.
        info.tcpi_bytes_acked += 16_000
        e.addTCPInfo(info, connection: 5, nowNs: 10_250_000_000)
        #expect(e.current.bandwidthBytesPerSecond == 50_000)
        // 500 ms after the window began, 32 000 B were acknowledged: 64 kB/s, not 180.
        info.tcpi_bytes_acked += 16_000
        e.addTCPInfo(info, connection: 5, nowNs: 10_500_000_000)
        #expect(e.current.bandwidthBytesPerSecond == 64_000)
        // An application-limited snapshot is no sample; nor is one of another connection (its
        // acknowledged bytes start a window of their own).
        info.tcpi_bytes_acked += 32_000
        info.tcpi_app_limited_flags = 1
        e.addTCPInfo(info, connection: 5, nowNs: 11_000_000_000)
        info.tcpi_app_limited_flags = 0
        e.addTCPInfo(info, connection: 6, nowNs: 11_500_000_000)
        #expect(e.current.bandwidthBytesPerSecond == 64_000)
        // A gap of more than four windows says nothing about the link.
        info.tcpi_bytes_acked += 900_000
        e.addTCPInfo(info, connection: 6, nowNs: 13_500_000_000)
        #expect(e.current.bandwidthBytesPerSecond == 64_000)
        // Nor does a window that carried a few small messages (254 B in 400 ms: a sender of
        // acknowledgements), although the kernel did not flag it application-limited.
        info.tcpi_bytes_acked += 254
        e.addTCPInfo(info, connection: 6, nowNs: 13_900_000_000)
        #expect(e.current.bandwidthBytesPerSecond == 64_000)
        // Four full segments do.
        info.tcpi_bytes_acked += 4 * 1448
        e.addTCPInfo(info, connection: 6, nowNs: 14_300_000_000)
        #expect(e.current.bandwidthBytesPerSecond < 64_000)
    }
}
