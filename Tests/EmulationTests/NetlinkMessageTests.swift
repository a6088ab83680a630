import CMnl
import SystemPackage
import Testing
@testable import Emulation

/// Decodes what the libmnl-based builders produce with the independent Swift parser (and, for the
/// attribute walk, with libmnl's own validator) and checks every field.
@Suite struct NetlinkMessageTests {
    // Constants spelled out from the kernel uapi, so a wrong import would show up here.
    static let RTM_NEWLINK: UInt16 = 16, RTM_DELLINK: UInt16 = 17, RTM_GETLINK: UInt16 = 18
    static let RTM_NEWQDISC: UInt16 = 36, RTM_GETQDISC: UInt16 = 38
    static let REQUEST: UInt16 = 0x1, ACK: UInt16 = 0x4, REPLACE: UInt16 = 0x100, EXCL: UInt16 = 0x200, CREATE: UInt16 = 0x400
    static let IFLA_IFNAME: UInt16 = 3, IFLA_LINKINFO: UInt16 = 18, IFLA_NET_NS_FD: UInt16 = 28
    static let IFLA_INFO_KIND: UInt16 = 1, IFLA_INFO_DATA: UInt16 = 2, VETH_INFO_PEER: UInt16 = 1
    static let TCA_KIND: UInt16 = 1, TCA_OPTIONS: UInt16 = 2
    static let NETEM_RATE: UInt16 = 6, NETEM_RATE64: UInt16 = 8, NETEM_LATENCY64: UInt16 = 10, NETEM_PRNG_SEED: UInt16 = 14
    static let ifinfomsgSize = 16, tcmsgSize = 20, qoptSize = 24

    func message(_ request: NetlinkRequest) throws -> NetlinkMessage {
        let m = try NetlinkMessage(parsing: request.bytes[...])
        #expect(m.bytes.count == request.bytes.count, "nlmsg_len covers the whole request")
        #expect(request.bytes.count % 4 == 0)
        #expect(m.sequence == 0 && m.portID == 0, "the socket stamps sequence and port")
        return m
    }

    /// Walks the top-level attributes with libmnl (mnl_attr_ok / mnl_attr_next) and returns their
    /// types, validating each as libmnl would accept it.
    func libmnlAttributeTypes(_ bytes: [UInt8], familyHeaderSize: Int) -> [UInt16] {
        var copy = bytes
        return copy.withUnsafeMutableBytes { raw -> [UInt16] in
            let nlh = raw.baseAddress!.assumingMemoryBound(to: nlmsghdr.self)
            var types: [UInt16] = []
            var attr = mnl_nlmsg_get_payload_offset(nlh, familyHeaderSize)!.assumingMemoryBound(to: nlattr.self)
            let tail = mnl_nlmsg_get_payload_tail(nlh)!
            var remaining = Int32(tail - UnsafeMutableRawPointer(attr))
            while mnl_attr_ok(attr, remaining) {
                #expect(mnl_attr_validate(attr, MNL_TYPE_UNSPEC) >= 0)
                types.append(mnl_attr_get_type(attr))
                let next = mnl_attr_next(attr)!
                remaining -= Int32(UnsafeMutableRawPointer(next) - UnsafeMutableRawPointer(attr))
                attr = next
            }
            #expect(remaining == 0, "attributes fill the message exactly")
            return types
        }
    }

    @Test func vethPairAcrossNamespaces() throws {
        let request = RouteMessages.createVethPair(name: "wifi0", peerName: "wifi0", peerNamespaceFD: 7)
        let m = try message(request)
        #expect(m.type == Self.RTM_NEWLINK)
        #expect(m.flags == Self.REQUEST | Self.ACK | Self.CREATE | Self.EXCL)
        #expect(m.payload.count >= Self.ifinfomsgSize)
        #expect(try m.payload.loadInteger(UInt8.self, at: 0) == 0, "AF_UNSPEC")
        #expect(try m.payload.loadInteger(Int32.self, at: 4) == 0, "new device: no index")

        let top = try m.attributes(afterFixedHeaderOfSize: Self.ifinfomsgSize)
        #expect(top.map(\.type) == [Self.IFLA_IFNAME, Self.IFLA_LINKINFO])
        #expect(libmnlAttributeTypes(request.bytes, familyHeaderSize: Self.ifinfomsgSize) == [Self.IFLA_IFNAME, Self.IFLA_LINKINFO])
        #expect(try top[0].string() == "wifi0")
        #expect(top[0].payload == Array("wifi0\0".utf8))
        #expect(top.first(where: { $0.type == Self.IFLA_NET_NS_FD }) == nil, "the local end stays in the socket's namespace")

        let linkInfo = top[1]
        #expect(linkInfo.hasNestedFlag)
        let info = try linkInfo.nested()
        #expect(info.map(\.type) == [Self.IFLA_INFO_KIND, Self.IFLA_INFO_DATA])
        #expect(try info[0].string() == "veth")
        #expect(info[1].hasNestedFlag)
        #expect(linkInfo.declaredLength == 4 + info.reduce(0) { $0 + netlinkAlign($1.declaredLength) })

        let data = try info[1].nested()
        #expect(data.map(\.type) == [Self.VETH_INFO_PEER])
        let peer = data[0]
        #expect(!peer.hasNestedFlag, "VETH_INFO_PEER is struct + attributes, sent without NLA_F_NESTED like iproute2")
        #expect(peer.payload.prefix(Self.ifinfomsgSize).allSatisfy { $0 == 0 }, "peer ifinfomsg is zeroed")
        let peerAttributes = try peer.nested(skipping: Self.ifinfomsgSize)
        #expect(peerAttributes.map(\.type) == [Self.IFLA_IFNAME, Self.IFLA_NET_NS_FD])
        #expect(try peerAttributes[0].string() == "wifi0")
        #expect(try peerAttributes[1].u32() == 7)
        #expect(peer.declaredLength == 4 + Self.ifinfomsgSize + peerAttributes.reduce(0) { $0 + netlinkAlign($1.declaredLength) })
    }

