/// Frame encoding into caller-provided memory. No allocation on the DATA / ACK paths.

/// Writes big-endian integers into raw memory the caller owns. Bounds are the caller's contract
/// (`Frame.encodedLength` says how much room a frame needs); they are checked in debug builds.
@usableFromInline
struct ByteWriter {
    @usableFromInline let base: UnsafeMutableRawPointer
    @usableFromInline let limit: Int
    @usableFromInline var position: Int

    @inlinable init(_ buffer: UnsafeMutableRawBufferPointer, at position: Int = 0) {
        self.base = buffer.baseAddress!
        self.limit = buffer.count
        self.position = position
    }
    @inlinable mutating func u8(_ v: UInt8) {
        assert(position + 1 <= limit)
        base.storeBytes(of: v, toByteOffset: position, as: UInt8.self)
        position += 1
    }
    @inlinable mutating func u16(_ v: UInt16) { bigEndian(v) }
    @inlinable mutating func u32(_ v: UInt32) { bigEndian(v) }
    @inlinable mutating func u64(_ v: UInt64) { bigEndian(v) }
    /// Stores `v` in network byte order at the write position.
    @inlinable mutating func bigEndian<T: FixedWidthInteger>(_ v: T) {
        assert(position + MemoryLayout<T>.size <= limit)
        base.storeBytes(of: v.bigEndian, toByteOffset: position, as: T.self)
        position += MemoryLayout<T>.size
    }
    @inlinable mutating func bytes(_ p: UnsafeRawBufferPointer) {
        assert(position + p.count <= limit)
        if let src = p.baseAddress, p.count > 0 { (base + position).copyMemory(from: src, byteCount: p.count) }
        position += p.count
    }
}

/// Encoders for the hot paths, writing straight into a send buffer.
public enum FrameEncoder {
    /// Bytes of a DATA frame before its payload (length, type, id, offset).
    public static let dataHeaderLength = Wire.headerLength + 12
    /// Bytes of one ACK entry.
    public static let ackEntryLength = 12
    /// Bytes of an ACK frame with no entries.
    public static let ackBaseLength = Wire.headerLength + 10

    /// Writes the header of a DATA frame carrying `payloadLength` bytes at `offset`; the caller
    /// copies the payload right after it. Returns the header length.
    @inlinable
    public static func writeDataHeader(id: IROBID, offset: UInt32, payloadLength: Int,
                                       into buffer: UnsafeMutableRawBufferPointer, at position: Int) -> Int {
        precondition(payloadLength <= Wire.maxDataPayload, "DATA payload over the frame limit")
        var w = ByteWriter(buffer, at: position)
        w.u32(UInt32(1 + 12 + payloadLength))
        w.u8(FrameType.data.rawValue)
        w.u64(id.rawValue)
        w.u32(offset)
        return dataHeaderLength
    }

