/// Something the stream decoder found, with byte offsets counted from the start of the stream
/// (the first byte ever passed to `consume`, gaps included).
public enum ToyStreamEvent: Sendable, Equatable {
    /// A complete, valid header whose first byte is at `startOffset`. Payload may still be coming.
    case header(ToyHeader, startOffset: UInt64)
    /// The last byte of the message that started at `startOffset` was consumed; `endOffset` is one
    /// past it. `damaged` is true when a gap (bytes never seen) fell inside the message.
    case message(ToyHeader, startOffset: UInt64, endOffset: UInt64, damaged: Bool)
    /// The bytes at `offset` are not a valid header; the decoder scans for the next magic.
    case desync(offset: UInt64, ToyDecodeError)
}

/// Incremental decoder for a byte stream of back-to-back toy messages (the plain-TCP variant, or
/// the concatenated payload of an IROB).
///
/// Accepts any chunking, never copies payload bytes, keeps a fixed 24-byte header buffer, and
/// treats its input as hostile: a bad header produces a `.desync` event and a scan for the next
/// magic, never a trap. Missing bytes (`skipGap`) inside a payload keep the framing; a gap that
/// hits a header forces a resync.
public struct ToyStreamDecoder: Sendable {
    private enum State: Sendable {
        case header(filled: Int)
        case payload(header: ToyHeader, start: UInt64, remaining: UInt64, damaged: Bool)
        /// Looking for the magic; `matched` magic bytes were seen at the end of the last chunk.
        case resync(matched: Int)
    }

    private var state: State = .header(filled: 0)
    private var headerBuffer = [UInt8](repeating: 0, count: ToyWire.headerLength)
    /// Stream offset of the next byte `consume` will see.
    public private(set) var offset: UInt64 = 0
    /// Number of `.desync` events so far.
    public private(set) var desyncCount = 0
    /// Bytes skipped while resynchronizing (not part of any decoded message).
    public private(set) var skippedBytes: UInt64 = 0

    public init() {}

    /// True when the decoder sits exactly between two messages (nothing buffered or pending).
    public var isAtMessageBoundary: Bool {
        if case .header(filled: 0) = state { return true }
        return false
    }

    private static let magicBytes: (UInt8, UInt8, UInt8, UInt8) = (0x54, 0x4F, 0x59, 0x31)

    @inline(__always)
    private static func magicByte(_ i: Int) -> UInt8 {
        switch i {
        case 0: return magicBytes.0
        case 1: return magicBytes.1
        case 2: return magicBytes.2
        default: return magicBytes.3
        }
    }

    /// Feeds the next contiguous bytes of the stream. `handler` is called for each event, in order.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer, _ handler: (ToyStreamEvent) -> Void) {
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .payload(let header, let start, let remaining, let damaged):
                let take = UInt64(n - i) < remaining ? UInt64(n - i) : remaining
                i += Int(take)
                offset += take
                if take == remaining {
                    state = .header(filled: 0)
                    handler(.message(header, startOffset: start, endOffset: offset, damaged: damaged))
                } else {
                    state = .payload(header: header, start: start, remaining: remaining - take, damaged: damaged)
                }

