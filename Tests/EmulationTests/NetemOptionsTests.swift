import Testing
@testable import Emulation

@Suite struct NetemOptionsTests {
    @Test func limitFollowsTheBandwidthDelayProduct() {
        // 100 Mbit/s, 50 ms one way: RTT 0.1 s, BDP 1.25 MB = 833.3 packets, × 1.5 = 1250.
        #expect(NetemOptions.limitPackets(bytesPerSecond: 12_500_000, oneWayDelayMicroseconds: 50_000) == 1250)
        // 1 Gbit/s, 10 ms: BDP 2.5 MB = 1666.7 packets, × 1.5 = 2500.
        #expect(NetemOptions.limitPackets(bytesPerSecond: 125_000_000, oneWayDelayMicroseconds: 10_000) == 2500)
        // Rounds up: 1.5 × 12_000_000 × 0.1 / 1500 = 1200.0 exactly; a hair more gives 1201.
        #expect(NetemOptions.limitPackets(bytesPerSecond: 12_000_001, oneWayDelayMicroseconds: 50_000) == 1201)
        // Jumbo MTU halves the packet count.
        #expect(NetemOptions.limitPackets(bytesPerSecond: 125_000_000, oneWayDelayMicroseconds: 10_000, mtuBytes: 3000) == 1250)
    }

    @Test func limitHasAFloorAndACeiling() {
        // 10 Mbit/s, 20 ms: 1.5 × BDP = 50 packets, below the floor.
        #expect(NetemOptions.limitPackets(bytesPerSecond: 1_250_000, oneWayDelayMicroseconds: 20_000) == 100)
        #expect(NetemOptions.limitPackets(bytesPerSecond: 1e12, oneWayDelayMicroseconds: 0) == 100)
        #expect(NetemOptions.limitPackets(bytesPerSecond: 0, oneWayDelayMicroseconds: 1e6) == 100)
        #expect(NetemOptions.limitPackets(bytesPerSecond: .nan, oneWayDelayMicroseconds: -5) == 100)
        #expect(NetemOptions.limitPackets(bytesPerSecond: 1e12, oneWayDelayMicroseconds: 1e6) == 1_000_000)
        #expect(NetemOptions.limitPackets(bytesPerSecond: .infinity, oneWayDelayMicroseconds: .infinity) == 100)
    }

    @Test func unlimitedRateIsSizedForTheVethCeiling() {
        // 10 Gbit/s reference, 20 ms one way: 1.5 × 1.25e9 × 0.04 / 1500 = 50_000.
        #expect(NetemOptions.limitPackets(bytesPerSecond: nil, oneWayDelayMicroseconds: 20_000) == 50_000)
    }

    @Test func limitIsAlwaysAtLeastOneAndAHalfBDP() {
        var rng = DeterministicRNG(seed: 7)
        for _ in 0..<500 {
            let rate = Double(rng.next() % 200_000_000)
            let delay = Double(rng.next() % 400_000)
            let limit = NetemOptions.limitPackets(bytesPerSecond: rate, oneWayDelayMicroseconds: delay)
            let bdpPackets = rate * 2 * delay / 1e6 / 1500
            #expect(Double(limit) >= min(1.5 * bdpPackets, Double(NetemOptions.maximumLimitPackets)))
            #expect(limit >= NetemOptions.minimumLimitPackets)
        }
    }

    @Test func lossIsAFractionOfUInt32Max() {
        #expect(NetemOptions.lossProbability(0) == 0)
        #expect(NetemOptions.lossProbability(1) == UInt32.max)
        #expect(NetemOptions.lossProbability(0.5) == 2_147_483_648)
        #expect(NetemOptions.lossProbability(0.001) == 4_294_967)
        #expect(NetemOptions.lossProbability(-0.2) == 0)
        #expect(NetemOptions.lossProbability(3) == UInt32.max)
        #expect(NetemOptions.lossProbability(.nan) == 0)
    }