    @Test func namesOfOddLengthArePaddedAndTerminated() throws {
        let request = RouteMessages.createVethPair(name: "c", peerName: "cell-long-name", peerNamespaceFD: 123)
        let top = try message(request).attributes(afterFixedHeaderOfSize: Self.ifinfomsgSize)
        #expect(top[0].declaredLength == 4 + 2)
        #expect(try top[0].string() == "c")
        let peer = try top[1].nested()[1].nested()[0].nested(skipping: Self.ifinfomsgSize)
        #expect(try peer[0].string() == "cell-long-name")
        #expect(try peer[1].u32() == 123)
    }

    @Test(arguments: [true, false]) func setLinkUpDown(up: Bool) throws {
        let request = RouteMessages.setLinkUp(index: 42, name: "cell0", up: up)
        let m = try message(request)
        #expect(m.type == Self.RTM_NEWLINK)
        #expect(m.flags == Self.REQUEST | Self.ACK, "no CREATE: only changes an existing link")
        #expect(m.bytes.count == 16 + Self.ifinfomsgSize, "no attributes")
        #expect(try m.payload.loadInteger(Int32.self, at: 4) == 42)
        #expect(try m.payload.loadInteger(UInt32.self, at: 8) == (up ? 1 : 0), "ifi_flags IFF_UP")
        #expect(try m.payload.loadInteger(UInt32.self, at: 12) == 1, "ifi_change = IFF_UP only")
        #expect(request.operation == "RTM_NEWLINK set cell0 \(up ? "up" : "down")")
    }

    @Test func deleteAndGetLinkByName() throws {
        for (request, type) in [(RouteMessages.deleteLink(name: "wifi0"), Self.RTM_DELLINK),
                                (RouteMessages.getLink(name: "wifi0"), Self.RTM_GETLINK)] {
            let m = try message(request)
            #expect(m.type == type)
            #expect(m.flags == Self.REQUEST | Self.ACK)
            #expect(try m.payload.loadInteger(Int32.self, at: 4) == 0)
            let attributes = try m.attributes(afterFixedHeaderOfSize: Self.ifinfomsgSize)
            #expect(attributes.count == 1)
            #expect(attributes[0].type == Self.IFLA_IFNAME)
            #expect(try attributes[0].string() == "wifi0")
        }
    }

    struct DecodedNetem {
        var ifindex: Int32, handle: UInt32, parent: UInt32, info: UInt32
        var kind: String
        var latencyTicks: UInt32, limit: UInt32, loss: UInt32, gap: UInt32, duplicate: UInt32, jitter: UInt32
        var latency64: UInt64
        var rate: UInt32, packetOverhead: Int32, cellSize: UInt32, cellOverhead: Int32
        var rate64: UInt64?
        var seed: UInt64
        var optionTypes: [UInt16]
    }

