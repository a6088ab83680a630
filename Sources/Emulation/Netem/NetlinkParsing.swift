/// Pure-Swift reading of netlink messages and attributes, independent of libmnl: it reads the
/// kernel's replies, and the tests use it to check what the libmnl-based builders produced.
/// Netlink uses host byte order; everything here assumes a little- or big-endian host alike.

/// Netlink aligns messages and attributes to 4 bytes (NLMSG_ALIGN / NLA_ALIGN).
@inline(__always) func netlinkAlign(_ n: Int) -> Int { (n + 3) & ~3 }

/// Host-order integer reads from a byte collection, bounds-checked.
extension Collection where Element == UInt8, Index == Int {
    func loadInteger<T: FixedWidthInteger>(_: T.Type, at offset: Int) throws -> T {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset + size <= count else {
            throw NetlinkParseError(detail: "need \(size) bytes at offset \(offset), have \(count)")
        }
        var value: T = 0
        let start = startIndex + offset
        withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<size { raw[i] = self[start + i] }
        }
        return value
    }
}

/// One netlink message (header + payload), holding its own bytes.
public struct NetlinkMessage: Sendable, Equatable {
    /// Size of `struct nlmsghdr`.
    public static let headerSize = 16

    /// The whole message, header included, exactly `length` bytes.
    public let bytes: [UInt8]
    public let type: UInt16
    public let flags: UInt16
    public let sequence: UInt32
    public let portID: UInt32

    /// Parses the first message in `bytes` (which may hold more after it).
    public init(parsing bytes: ArraySlice<UInt8>) throws {
        let length = Int(try bytes.loadInteger(UInt32.self, at: 0))
        guard length >= Self.headerSize, length <= bytes.count else {
            throw NetlinkParseError(detail: "message length \(length) with \(bytes.count) bytes available")
        }
        self.bytes = Array(bytes.prefix(length))
        type = try bytes.loadInteger(UInt16.self, at: 4)
        flags = try bytes.loadInteger(UInt16.self, at: 6)
        sequence = try bytes.loadInteger(UInt32.self, at: 8)
        portID = try bytes.loadInteger(UInt32.self, at: 12)
    }

    /// Splits a buffer of back-to-back messages (as one `recv` returns them).
    public static func split(_ buffer: ArraySlice<UInt8>) throws -> [NetlinkMessage] {
        var messages: [NetlinkMessage] = []
        var rest = buffer
        while rest.count >= headerSize {
            let message = try NetlinkMessage(parsing: rest)
            messages.append(message)
            rest = rest.dropFirst(min(netlinkAlign(message.bytes.count), rest.count))
        }
        guard rest.isEmpty else { throw NetlinkParseError(detail: "\(rest.count) trailing bytes") }
        return messages
    }

    /// The bytes after the netlink header.
    public var payload: ArraySlice<UInt8> { bytes[Self.headerSize...] }

    /// The attributes after a fixed family header of `fixedHeaderSize` bytes (e.g. 16 for
    /// `struct ifinfomsg`, 20 for `struct tcmsg`).
    public func attributes(afterFixedHeaderOfSize fixedHeaderSize: Int) throws -> [NetlinkAttribute] {
        let start = Self.headerSize + netlinkAlign(fixedHeaderSize)
        guard start <= bytes.count else {
            throw NetlinkParseError(detail: "family header of \(fixedHeaderSize) bytes does not fit in \(bytes.count)")
        }
        return try NetlinkAttribute.parseList(bytes[start...])
    }
}

/// One netlink attribute (TLV).
public struct NetlinkAttribute: Sendable, Equatable {
    /// Size of `struct nlattr`.
    public static let headerSize = 4
    static let nestedFlag: UInt16 = 1 << 15
    static let byteOrderFlag: UInt16 = 1 << 14

    /// Attribute type without the NLA_F_NESTED / NLA_F_NET_BYTEORDER flags.
    public let type: UInt16
    /// Whether NLA_F_NESTED was set.
    public let hasNestedFlag: Bool
    /// `nla_len` as sent: header plus payload, without trailing padding.
    public let declaredLength: Int
    /// The payload, without padding.
    public let payload: [UInt8]

    /// Parses consecutive attributes filling `bytes` exactly (the last one may omit its padding).
    public static func parseList(_ bytes: ArraySlice<UInt8>) throws -> [NetlinkAttribute] {
        var result: [NetlinkAttribute] = []
        var offset = 0
        while offset < bytes.count {
            let rest = bytes.dropFirst(offset)
            let length = Int(try rest.loadInteger(UInt16.self, at: 0))
            let rawType = try rest.loadInteger(UInt16.self, at: 2)
            guard length >= headerSize, length <= rest.count else {
                throw NetlinkParseError(detail: "attribute type \(rawType & 0x3fff) length \(length) with \(rest.count) bytes left")
            }
            result.append(NetlinkAttribute(
                type: rawType & ~(nestedFlag | byteOrderFlag), hasNestedFlag: rawType & nestedFlag != 0,
                declaredLength: length, payload: Array(rest.dropFirst(headerSize).prefix(length - headerSize))))
            offset += netlinkAlign(length)
        }
        return result
    }

    public func u8() throws -> UInt8 { try exact(UInt8.self) }
    public func u16() throws -> UInt16 { try exact(UInt16.self) }
    public func u32() throws -> UInt32 { try exact(UInt32.self) }
    public func u64() throws -> UInt64 { try exact(UInt64.self) }
    public func i32() throws -> Int32 { try exact(Int32.self) }

    /// A NUL-terminated string payload.
    public func string() throws -> String {
        guard let nul = payload.firstIndex(of: 0) else {
            throw NetlinkParseError(detail: "attribute type \(type): string without NUL terminator")
        }
        return String(decoding: payload[..<nul], as: UTF8.self)
    }

    /// The attributes nested in this one, after `skipping` bytes of fixed structure (netem's
    /// TCA_OPTIONS and veth's VETH_INFO_PEER start with a struct, aligned to 4 bytes).
    public func nested(skipping prefixSize: Int = 0) throws -> [NetlinkAttribute] {
        let start = netlinkAlign(prefixSize)
        guard start <= payload.count else {
            throw NetlinkParseError(detail: "attribute type \(type): \(prefixSize)-byte prefix exceeds \(payload.count) bytes")
        }
        return try Self.parseList(payload[start...])
    }

    private func exact<T: FixedWidthInteger>(_ t: T.Type) throws -> T {
        guard payload.count == MemoryLayout<T>.size else {
            throw NetlinkParseError(detail: "attribute type \(type): \(payload.count) bytes, expected \(MemoryLayout<T>.size)")
        }
        return try payload.loadInteger(t, at: 0)
    }
}

extension Array where Element == NetlinkAttribute {
    /// The first attribute of `type`, if any.
    public func first(_ type: UInt16) -> NetlinkAttribute? { first { $0.type == type } }
}