    @Test func conversionFromDirectionParameters() {
        let p = DirectionParameters(bytesPerSecond: 250_000.4, delayMicroseconds: 35_000.5, lossFraction: 0.02)
        let o = NetemOptions(p, seed: 99)
        #expect(o.latencyNanoseconds == 35_000_500)
        #expect(o.rateBytesPerSecond == 250_000)
        // Hand-computed (the old expectations called the functions under test): 0.02 × 4,294,967,295
        // = 85,899,345.9 → 85,899,346; limit 1.5 × 250,000.4 × 70.001 ms / 1500 = 17.5 → 18, floor 100.
        #expect(o.lossProbability == 85_899_346)
        #expect(o.limitPackets == 100)
        // A direction whose BDP is over the floor: 1.5 × 2,000,000 × 100 ms / 1500 = 200 packets.
        #expect(NetemOptions(DirectionParameters(bytesPerSecond: 2_000_000, delayMicroseconds: 50_000), seed: 0).limitPackets == 200)
        #expect(o.seed == 99)

        // A sub-1 B/s rate must not become 0 (= unlimited).
        #expect(NetemOptions(DirectionParameters(bytesPerSecond: 0.3, delayMicroseconds: 0), seed: 0).rateBytesPerSecond == 1)
        // Outage: 100% loss whatever the trace's loss says.
        let outage = NetemOptions(DirectionParameters(bytesPerSecond: 1e6, delayMicroseconds: 1000, lossFraction: 0.1, available: false), seed: 0)
        #expect(outage.lossProbability == UInt32.max)
        // From a trace slice.
        let slice = LinkConditions(downBytesPerSecond: 2_000_000, upBytesPerSecond: 500_000, rttMilliseconds: 60, lossFraction: 0)
        let up = NetemOptions(DirectionParameters.from(slice, direction: .uplink, available: true), seed: 0)
        #expect(up.rateBytesPerSecond == 500_000)
        #expect(up.latencyNanoseconds == 30_000_000)
    }

    @Test func derivedSeedsAreReproducibleAndDistinct() {
        let a = NetemOptions.derivedSeed(base: 1, linkIndex: 0, direction: .uplink, update: 0)
        #expect(a == NetemOptions.derivedSeed(base: 1, linkIndex: 0, direction: .uplink, update: 0))
        var seen = Set<UInt64>()
        for base: UInt64 in [1, 2] {
            for link in 0..<2 {
                for direction in LinkDirection.allCases {
                    for update: UInt64 in 0..<50 {
                        seen.insert(NetemOptions.derivedSeed(base: base, linkIndex: link, direction: direction, update: update))
                    }
                }
            }
        }
        #expect(seen.count == 2 * 2 * 2 * 50)
    }

    @Test func dropsAreAttributedByTheParametersInForce() {
        var d = NetemShaper.DirectionState(counters: DirectionCounters(link: "wifi", direction: .downlink))
        let clean = DirectionParameters(bytesPerSecond: 1e6, delayMicroseconds: 1000)
        d.fold(QdiscStats(bytes: 15_000, packets: 10, drops: 2, queueLength: 3, backlogBytes: 4500), under: clean)
        #expect(d.counters.packetsOut == 10 && d.counters.bytesOut == 15_000)
        #expect(d.counters.queueDrops == 2 && d.counters.lossDrops == 0 && d.counters.outageDrops == 0)
        #expect(d.heldPackets == 3 && d.heldBytes == 4500)

        // 10% loss: of 90 offered (80 sent + 10 dropped), about 9 are loss, the rest queue drops.
        let lossy = DirectionParameters(bytesPerSecond: 1e6, delayMicroseconds: 1000, lossFraction: 0.1)
        d.fold(QdiscStats(bytes: 135_000, packets: 90, drops: 12), under: lossy)
        #expect(d.counters.packetsOut == 90)
        #expect(d.counters.lossDrops == 9 && d.counters.queueDrops == 3)

        let outage = DirectionParameters(bytesPerSecond: nil, delayMicroseconds: 1000, available: false)
        d.fold(QdiscStats(bytes: 135_000, packets: 90, drops: 40), under: outage)
        #expect(d.counters.outageDrops == 28)

        // A re-created qdisc restarts from zero: its counts are new, not negative deltas.
        d.fold(QdiscStats(bytes: 3000, packets: 2, drops: 0), under: clean)
        #expect(d.counters.packetsOut == 92 && d.counters.bytesOut == 138_000)
    }
}

