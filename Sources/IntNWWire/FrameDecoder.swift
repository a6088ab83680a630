/// Incremental, allocation-light decoder for IntNW frames on an arbitrary byte stream.
///
/// Every byte is treated as hostile: a length field outside 1...`maxFrameLength`, a count over its
/// limit, a body of the wrong size or an invalid field value throws a `ProtocolError`, after which
/// the decoder stays failed (the connection is to be closed). Memory held is at most one partial
/// frame plus whatever one `feed` call passes in.

/// Bounds-checked big-endian reads over a frame body; running off the end is a typed error.
@usableFromInline
struct ByteReader {
    let base: UnsafeRawPointer
    let end: Int
    var position: Int
    let frameType: UInt8

    init(_ base: UnsafeRawPointer, from start: Int, to end: Int, frameType: UInt8) {
        self.base = base
        self.position = start
        self.end = end
        self.frameType = frameType
    }
    var remaining: Int { end - position }

    mutating func need(_ n: Int) throws {
        if end - position < n { throw ProtocolError(.malformedBody(frameType: frameType)) }
    }
    mutating func u8() throws -> UInt8 {
        try need(1)
        defer { position += 1 }
        return base.load(fromByteOffset: position, as: UInt8.self)
    }
    mutating func u16() throws -> UInt16 {
        try need(2)
        defer { position += 2 }
        return UInt16(bigEndian: base.loadUnaligned(fromByteOffset: position, as: UInt16.self))
    }
    mutating func u32() throws -> UInt32 {
        try need(4)
        defer { position += 4 }
        return UInt32(bigEndian: base.loadUnaligned(fromByteOffset: position, as: UInt32.self))
    }
    mutating func u64() throws -> UInt64 {
        try need(8)
        defer { position += 8 }
        return UInt64(bigEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
    }
    mutating func bytes(_ n: Int) throws -> [UInt8] {
        try need(n)
        defer { position += n }
        return [UInt8](UnsafeRawBufferPointer(start: base + position, count: n))
    }
    mutating func id(_ field: String) throws -> IROBID {
        let v = try u64()
        if v == 0 { throw ProtocolError(.invalidField(frameType: frameType, field: field)) }
        return IROBID(v)
    }
    mutating func rest() -> UnsafeRawBufferPointer {
        defer { position = end }
        return UnsafeRawBufferPointer(start: base + position, count: end - position)
    }
    mutating func name() throws -> String {
        let n = Int(try u8())
        if n > Wire.maxNameLength { throw ProtocolError(.countLimit(frameType: frameType, count: n)) }
        try need(n)
        defer { position += n }
        // Invalid UTF-8 is repaired (U+FFFD), never trusted.
        return String(decoding: UnsafeRawBufferPointer(start: base + position, count: n), as: UTF8.self)
    }
    func finish() throws {
        if position != end { throw ProtocolError(.malformedBody(frameType: frameType)) }
    }
}

public struct FrameDecoder {
    /// Largest accepted value of a frame's length field, in bytes.
    public let maxFrameLength: Int
    @usableFromInline var storage: [UInt8]
    @usableFromInline var readIndex = 0
    @usableFromInline var writeIndex = 0
    private var failure: ProtocolError?

    /// - Parameter maxFrameLength: frames whose length field exceeds this are a protocol error;
    ///   at most `Wire.maxFrameLength`.
    public init(maxFrameLength: Int = Wire.maxFrameLength) {
        precondition(maxFrameLength >= 64 && maxFrameLength <= Wire.maxFrameLength)
        self.maxFrameLength = maxFrameLength
        self.storage = [UInt8](repeating: 0, count: 4096)
    }

    /// Bytes fed but not yet decoded.
    public var bufferedByteCount: Int { writeIndex - readIndex }
    /// Bytes of memory the decoder's buffer holds (it grows to one partial frame plus one read).
    public var capacityBytes: Int { storage.count }

    /// What `capacityBytes` becomes if `n` free bytes are reserved (as `fill(atLeast: n)` does).
    public func capacityAfterReserving(_ n: Int) -> Int {
        if storage.count - writeIndex >= n { return storage.count }
        let live = writeIndex - readIndex
        var newCount = storage.count
        while newCount - live < n { newCount *= 2 }
        return newCount
    }

    /// With nothing buffered, gives back a buffer grown beyond `bytes` (e.g. by one large frame),
    /// so an idle connection does not keep the memory of its largest frame.
    public mutating func shrink(ifLargerThan bytes: Int) {
        guard readIndex == writeIndex, storage.count > bytes else { return }
        storage = [UInt8](repeating: 0, count: 4096)
        readIndex = 0
        writeIndex = 0
    }
    /// Whether the decoder has failed; every later `next()` rethrows the same error.
    public var failed: ProtocolError? { failure }

    /// Forgets all buffered bytes and any failure (for reuse, e.g. by a fuzzer).
    public mutating func reset() {
        readIndex = 0
        writeIndex = 0
        failure = nil
    }