    func decodeNetem(_ request: NetlinkRequest) throws -> DecodedNetem {
        let m = try message(request)
        #expect(m.type == Self.RTM_NEWQDISC)
        #expect(m.flags == Self.REQUEST | Self.ACK | Self.CREATE | Self.REPLACE)
        #expect(try m.payload.loadInteger(UInt8.self, at: 0) == 0, "AF_UNSPEC")
        let top = try m.attributes(afterFixedHeaderOfSize: Self.tcmsgSize)
        #expect(top.map(\.type) == [Self.TCA_KIND, Self.TCA_OPTIONS])
        #expect(libmnlAttributeTypes(request.bytes, familyHeaderSize: Self.tcmsgSize) == [Self.TCA_KIND, Self.TCA_OPTIONS])
        let options = top[1]
        #expect(!options.hasNestedFlag, "netem's TCA_OPTIONS is a struct followed by attributes, like tc sends it")
        #expect(options.payload.count >= Self.qoptSize)
        let q = options.payload[...]
        let inner = try options.nested(skipping: Self.qoptSize)
        #expect(options.declaredLength == 4 + Self.qoptSize + inner.reduce(0) { $0 + netlinkAlign($1.declaredLength) })
        let rate = try #require(inner.first(Self.NETEM_RATE))
        #expect(rate.payload.count == 16, "struct tc_netem_rate")
        return DecodedNetem(
            ifindex: try m.payload.loadInteger(Int32.self, at: 4),
            handle: try m.payload.loadInteger(UInt32.self, at: 8),
            parent: try m.payload.loadInteger(UInt32.self, at: 12),
            info: try m.payload.loadInteger(UInt32.self, at: 16),
            kind: try top[0].string(),
            latencyTicks: try q.loadInteger(UInt32.self, at: 0), limit: try q.loadInteger(UInt32.self, at: 4),
            loss: try q.loadInteger(UInt32.self, at: 8), gap: try q.loadInteger(UInt32.self, at: 12),
            duplicate: try q.loadInteger(UInt32.self, at: 16), jitter: try q.loadInteger(UInt32.self, at: 20),
            latency64: try #require(inner.first(Self.NETEM_LATENCY64)).u64(),
            rate: try rate.payload.loadInteger(UInt32.self, at: 0), packetOverhead: try rate.payload.loadInteger(Int32.self, at: 4),
            cellSize: try rate.payload.loadInteger(UInt32.self, at: 8), cellOverhead: try rate.payload.loadInteger(Int32.self, at: 12),
            rate64: try inner.first(Self.NETEM_RATE64).map { try $0.u64() },
            seed: try #require(inner.first(Self.NETEM_PRNG_SEED)).u64(),
            optionTypes: inner.map(\.type))
    }

    @Test func netemCarriesTheWholeParameterSet() throws {
        // 10 Mbit/s, 20 ms one way, 1% loss.
        let parameters = DirectionParameters(bytesPerSecond: 1_250_000, delayMicroseconds: 20_000, lossFraction: 0.01)
        let options = NetemOptions(parameters, seed: 0xDEAD_BEEF_0123_4567)
        let d = try decodeNetem(RouteMessages.replaceNetem(index: 5, interface: "wifi0", options: options))
        #expect(d.ifindex == 5)
        #expect(d.handle == 0x0001_0000, "handle 1:")
        #expect(d.parent == 0xFFFF_FFFF, "TC_H_ROOT")
        #expect(d.info == 0)
        #expect(d.kind == "netem")
        #expect(d.latency64 == 20_000_000, "nanoseconds")
        #expect(d.latencyTicks == 20_000_000 / 64, "psched ticks are 64 ns")
        // By hand: 1.5 × 1,250,000 B/s × 40 ms RTT / 1500 B = 50 packets, under the floor of 100.
        // (Was compared with NetemOptions.limitPackets itself, which cannot catch a wrong formula.)
        #expect(d.limit == 100)
        #expect(d.loss == 42_949_673, "0.01 × UINT32_MAX, rounded")
        #expect(d.gap == 0 && d.duplicate == 0 && d.jitter == 0)
        #expect(d.rate == 1_250_000)
        #expect(d.packetOverhead == 0 && d.cellSize == 0 && d.cellOverhead == 0)
        #expect(d.rate64 == nil, "RATE64 only above 32 bits")
        #expect(d.seed == 0xDEAD_BEEF_0123_4567)
        #expect(d.optionTypes == [Self.NETEM_LATENCY64, Self.NETEM_RATE, Self.NETEM_PRNG_SEED])
    }

    @Test func outageIsFullLossAndUnlimitedRateIsSentAsZero() throws {
        let outage = DirectionParameters(bytesPerSecond: nil, delayMicroseconds: 5_000, lossFraction: 0, available: false)
        let d = try decodeNetem(RouteMessages.replaceNetem(index: 2, interface: "wifi0", options: NetemOptions(outage, seed: 3)))
        #expect(d.loss == UInt32.max, "100% loss")
        #expect(d.rate == 0, "rate attribute present with 0 = unlimited, so an earlier rate is cleared")
        #expect(d.rate64 == nil)
        #expect(d.latency64 == 5_000_000)
        #expect(d.seed == 3)
        // By hand: unlimited is sized for 1.25e9 B/s: 1.5 × 1.25e9 × 10 ms / 1500 = 12,500 packets.
        #expect(d.limit == 12_500)
    }