@Suite struct ShaperSelectionTests {
    static let missing = NetemSupport(available: false, explanation: "creating a netem qdisc in a scratch network namespace failed: No such file or directory")
    static let present = NetemSupport(available: true, explanation: "a netem qdisc could be created in a scratch network namespace")

    @Test func autoFollowsTheKernel() throws {
        #expect(try ShaperSelection.resolve(requested: .auto, probe: { Self.missing }) == .userspace)
        #expect(try ShaperSelection.resolve(requested: .auto, probe: { Self.present }) == .netem)
        let choice = try ShaperSelection.choose(requested: .auto, probe: { Self.missing })
        #expect(choice.reason == "shaper: userspace (auto: this kernel has no sch_netem: \(Self.missing.explanation))")
    }

    @Test func netemOnAKernelWithoutItFailsWithOneClearLine() throws {
        #expect(try ShaperSelection.resolve(requested: .netem, probe: { Self.present }) == .netem)
        let error = #expect(throws: NetemUnavailableError.self) {
            try ShaperSelection.resolve(requested: .netem, probe: { Self.missing })
        }
        #expect(error?.description == "netem requested but this kernel has no sch_netem (\(Self.missing.explanation)); use --shaper userspace or auto")
        #expect(error?.description.contains("\n") == false)
    }

    @Test func userspaceNeverProbes() throws {
        var probed = false
        let kind = try ShaperSelection.resolve(requested: .userspace, probe: { probed = true; return Self.present })
        #expect(kind == .userspace)
        #expect(!probed)
    }

    @Test func requestsParseFromTheirCLISpelling() {
        #expect(ShaperRequest(rawValue: "auto") == .auto)
        #expect(ShaperRequest(rawValue: "netem") == .netem)
        #expect(ShaperRequest(rawValue: "userspace") == .userspace)
        #expect(ShaperRequest(rawValue: "tc") == nil)
    }

    @Test func kernelConfigLines() {
        #expect(NetemSupport.kernelConfigHasNetem("CONFIG_NET_SCH_TBF=y\n# CONFIG_NET_SCH_NETEM is not set\n") == false)
        #expect(NetemSupport.kernelConfigHasNetem("CONFIG_NET_SCH_NETEM=m\n") == true)
        #expect(NetemSupport.kernelConfigHasNetem("  CONFIG_NET_SCH_NETEM=y\r\n") == true)
        #expect(NetemSupport.kernelConfigHasNetem("CONFIG_NET_SCH_NETEM_X=y\n") == nil)
        #expect(NetemSupport.kernelConfigHasNetem("") == nil)
    }

    @Test func interfaceNames() {
        #expect(NetemShaper.isValidInterfaceName("wifi0"))
        #expect(NetemShaper.isValidInterfaceName("abcdefghijklmno"))
        #expect(!NetemShaper.isValidInterfaceName("abcdefghijklmnop"))
        #expect(!NetemShaper.isValidInterfaceName(""))
        #expect(!NetemShaper.isValidInterfaceName("a/b"))
        #expect(!NetemShaper.isValidInterfaceName("a b"))
        #expect(!NetemShaper.isValidInterfaceName(".."))
    }

    @Test func missingNamespaceIsAClearError() {
        let error = #expect(throws: NetlinkError.self) {
            _ = try NetlinkSocket.open(in: .named("inm-does-not-exist"))
        }
        #expect(error?.description == "open /run/netns/inm-does-not-exist in inm-does-not-exist: No such file or directory")
    }
}