            case .header(let filled):
                let start = offset - UInt64(filled)
                let result: Result<ToyHeader, ToyDecodeError>
                if filled == 0 && n - i >= ToyWire.headerLength {
                    // Fast path: the whole header is in this chunk, decode in place.
                    let slice = UnsafeRawBufferPointer(rebasing: bytes[i ..< i + ToyWire.headerLength])
                    result = ToyHeader.decodeResult(slice)
                    // On failure only the first byte is treated as garbage (resync rescans the rest).
                    if case .success = result {
                        i += ToyWire.headerLength
                        offset += UInt64(ToyWire.headerLength)
                    }
                } else {
                    let take = min(ToyWire.headerLength - filled, n - i)
                    headerBuffer.withUnsafeMutableBytes { dst in
                        dst.baseAddress!.advanced(by: filled).copyMemory(from: bytes.baseAddress!.advanced(by: i), byteCount: take)
                    }
                    i += take
                    offset += UInt64(take)
                    let now = filled + take
                    if now < ToyWire.headerLength {
                        // Check the magic early so garbage is reported as soon as it is visible.
                        if let bad = earlyMagicMismatch(filled: now) {
                            result = .failure(bad)
                        } else {
                            state = .header(filled: now)
                            continue
                        }
                    } else {
                        result = headerBuffer.withUnsafeBytes { ToyHeader.decodeResult($0) }
                    }
                    if case .failure = result {
                        // Rewind logically: bytes after the first header byte are rescanned from the buffer.
                        let buffered = Array(headerBuffer[1 ..< (filled + take)])
                        desyncCount += 1
                        if case .failure(let error) = result { handler(.desync(offset: start, error)) }
                        skippedBytes += 1
                        state = .resync(matched: 0)
                        rescan(buffered, endingAt: offset, handler)
                        continue
                    }
                }
                switch result {
                case .success(let header):
                    handler(.header(header, startOffset: start))
                    if header.payloadLength == 0 {
                        state = .header(filled: 0)
                        handler(.message(header, startOffset: start, endOffset: offset, damaged: false))
                    } else {
                        state = .payload(header: header, start: start, remaining: UInt64(header.payloadLength), damaged: false)
                    }
                case .failure(let error):
                    // Fast-path failure: skip one byte and scan for the magic.
                    desyncCount += 1
                    handler(.desync(offset: start, error))
                    i += 1
                    offset += 1
                    skippedBytes += 1
                    state = .resync(matched: 0)
                }

            case .resync(let matched):
                var m = matched
                while i < n {
                    let b = bytes[i]
                    i += 1
                    offset += 1
                    if b == Self.magicByte(m) {
                        m += 1
                        if m == 4 { break }
                    } else {
                        skippedBytes += UInt64(m)
                        m = b == Self.magicByte(0) ? 1 : 0
                        if m == 0 { skippedBytes += 1 }
                    }
                }
                if m == 4 {
                    writeMagic()
                    state = .header(filled: 4)
                } else {
                    state = .resync(matched: m)
                }
            }
        }
    }

    /// Reports that `length` bytes of the stream were never seen (a capture gap).
    public mutating func skipGap(_ length: UInt64, _ handler: (ToyStreamEvent) -> Void) {
        guard length > 0 else { return }
        switch state {
        case .payload(let header, let start, let remaining, _):
            if length < remaining {
                state = .payload(header: header, start: start, remaining: remaining - length, damaged: true)
                offset += length
            } else {
                // The gap swallows the end of this message and whatever framing follows it.
                offset += length
                skippedBytes += length - remaining
                handler(.message(header, startOffset: start, endOffset: start + UInt64(header.messageLength), damaged: true))
                state = length == remaining ? .header(filled: 0) : .resync(matched: 0)
            }
        case .header, .resync:
            offset += length
            skippedBytes += length
            state = .resync(matched: 0)
        }
    }

    private func earlyMagicMismatch(filled: Int) -> ToyDecodeError? {
        for k in 0 ..< min(filled, 4) where headerBuffer[k] != Self.magicByte(k) {
            var magic: UInt32 = 0
            for j in 0 ..< 4 { magic = magic << 8 | UInt32(j < filled ? headerBuffer[j] : 0) }
            return .badMagic(magic)
        }
        return nil
    }

    private mutating func writeMagic() {
        headerBuffer[0] = Self.magicBytes.0
        headerBuffer[1] = Self.magicBytes.1
        headerBuffer[2] = Self.magicBytes.2
        headerBuffer[3] = Self.magicBytes.3
    }

    /// Re-feeds bytes that were buffered as a header candidate and turned out not to be one.
    /// `endingAt` is the stream offset just after them; offsets are rewound so events stay exact.
    private mutating func rescan(_ buffered: [UInt8], endingAt end: UInt64, _ handler: (ToyStreamEvent) -> Void) {
        offset = end - UInt64(buffered.count)
        buffered.withUnsafeBytes { consume($0, handler) }
    }
}
