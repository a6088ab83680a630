/// Application-level framing of the toy FG/BG apps.
///
/// Both app variants use the same framing, so the analyzer can match requests to replies from the
/// wire: in the plain-TCP variant messages are written back to back on the TCP stream; in the IntNW
/// variant each message is the whole payload of one IROB.
///
/// Every message is a fixed 24-byte header followed by `payloadLength` payload bytes. All integers
/// are big-endian (network order).
///
/// | offset | size | field           | meaning                                                     |
/// |-------:|-----:|-----------------|-------------------------------------------------------------|
/// |      0 |    4 | magic           | `0x544F5931` ("TOY1")                                        |
/// |      4 |    1 | version         | `1`                                                         |
/// |      5 |    1 | kind            | 1 fgRequest, 2 fgReply, 3 bgChunk, 4 bgAck                  |
/// |      6 |    2 | flags           | reserved, sent as 0, ignored on receive                     |
/// |      8 |    4 | appID           | the app instance that owns the exchange (harness-assigned)  |
/// |     12 |    8 | sequence        | per-app, per-kind counter; a reply/ack repeats the request's |
/// |     20 |    4 | payloadLength   | bytes following the header, at most `maxPayloadLength`      |
///
/// Request/reply pairing: an `fgReply` answers the `fgRequest` with the same `appID` and
/// `sequence`; a `bgAck` acknowledges the `bgChunk` with the same `appID` and `sequence`.
/// Payload bytes carry no meaning (apps fill them with a pattern) and the analyzer never needs them.
public enum ToyWire {
    /// "TOY1" in ASCII.
    public static let magic: UInt32 = 0x544F_5931
    /// The only version defined.
    public static let version: UInt8 = 1
    /// Size of the fixed header in bytes.
    public static let headerLength = 24
    /// Largest accepted payload in bytes (64 MiB): a hostile or corrupt length cannot make a
    /// receiver wait for, or allocate, more than this.
    public static let maxPayloadLength: UInt32 = 64 << 20
}

/// What a toy message is for.
public enum ToyMessageKind: UInt8, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// A small interactive request from an FG client.
    case fgRequest = 1
    /// The server's reply to an `fgRequest` (same sequence number).
    case fgReply = 2
    /// One bulk chunk from a BG client.
    case bgChunk = 3
    /// The server's acknowledgement of a `bgChunk` (same sequence number).
    case bgAck = 4

    /// True for the two FG kinds.
    public var isForeground: Bool { self == .fgRequest || self == .fgReply }
    /// True for the kinds a client sends (requests and chunks).
    public var isFromClient: Bool { self == .fgRequest || self == .bgChunk }

    public var description: String {
        switch self {
        case .fgRequest: return "fgRequest"
        case .fgReply: return "fgReply"
        case .bgChunk: return "bgChunk"
        case .bgAck: return "bgAck"
        }
    }
}

/// The fixed header of a toy message.
public struct ToyHeader: Sendable, Hashable, Codable {
    public var kind: ToyMessageKind
    /// The app instance the message belongs to.
    public var appID: UInt32
    /// Per-app sequence number; replies and acks repeat the request's.
    public var sequence: UInt64
    /// Number of payload bytes after the header.
    public var payloadLength: UInt32

    public init(kind: ToyMessageKind, appID: UInt32, sequence: UInt64, payloadLength: UInt32) {
        self.kind = kind
        self.appID = appID
        self.sequence = sequence
        self.payloadLength = payloadLength
    }

    /// Header plus payload, in bytes.
    public var messageLength: Int { ToyWire.headerLength + Int(payloadLength) }

    /// Writes the 24 header bytes into the start of `buffer`.
    /// - Precondition: `buffer.count >= ToyWire.headerLength` and `payloadLength <= maxPayloadLength`.
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= ToyWire.headerLength, "buffer shorter than a toy header")
        precondition(payloadLength <= ToyWire.maxPayloadLength, "toy payload too long")
        buffer.storeBytes(of: ToyWire.magic.bigEndian, toByteOffset: 0, as: UInt32.self)
        buffer[4] = ToyWire.version
        buffer[5] = kind.rawValue
        buffer.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        buffer.storeBytes(of: appID.bigEndian, toByteOffset: 8, as: UInt32.self)
        buffer.storeBytes(of: sequence.bigEndian, toByteOffset: 12, as: UInt64.self)
        buffer.storeBytes(of: payloadLength.bigEndian, toByteOffset: 20, as: UInt32.self)
    }

    /// The 24 header bytes.
    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: ToyWire.headerLength)
        bytes.withUnsafeMutableBytes { encode(into: $0) }
        return bytes
    }

    /// A whole message: header followed by `payloadLength` bytes of `fill`.
    public func encodedMessage(fill: UInt8 = 0x5A) -> [UInt8] {
        var bytes = [UInt8](repeating: fill, count: messageLength)
        bytes.withUnsafeMutableBytes { encode(into: $0) }
        return bytes
    }

    /// Parses a header from the first 24 bytes of `bytes`.
    /// - Throws: `ToyDecodeError` when the bytes are short or are not a valid header.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(ToyDecodeError) -> ToyHeader {
        guard bytes.count >= ToyWire.headerLength else { throw .truncated(have: bytes.count) }
        let magic = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        guard magic == ToyWire.magic else { throw .badMagic(magic) }
        guard bytes[4] == ToyWire.version else { throw .unsupportedVersion(bytes[4]) }
        guard let kind = ToyMessageKind(rawValue: bytes[5]) else { throw .unknownKind(bytes[5]) }
        let appID = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let sequence = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt64.self))
        let length = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        guard length <= ToyWire.maxPayloadLength else { throw .payloadTooLong(length) }
        return ToyHeader(kind: kind, appID: appID, sequence: sequence, payloadLength: length)
    }

    /// Parses a header from the first 24 bytes of an array.
    public static func decode(_ bytes: [UInt8]) throws(ToyDecodeError) -> ToyHeader {
        try bytes.withUnsafeBytes { raw in ToyHeader.decodeResult(raw) }.get()
    }

    /// `decode` as a `Result`, for callers inside closures that cannot throw typed errors.
    public static func decodeResult(_ bytes: UnsafeRawBufferPointer) -> Result<ToyHeader, ToyDecodeError> {
        do { return .success(try decode(bytes)) } catch { return .failure(error) }
    }
}

/// Why bytes are not a valid toy header.
public enum ToyDecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(have: Int)
    case badMagic(UInt32)
    case unsupportedVersion(UInt8)
    case unknownKind(UInt8)
    case payloadTooLong(UInt32)

    public var description: String {
        switch self {
        case .truncated(let have):
            return "toy header truncated: \(have) of \(ToyWire.headerLength) bytes"
        case .badMagic(let magic):
            return "not a toy message: magic 0x\(String(magic, radix: 16)) (expected 0x544f5931)"
        case .unsupportedVersion(let v):
            return "unsupported toy protocol version \(v)"
        case .unknownKind(let k):
            return "unknown toy message kind \(k)"
        case .payloadTooLong(let n):
            return "toy payload length \(n) exceeds the \(ToyWire.maxPayloadLength)-byte limit"
        }
    }
}