    @Test func ratesAbove32BitsUseRate64() throws {
        let fast = DirectionParameters(bytesPerSecond: 5e9, delayMicroseconds: 100)
        let d = try decodeNetem(RouteMessages.replaceNetem(index: 9, interface: "cell0", options: NetemOptions(fast, seed: 0)))
        #expect(d.rate == UInt32.max, "saturated u32; the kernel takes max(rate, rate64)")
        #expect(d.rate64 == 5_000_000_000)
        #expect(d.optionTypes == [Self.NETEM_LATENCY64, Self.NETEM_RATE, Self.NETEM_RATE64, Self.NETEM_PRNG_SEED])
    }

    @Test func longDelaysSaturateTheLegacyTickField() throws {
        let options = NetemOptions(latencyNanoseconds: 400_000_000_000, limitPackets: 1000, lossProbability: 0,
                                   rateBytesPerSecond: 0, seed: 0)
        let d = try decodeNetem(RouteMessages.replaceNetem(index: 1, interface: "lo", options: options))
        #expect(d.latencyTicks == UInt32.max)
        #expect(d.latency64 == 400_000_000_000)
    }

    /// TCA_OPTIONS that iproute2's `tc` (6.1) sent for `tc qdisc replace dev lo root handle 1: netem
    /// delay 20ms rate 10mbit loss 1% limit 1000`, captured with strace: the qopt and the
    /// TCA_NETEM_RATE attribute must match byte for byte (tc 6.1 sends no LATENCY64 or seed).
    static let iproute2Options: [UInt8] = [
        0xb4, 0xc4, 0x04, 0x00, 0xe8, 0x03, 0x00, 0x00, 0x29, 0x5c, 0x8f, 0x02,  // latency ticks, limit, loss
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // gap, duplicate, jitter
        0x14, 0x00, 0x06, 0x00, 0xd0, 0x12, 0x13, 0x00, 0x00, 0x00, 0x00, 0x00,  // RATE: 1_250_000 B/s
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]

    @Test func matchesWhatIproute2Sends() throws {
        let options = NetemOptions(latencyNanoseconds: 20_000_000, limitPackets: 1000,
                                   lossProbability: NetemOptions.lossProbability(0.01),
                                   rateBytesPerSecond: 1_250_000, seed: 1)
        let request = RouteMessages.replaceNetem(index: 1, interface: "lo", options: options)
        let m = try message(request)
        #expect(m.flags == Self.REQUEST | Self.ACK | Self.CREATE | Self.REPLACE)
        let tca = try m.attributes(afterFixedHeaderOfSize: Self.tcmsgSize)
        #expect(tca[0].payload == Array("netem\0".utf8))
        let ours = tca[1].payload
        #expect(Array(ours.prefix(Self.qoptSize)) == Array(Self.iproute2Options.prefix(Self.qoptSize)))
        // Ours: qopt, LATENCY64 (12 bytes), RATE (20 bytes), PRNG_SEED (12 bytes).
        let rateAttribute = Array(ours[(Self.qoptSize + 12)..<(Self.qoptSize + 32)])
        #expect(rateAttribute == Array(Self.iproute2Options[Self.qoptSize...]))
    }

    @Test func getRootQdiscRequest() throws {
        let m = try message(RouteMessages.getRootQdisc(index: 11, interface: "wifi0"))
        #expect(m.type == Self.RTM_GETQDISC)
        #expect(m.flags == Self.REQUEST | Self.ACK | 0x8, "NLM_F_ECHO")
        #expect(m.bytes.count == 16 + Self.tcmsgSize)
        #expect(try m.payload.loadInteger(Int32.self, at: 4) == 11)
        #expect(try m.payload.loadInteger(UInt32.self, at: 8) == 0, "any handle")
        #expect(try m.payload.loadInteger(UInt32.self, at: 12) == 0xFFFF_FFFF, "root")
    }

    @Test func netemErrorsNameOperationNamespaceAndErrno() {
        let request = RouteMessages.replaceNetem(index: 3, interface: "wifi0",
                                                 options: NetemOptions(DirectionParameters(bytesPerSecond: nil, delayMicroseconds: 0), seed: 0))
        let error = NetlinkError.kernel(operation: request.operation, namespace: "intnw-client", errno: .noSuchFileOrDirectory,
                                        kernelMessage: nil, hint: request.hints[.noSuchFileOrDirectory])
        #expect(error.description == "RTM_NEWQDISC netem on wifi0 in intnw-client: No such file or directory (kernel has no sch_netem?)")
        let withText = NetlinkError.kernel(operation: "RTM_NEWLINK veth wifi0 (peer wifi0)", namespace: "x-client", errno: .fileExists,
                                           kernelMessage: "boom", hint: nil)
        #expect(withText.description == "RTM_NEWLINK veth wifi0 (peer wifi0) in x-client: File exists [kernel: boom]")
        #expect(!withText.description.contains("\n"))
    }
}