    /// Writes a whole frame at `position` of `buffer`, which must have `frame.encodedLength` bytes
    /// of room there. Returns the number of bytes written.
    @discardableResult
    public static func write(_ frame: Frame, into buffer: UnsafeMutableRawBufferPointer, at position: Int = 0) -> Int {
        let total = frame.encodedLength
        precondition(position >= 0 && buffer.count - position >= total, "frame does not fit the buffer")
        var w = ByteWriter(buffer, at: position)
        w.u32(UInt32(total - 4))
        w.u8(frame.typeCode)
        switch frame {
        case .hello(let h):
            w.u32(Wire.helloMagic)
            w.u16(h.version)
            w.u8(h.role.rawValue)
            w.u8(h.networkKind.rawValue)
            w.u64(h.session.high)
            w.u64(h.session.low)
            w.u32(h.networkID)
            writeName(h.interfaceName, &w)
        case .beginIROB(let b):
            w.u64(b.id.rawValue)
            w.u32(b.labels.rawValue)
            w.u32(b.length)
            switch b.dependencies {
            case .allEarlier:
                w.u8(1)
                w.u16(0)
            case .explicit(let deps):
                precondition(deps.count <= Wire.maxDependencies, "too many dependencies for one frame")
                w.u8(0)
                w.u16(UInt16(deps.count))
                for d in deps { w.u64(d.rawValue) }
            }
        case .data(let d):
            w.u64(d.id.rawValue)
            w.u32(d.offset)
            d.bytes.withUnsafeBytes { w.bytes($0) }
        case .endIROB(let id, let length):
            w.u64(id.rawValue)
            w.u32(length)
        case .ack(let a):
            precondition(a.entries.count <= Wire.maxListEntries, "too many ACK entries for one frame")
            w.u64(a.cumulative)
            w.u16(UInt16(a.entries.count))
            for e in a.entries {
                w.u64(e.id.rawValue)
                w.u32(e.holdMicroseconds)
            }
        case .resendRequest(let r):
            w.u64(r.id.rawValue)
            w.u8(r.needsBegin ? 1 : 0)
            w.u32(r.offset)
            w.u32(r.length)
        case .dataCheck(let ids):
            precondition(ids.count <= Wire.maxListEntries, "too many DATA_CHECK ids for one frame")
            w.u16(UInt16(ids.count))
            for id in ids { w.u64(id.rawValue) }
        case .newInterface(let i):
            w.u32(i.networkID)
            w.u8(i.kind.rawValue)
            w.u32(i.ipv4Address)
            writeName(i.name, &w)
        case .downInterface(let id):
            w.u32(id)
        case .goodbye(let g):
            w.u8(g.reason.rawValue)
            w.u64(g.lastID)
        case .ping(let nonce):
            w.u64(nonce)
        case .pong(let nonce, let hold):
            w.u64(nonce)
            w.u32(hold)
        case .auth(let a):
            w.u8(a.kindCode)
            func put(_ b: [UInt8], _ n: Int) { for i in 0..<n { w.u8(i < b.count ? b[i] : 0) } }
            switch a {
            case .keyShare(let k, let nonce): put(k, Wire.authKeyLength); put(nonce, Wire.authNonceLength)
            case .join(let nonce): put(nonce, Wire.authNonceLength)
            case .challenge(let nonce, let proof): put(nonce, Wire.authNonceLength); put(proof, Wire.authProofLength)
            case .proof(let proof): put(proof, Wire.authProofLength)
            case .unknownSession: break
            }
        case .extension(_, let body):
            body.withUnsafeBytes { w.bytes($0) }
        }
        assert(w.position - position == total)
        return total
    }

    /// Names longer than the limit are cut at a UTF-8 scalar boundary.
    static func nameBytes(_ s: String) -> Substring.UTF8View {
        var end = s.utf8.startIndex
        var n = 0
        for scalar in s.unicodeScalars {
            let len = UTF8.width(scalar)
            if n + len > Wire.maxNameLength { break }
            n += len
            end = s.utf8.index(end, offsetBy: len)
        }
        return s[s.startIndex..<end].utf8
    }

    private static func writeName(_ s: String, _ w: inout ByteWriter) {
        let bytes = nameBytes(s)
        w.u8(UInt8(bytes.count))
        for b in bytes { w.u8(b) }
    }
}

extension Frame {
    /// Total encoded size in bytes, length prefix included.
    public var encodedLength: Int {
        let body: Int
        switch self {
        case .hello(let h): body = 4 + 2 + 1 + 1 + 16 + 4 + 1 + FrameEncoder.nameBytes(h.interfaceName).count
        case .beginIROB(let b):
            switch b.dependencies {
            case .allEarlier: body = 8 + 4 + 4 + 1 + 2
            case .explicit(let d): body = 8 + 4 + 4 + 1 + 2 + 8 * d.count
            }
        case .data(let d): body = 12 + d.bytes.count
        case .endIROB: body = 12
        case .ack(let a): body = 10 + FrameEncoder.ackEntryLength * a.entries.count
        case .resendRequest: body = 17
        case .dataCheck(let ids): body = 2 + 8 * ids.count
        case .newInterface(let i): body = 4 + 1 + 4 + 1 + FrameEncoder.nameBytes(i.name).count
        case .downInterface: body = 4
        case .goodbye: body = 9
        case .ping: body = 8
        case .pong: body = 12
        case .auth(let a): body = 1 + a.fieldsLength
        case .extension(_, let b): body = b.count
        }
        return Wire.headerLength + body
    }

    /// The frame as a fresh byte array (convenient off the hot path: tests, tools).
    public func encoded() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: encodedLength) { buf, count in
            count = FrameEncoder.write(self, into: UnsafeMutableRawBufferPointer(buf))
        }
    }
}