    /// Appends bytes from the stream, chunked anywhere. Call `next()` until it returns nil
    /// before feeding a lot more: buffered memory is what was fed and not yet decoded.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserveFree(bytes.count)
        storage.withUnsafeMutableBytes { dst in
            (dst.baseAddress! + writeIndex).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        writeIndex += bytes.count
    }

    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Lets `body` write up to `atLeast` or more bytes straight into the decoder (e.g. `read(2)`
    /// from a socket) and returns what `body` returned; a positive result counts as bytes added.
    @inlinable
    public mutating func fill(atLeast minimumFree: Int, _ body: (UnsafeMutableRawBufferPointer) -> Int) -> Int {
        reserveFree(minimumFree)
        let start = writeIndex
        let n = storage.withUnsafeMutableBytes { buf in
            body(UnsafeMutableRawBufferPointer(rebasing: buf[start...]))
        }
        if n > 0 { writeIndex += n }
        return n
    }

    @usableFromInline
    mutating func reserveFree(_ n: Int) {
        if storage.count - writeIndex >= n { return }
        let live = writeIndex - readIndex
        if readIndex > 0 {
            // Move the partial frame to the front instead of growing.
            if live > 0 {
                storage.withUnsafeMutableBytes { buf in
                    buf.baseAddress!.copyMemory(from: buf.baseAddress! + readIndex, byteCount: live)
                }
            }
            readIndex = 0
            writeIndex = live
            if storage.count - writeIndex >= n { return }
        }
        var newCount = storage.count
        while newCount - writeIndex < n { newCount *= 2 }
        // A new buffer with the live bytes copied over: only they need initialized memory (the
        // rest is written by `fill` before it is read). Growing by `append(contentsOf:)` zeroed
        // every new byte one element at a time in a debug build -- 25 ms for one 128 KiB read on
        // the loop thread every session of a listener shares.
        let kept = writeIndex
        storage = storage.withUnsafeBytes { old in
            [UInt8](unsafeUninitializedCapacity: newCount) { buf, count in
                if kept > 0 { UnsafeMutableRawBufferPointer(buf).copyMemory(from: UnsafeRawBufferPointer(rebasing: old[0..<kept])) }
                count = newCount
            }
        }
    }

    /// The next complete frame, or nil if more bytes are needed.
    public mutating func next() throws -> Frame? {
        var chunk: DataChunk?
        let frame = try decodeNext { id, offset, bytes in
            chunk = DataChunk(id: id, offset: offset, bytes: [UInt8](bytes))
        }
        if let chunk { return .data(chunk) }
        return frame
    }

    /// Internal fast path: like `next()`, but a DATA frame's payload is handed to `onData` in place
    /// (valid only during the call) and the function returns `.dataHandled`.
    package enum Decoded {
        case needMore
        case frame(Frame)
        case dataHandled
    }

    package mutating func decodeNextRaw(_ onData: (IROBID, UInt32, UnsafeRawBufferPointer) throws -> Void) throws -> Decoded {
        var handled = false
        let f = try decodeNext { id, off, p in
            try onData(id, off, p)
            handled = true
        }
        if handled { return .dataHandled }
        if let f { return .frame(f) }
        return .needMore
    }

    /// Returns nil when more bytes are needed, and also (with `onData` called) for a DATA frame.
    package mutating func decodeNext(_ onData: (IROBID, UInt32, UnsafeRawBufferPointer) throws -> Void) throws -> Frame? {
        if let failure { throw failure }
        let available = writeIndex - readIndex
        if available < 4 { return nil }
        let start = readIndex
        let length = storage.withUnsafeBytes { buf in
            UInt32(bigEndian: buf.loadUnaligned(fromByteOffset: start, as: UInt32.self))
        }
        if length == 0 || Int(length) > maxFrameLength {
            return try fail(ProtocolError(.frameLength(length)))
        }
        let total = 4 + Int(length)
        if available < total { return nil }
        do {
            let frame = try storage.withUnsafeBytes { buf -> Frame? in
                try Self.parse(buf.baseAddress!, bodyStart: start + 5, end: start + total,
                               type: buf[start + 4], onData: onData)
            }
            readIndex += total
            if readIndex == writeIndex {
                readIndex = 0
                writeIndex = 0
            }
            return frame
        } catch let e as ProtocolError {
            return try fail(e)
        }
    }

    private mutating func fail(_ e: ProtocolError) throws -> Frame? {
        failure = e
        throw e
    }

    static func parse(_ base: UnsafeRawPointer, bodyStart: Int, end: Int, type: UInt8,
                      onData: (IROBID, UInt32, UnsafeRawBufferPointer) throws -> Void) throws -> Frame? {
        var r = ByteReader(base, from: bodyStart, to: end, frameType: type)
        guard let ft = FrameType(rawValue: type) else {
            if type >= Wire.firstExtensionType { return .extension(type: type, body: [UInt8](r.rest())) }
            throw ProtocolError(.unknownFrameType(type))
        }
        let frame: Frame?
        switch ft {
        case .hello:
            let magic = try r.u32()
            if magic != Wire.helloMagic { throw ProtocolError(.badMagic(magic)) }
            let version = try r.u16()
            if version < Wire.oldestDecodableVersion { throw ProtocolError(.unsupportedVersion(version)) }
            guard let role = Role(rawValue: try r.u8()) else {
                throw ProtocolError(.invalidField(frameType: type, field: "role"))
            }
            let kind = NetworkKind(wire: try r.u8())
            let session = SessionID(high: try r.u64(), low: try r.u64())
            let networkID = try r.u32()
            let name = try r.name()
            frame = .hello(Hello(version: version, role: role, session: session, networkID: networkID,
                                 networkKind: kind, interfaceName: name))
        case .beginIROB:
            let id = try r.id("IROB id")
            let labels = Labels(rawValue: try r.u32())
            let length = try r.u32()
            let mode = try r.u8()
            let count = Int(try r.u16())
            if count > Wire.maxDependencies { throw ProtocolError(.countLimit(frameType: type, count: count)) }
            let deps: DependencySpec
            switch mode {
            case 1:
                if count != 0 { throw ProtocolError(.invalidField(frameType: type, field: "dependency count")) }
                deps = .allEarlier
            case 0:
                try r.need(8 * count)
                var list: [IROBID] = []
                list.reserveCapacity(count)
                for _ in 0..<count {
                    let d = try r.id("dependency")
                    if d >= id { throw ProtocolError(.invalidField(frameType: type, field: "dependency")) }
                    list.append(d)
                }
                deps = .explicit(list)
            default:
                throw ProtocolError(.invalidField(frameType: type, field: "dependency mode"))
            }
            frame = .beginIROB(BeginIROB(id: id, labels: labels, length: length, dependencies: deps))
        case .data:
            let id = try r.id("IROB id")
            let offset = try r.u32()
            let payload = r.rest()
            if UInt64(offset) + UInt64(payload.count) > UInt64(UInt32.max) {
                throw ProtocolError(.invalidField(frameType: type, field: "offset"))
            }
            try onData(id, offset, payload)
            frame = nil
        case .endIROB:
            frame = .endIROB(id: try r.id("IROB id"), length: try r.u32())
        case .ack:
            let cumulative = try r.u64()
            let count = Int(try r.u16())
            if count > Wire.maxListEntries { throw ProtocolError(.countLimit(frameType: type, count: count)) }
            try r.need(FrameEncoder.ackEntryLength * count)
            var entries: [AckEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                entries.append(AckEntry(id: try r.id("IROB id"), holdMicroseconds: try r.u32()))
            }
            frame = .ack(Ack(cumulative: cumulative, entries: entries))
        case .resendRequest:
            let id = try r.id("IROB id")
            let flags = try r.u8()
            if flags > 1 { throw ProtocolError(.invalidField(frameType: type, field: "flags")) }
            let offset = try r.u32()
            let length = try r.u32()
            if UInt64(offset) + UInt64(length) > UInt64(UInt32.max) {
                throw ProtocolError(.invalidField(frameType: type, field: "range"))
            }
            frame = .resendRequest(ResendRequest(id: id, needsBegin: flags == 1, offset: offset, length: length))
        case .dataCheck:
            let count = Int(try r.u16())
            if count > Wire.maxListEntries { throw ProtocolError(.countLimit(frameType: type, count: count)) }
            try r.need(8 * count)
            var ids: [IROBID] = []
            ids.reserveCapacity(count)
            for _ in 0..<count { ids.append(try r.id("IROB id")) }
            frame = .dataCheck(ids: ids)
        case .newInterface:
            let nid = try r.u32()
            let kind = NetworkKind(wire: try r.u8())
            let addr = try r.u32()
            let name = try r.name()
            frame = .newInterface(InterfaceInfo(networkID: nid, kind: kind, ipv4Address: addr, name: name))
        case .downInterface:
            frame = .downInterface(networkID: try r.u32())
        case .goodbye:
            frame = .goodbye(Goodbye(reason: GoodbyeReason(wire: try r.u8()), lastID: try r.u64()))
        case .ping:
            frame = .ping(nonce: try r.u64())
        case .pong:
            frame = .pong(nonce: try r.u64(), holdMicroseconds: try r.u32())
        case .auth:
            switch try r.u8() {
            case 0: frame = .auth(.keyShare(publicKey: try r.bytes(Wire.authKeyLength), nonce: try r.bytes(Wire.authNonceLength)))
            case 1: frame = .auth(.join(nonce: try r.bytes(Wire.authNonceLength)))
            case 2: frame = .auth(.challenge(nonce: try r.bytes(Wire.authNonceLength), proof: try r.bytes(Wire.authProofLength)))
            case 3: frame = .auth(.proof(try r.bytes(Wire.authProofLength)))
            case 4: frame = .auth(.unknownSession)
            default: throw ProtocolError(.invalidField(frameType: type, field: "AUTH kind"))
            }
        }
        try r.finish()
        return frame
    }
}

extension FrameDecoder {
    /// Removes and returns the bytes fed but not yet decoded (to hand a stream to another decoder).
    package mutating func takeBuffered() -> [UInt8] {
        let out = Array(storage[readIndex..<writeIndex])
        reset()
        return out
    }
}
