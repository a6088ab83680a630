import Emulation
import Foundation
import Lab
import Logging

/// Emulator benchmarks (issue 2): throughput through the user-space emulator at 20 ms one-way delay
/// beside an unshaped veth pair, and one-way delay accuracy at 10 Mbit/s.
enum EmulatorBench {
    static let tcpBufferBytes = 64 << 20

    /// Brings up an unshaped-to-start testbed, runs `body`, tears down whatever happens.
    static func with<T>(_ prefix: String, _ shaper: ShaperKind, offload: Bool = false,
                        _ body: (Testbed) async throws -> T) async throws -> T {
        var config = Testbed.Configuration(trace: Trace.constant(
            wifi: LinkConditions(downBytesPerSecond: 1e9, upBytesPerSecond: 1e9, rttMilliseconds: 0),
            cellular: LinkConditions(downBytesPerSecond: 1e9, upBytesPerSecond: 1e9, rttMilliseconds: 0),
            durationSeconds: 3600))
        config.prefix = prefix
        config.shaper = shaper
        config.userspace.offload = offload
        config.tcpBufferBytes = tcpBufferBytes
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        return try await Testbed.with(config, logger: logger, body)
    }

    static func unlimited(delayMicroseconds: Double) -> DirectionParameters {
        DirectionParameters(bytesPerSecond: nil, delayMicroseconds: delayMicroseconds)
    }

    static func run(seconds: Double) async throws -> [String] {
        var lines: [String] = []
        func say(_ s: String) { print(s); lines.append(s) }
        say("== emulator (TCP buffers: tcp_rmem/tcp_wmem max \(tcpBufferBytes >> 20) MiB in both namespaces)")

        // Ceiling: the same transfer through an unshaped veth pair, no emulator in the path.
        let ceiling = try await withVeth { spec in
            try await NamespaceMeasure.tcpGoodput(spec: spec, source: "198.18.1.2", port: 9001, seconds: seconds)
        }
        say(String(format: "veth pair, unshaped (ceiling):                 %7.0f Mbit/s", ceiling / 1e6))

        for offload in [false, true] {
            let bps = try await with("ibemu", .userspace, offload: offload) { bed in
                for d in LinkDirection.allCases {
                    try bed.shaper.apply(link: "wifi", direction: d, parameters: unlimited(delayMicroseconds: 20_000))
                }
                return try await NamespaceMeasure.tcpGoodput(spec: bed.topology.spec, source: "198.18.1.2", port: 9002, seconds: seconds)
            }
            say(String(format: "userspace emulator, no rate limit, 20 ms one-way, offload %@: %7.0f Mbit/s = %.2f of veth",
                       offload ? "on " : "off", bps / 1e6, bps / ceiling))
        }

        // Delay accuracy at 10 Mbit/s (1.25 MB/s), 20 ms one-way: light UDP probes, so no queue builds and
        // the configured delay is propagation + the probe's own serialization.
        let (errors, lateness) = try await with("ibdel", .userspace) { bed in
            let rate = 1_250_000.0
            for d in LinkDirection.allCases {
                try bed.shaper.apply(link: "wifi", direction: d,
                                     parameters: DirectionParameters(bytesPerSecond: rate, delayMicroseconds: 20_000))
            }
            let probe = 200
            let configured = 20_000 + Double(probe) / rate * 1e6
            let e = try await NamespaceMeasure.udpDelayErrors(spec: bed.topology.spec, source: "198.18.1.2", port: 9003,
                                                              count: 3000, intervalSeconds: 0.002, probeBytes: probe,
                                                              configuredOneWayMicroseconds: configured)
            return (e, (bed.shaper as? UserspaceShaper)?.lateness())
        }
        let sorted = errors.sorted()
        func pct(_ p: Double) -> Double { sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        say(String(format: "one-way delay error at 10 Mbit/s, 20 ms (UDP probes end to end, n=%d): p50 %.3f ms, p99 %.3f ms, max %.3f ms",
                   sorted.count, pct(0.5) / 1000, pct(0.99) / 1000, (sorted.last ?? .nan) / 1000))
        if let l = lateness {
            say(String(format: "  emulator departure lateness (actual - scheduled): p50 %.3f ms, p99 %.3f ms over %d packets",
                       Double(l.percentileMicroseconds(0.5)) / 1000, Double(l.percentileMicroseconds(0.99)) / 1000, Int(l.total)))
        }
        return lines
    }

    /// A testbed whose links are plain veth pairs with nothing shaping them.
    static func withVeth<T>(_ body: (TopologySpec) async throws -> T) async throws -> T {
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let topo = Topology(spec: TopologySpec(prefix: "ibveth"))
        try await topo.create(tcpBufferBytes: tcpBufferBytes, logger: logger)
        do {
            try await topo.createVeths()
            try await topo.configureLinks()
            let r = try await body(topo.spec)
            await topo.destroy(logger: logger)
            return r
        } catch {
            await topo.destroy(logger: logger)
            throw error
        }
    }
}
