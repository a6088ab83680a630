import Testing
@testable import Emulation

/// Hand-encoded kernel replies (host byte order, as netlink uses), independent of the code under test.
enum Wire {
    static func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }

    static func attribute(_ type: UInt16, _ payload: [UInt8], nested: Bool = false) -> [UInt8] {
        var out = bytes(UInt16(4 + payload.count)) + bytes(type | (nested ? 0x8000 : 0)) + payload
        while out.count % 4 != 0 { out.append(0) }
        return out
    }

    static func string(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    static func message(type: UInt16, flags: UInt16 = 0, sequence: UInt32 = 1, body: [UInt8]) -> [UInt8] {
        bytes(UInt32(16 + body.count)) + bytes(type) + bytes(flags) + bytes(sequence) + bytes(UInt32(0)) + body
    }

    static func tcmsg(ifindex: Int32, handle: UInt32, parent: UInt32) -> [UInt8] {
        [0, 0, 0, 0] + bytes(ifindex) + bytes(handle) + bytes(parent) + bytes(UInt32(0))
    }

    static func ifinfomsg(index: Int32, flags: UInt32) -> [UInt8] {
        [0, 0] + bytes(UInt16(1)) + bytes(index) + bytes(flags) + bytes(UInt32(0))
    }
}

@Suite struct NetlinkParsingTests {
    @Test func qdiscReplyWithStats2() throws {
        let basic = Wire.bytes(UInt64(1_234_567_890_123)) + Wire.bytes(UInt32(98_765)) + [0, 0, 0, 0]
        let queue = Wire.bytes(UInt32(17)) + Wire.bytes(UInt32(25_500)) + Wire.bytes(UInt32(321))
            + Wire.bytes(UInt32(0)) + Wire.bytes(UInt32(4))
        let stats2 = Wire.attribute(1, basic) + Wire.attribute(3, queue) + Wire.attribute(7, [])  // BASIC, QUEUE, PAD
        let body = Wire.tcmsg(ifindex: 4, handle: 0x10000, parent: 0xFFFF_FFFF)
            + Wire.attribute(1, Wire.string("netem")) + Wire.attribute(7, stats2, nested: true)
        let message = try NetlinkMessage(parsing: Wire.message(type: 36, body: body)[...])
        let info = try QdiscInfo(message: message)
        #expect(info.interfaceIndex == 4)
        #expect(info.handle == 0x10000)
        #expect(info.parent == 0xFFFF_FFFF)
        #expect(info.kind == "netem")
        #expect(info.stats == QdiscStats(bytes: 1_234_567_890_123, packets: 98_765, drops: 321, overlimits: 4,
                                         queueLength: 17, backlogBytes: 25_500))
    }

    @Test func qdiscReplyWithLegacyStatsOnly() throws {
        // struct tc_stats { u64 bytes; u32 packets, drops, overlimits, bps, pps, qlen, backlog; }
        let tcStats = Wire.bytes(UInt64(5000)) + [10, 2, 3, 0, 0, 6, 700].flatMap { Wire.bytes(UInt32($0)) }
        let body = Wire.tcmsg(ifindex: 2, handle: 0, parent: 0xFFFF_FFFF)
            + Wire.attribute(1, Wire.string("noqueue")) + Wire.attribute(3, tcStats)
        let info = try QdiscInfo(message: NetlinkMessage(parsing: Wire.message(type: 36, body: body)[...]))
        #expect(info.kind == "noqueue")
        #expect(info.stats == QdiscStats(bytes: 5000, packets: 10, drops: 2, overlimits: 3, queueLength: 6, backlogBytes: 700))
    }

    @Test func linkReply() throws {
        let body = Wire.ifinfomsg(index: 7, flags: 0x1 | 0x10000)
            + Wire.attribute(3, Wire.string("wifi0")) + Wire.attribute(33, [0])  // IFLA_IFNAME, IFLA_CARRIER
        let link = try LinkInfo(message: NetlinkMessage(parsing: Wire.message(type: 16, body: body)[...]))
        #expect(link.index == 7)
        #expect(link.name == "wifi0")
        #expect(link.isUp)
        #expect(link.carrier == false)
    }

    @Test func wrongMessageTypesAreRejected() throws {
        let link = try NetlinkMessage(parsing: Wire.message(type: 16, body: Wire.ifinfomsg(index: 1, flags: 0))[...])
        #expect(throws: NetlinkParseError.self) { try QdiscInfo(message: link) }
        let qdisc = try NetlinkMessage(parsing: Wire.message(type: 36, body: Wire.tcmsg(ifindex: 1, handle: 0, parent: 0))[...])
        #expect(throws: NetlinkParseError.self) { try LinkInfo(message: qdisc) }
        #expect(throws: NetlinkParseError.self) { try QdiscInfo(message: qdisc) }  // no TCA_KIND
    }

    @Test func splitsBackToBackMessages() throws {
        let a = Wire.message(type: 16, sequence: 5, body: Wire.ifinfomsg(index: 1, flags: 0) + Wire.attribute(3, Wire.string("a")))
        let b = Wire.message(type: 3, sequence: 5, body: Wire.bytes(Int32(0)))  // NLMSG_DONE
        let messages = try NetlinkMessage.split((a + b)[...])
        #expect(messages.map(\.type) == [16, 3])
        #expect(messages.allSatisfy { $0.sequence == 5 })
    }

    @Test func extendedAckTextIsExtracted() throws {
        // NLMSG_ERROR, flags NLM_F_CAPPED | NLM_F_ACK_TLVS: error, request header, then NLMSGERR_ATTR_MSG.
        let requestHeader = Wire.bytes(UInt32(60)) + Wire.bytes(UInt16(36)) + Wire.bytes(UInt16(0x505))
            + Wire.bytes(UInt32(9)) + Wire.bytes(UInt32(0))
        let body = Wire.bytes(Int32(-2)) + requestHeader + Wire.attribute(1, Wire.string("Specified qdisc kind is unknown"))
        let message = try NetlinkMessage(parsing: Wire.message(type: 2, flags: 0x300, sequence: 9, body: body)[...])
        #expect(NetlinkSocket.extendedAckMessage(message) == "Specified qdisc kind is unknown")
        let plain = try NetlinkMessage(parsing: Wire.message(type: 2, flags: 0x100, sequence: 9, body: Wire.bytes(Int32(-2)) + requestHeader)[...])
        #expect(NetlinkSocket.extendedAckMessage(plain) == nil)
    }

    @Test func malformedInputThrowsInsteadOfCrashing() throws {
        #expect(throws: NetlinkParseError.self) { try NetlinkMessage(parsing: [1, 2, 3][...]) }
        #expect(throws: NetlinkParseError.self) { try NetlinkMessage(parsing: (Wire.bytes(UInt32(8)) + [UInt8](repeating: 0, count: 12))[...]) }  // length < header
        #expect(throws: NetlinkParseError.self) { try NetlinkMessage(parsing: (Wire.bytes(UInt32(400)) + [UInt8](repeating: 0, count: 12))[...]) }  // length > data
        #expect(throws: NetlinkParseError.self) { try NetlinkAttribute.parseList((Wire.bytes(UInt16(40)) + Wire.bytes(UInt16(1)) + [0, 0, 0, 0])[...]) }
        #expect(throws: NetlinkParseError.self) { try NetlinkAttribute.parseList((Wire.bytes(UInt16(2)) + Wire.bytes(UInt16(1)))[...]) }
        #expect(throws: NetlinkParseError.self) { try NetlinkAttribute(type: 1, hasNestedFlag: false, declaredLength: 6, payload: [1, 2]).u32() }
        #expect(throws: NetlinkParseError.self) { try NetlinkAttribute(type: 1, hasNestedFlag: false, declaredLength: 6, payload: [65, 66]).string() }

        // Random bytes: every outcome is a value or a thrown error, never a trap.
        var rng = DeterministicRNG(seed: 42)
        for _ in 0..<2000 {
            let count = Int(rng.next() % 96)
            var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if count >= 4, rng.next() % 2 == 0 {  // make the length field plausible half of the time
                let plausible = Wire.bytes(UInt32(16 + rng.next() % UInt64(max(1, count - 15))))
                bytes.replaceSubrange(0..<4, with: plausible)
            }
            if let messages = try? NetlinkMessage.split(bytes[...]) {
                for m in messages {
                    _ = try? m.attributes(afterFixedHeaderOfSize: 16)
                    _ = try? QdiscInfo(message: m)
                    _ = try? LinkInfo(message: m)
                    _ = NetlinkSocket.extendedAckMessage(m)
                }
            }
            _ = try? NetlinkAttribute.parseList(bytes[...]).map { try $0.nested(skipping: 24) }
        }
    }
}
