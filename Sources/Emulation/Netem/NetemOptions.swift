import DeterministicRandom
/// The complete netem configuration for one direction of one link, in netem's own units. Every update
/// sends all of it (docs/testbed.md, Link emulation): a netem `change` resets whatever it omits (limit falls back
/// to 1000 packets, loss to 0, the PRNG to a random seed).
public struct NetemOptions: Sendable, Equatable {
    /// Fixed one-way delay, nanoseconds (TCA_NETEM_LATENCY64; also in the qopt in 64 ns ticks).
    public var latencyNanoseconds: UInt64
    /// Queue limit, packets. netem counts every packet it holds, including those still in the delay
    /// line, so this must cover the bandwidth-delay product (see `NetemOptions.limitPackets`).
    public var limitPackets: UInt32
    /// Random loss probability scaled to 0...UInt32.max, netem's encoding (UInt32.max drops all).
    public var lossProbability: UInt32
    /// Serialization rate, bytes per second; 0 = unlimited (sent explicitly, so a previous rate is cleared).
    public var rateBytesPerSecond: UInt64
    /// Seed of netem's loss PRNG (TCA_NETEM_PRNG_SEED, Linux 6.6 and later; older kernels ignore it).
    public var seed: UInt64

    public init(latencyNanoseconds: UInt64, limitPackets: UInt32, lossProbability: UInt32,
                rateBytesPerSecond: UInt64, seed: UInt64) {
        self.latencyNanoseconds = latencyNanoseconds
        self.limitPackets = limitPackets
        self.lossProbability = lossProbability
        self.rateBytesPerSecond = rateBytesPerSecond
        self.seed = seed
    }

    /// Converts shaper parameters. An outage (`available == false`) becomes 100% loss; packets
    /// already in the delay line still arrive, as frames already on the air would.
    public init(_ parameters: DirectionParameters, seed: UInt64, mtuBytes: Int = 1500) {
        let delayNs = Self.finiteNonNegative(parameters.delayMicroseconds) * 1000
        latencyNanoseconds = delayNs >= Double(UInt64.max) ? UInt64.max : UInt64(delayNs.rounded())
        lossProbability = parameters.available ? Self.lossProbability(parameters.lossFraction) : UInt32.max
        let rate = parameters.bytesPerSecond.map(Self.finiteNonNegative) ?? 0
        // A positive rate below 1 B/s would round to 0, which netem reads as "unlimited".
        rateBytesPerSecond = rate == 0 ? 0 : (rate >= 1.8e19 ? UInt64.max : max(1, UInt64(rate.rounded())))
        limitPackets = Self.limitPackets(bytesPerSecond: parameters.bytesPerSecond,
                                         oneWayDelayMicroseconds: parameters.delayMicroseconds,
                                         mtuBytes: mtuBytes)
        self.seed = seed
    }

    /// Loss fraction (clamped to 0...1) scaled to netem's u32 probability: fraction × UInt32.max.
    public static func lossProbability(_ fraction: Double) -> UInt32 {
        let f = min(1, finiteNonNegative(fraction))
        return UInt32((f * Double(UInt32.max)).rounded())
    }

    /// Smallest limit ever used, packets: enough for bursts on slow or zero-delay links.
    public static let minimumLimitPackets: UInt32 = 100
    /// Largest limit used, packets (a bound on kernel memory: about 1.5 GB of full-size packets).
    public static let maximumLimitPackets: UInt32 = 1_000_000
    /// Rate assumed for an unlimited direction when sizing the queue: about what a veth pair carries.
    public static let unlimitedReferenceBytesPerSecond = 10e9 / 8

    /// netem queue limit in packets:
    ///
    ///     limit = clamp(ceil(1.5 × rate × RTT / MTU), 100, 1_000_000),  RTT = 2 × one-way delay
    ///
    /// i.e. at least 1.5 × the bandwidth-delay product in full-size packets (docs/testbed.md, Link emulation), with
    /// RTT taken as twice this direction's delay because traces split the RTT evenly. netem's limit
    /// covers its delay line (rate × one-way delay) too, so this leaves about one RTT's worth of
    /// bottleneck buffer beyond it. Unlimited directions are sized for `unlimitedReferenceBytesPerSecond`.
    public static func limitPackets(bytesPerSecond: Double?, oneWayDelayMicroseconds: Double, mtuBytes: Int = 1500) -> UInt32 {
        let rate = bytesPerSecond.map(finiteNonNegative) ?? unlimitedReferenceBytesPerSecond
        let rttSeconds = 2 * finiteNonNegative(oneWayDelayMicroseconds) / 1e6
        let packets = (1.5 * rate * rttSeconds / Double(max(mtuBytes, 1))).rounded(.up)
        if packets >= Double(maximumLimitPackets) { return maximumLimitPackets }
        return max(minimumLimitPackets, UInt32(packets))
    }

    /// Seed for one update: a SplitMix64 hash of the run's base seed, the link, the direction and the
    /// update number. netem reseeds its PRNG on every change, so a constant seed would replay the same
    /// loss pattern in every trace slice; this keeps runs reproducible without that repetition.
    public static func derivedSeed(base: UInt64, linkIndex: Int, direction: LinkDirection, update: UInt64) -> UInt64 {
        var x = base
        x = DeterministicRNG.mix(x ^ UInt64(truncatingIfNeeded: linkIndex))
        x = DeterministicRNG.mix(x ^ (direction == .uplink ? 0x75 : 0x64))
        return DeterministicRNG.mix(x ^ update)
    }

    private static func finiteNonNegative(_ x: Double) -> Double { x.isFinite && x > 0 ? x : 0 }
}
