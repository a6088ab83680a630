import IntNWWire

/// The IntNW decoding the analyzer uses by default: IntNW's own `FrameDecoder`, so the analyzer
/// reads exactly what the library writes (docs/wire-protocol.md).
public enum IntNWWireDecoding {
    public static let standard: IntNWDecoding? = IntNWDecoding(
        recognizes: recognizesHello,
        makeParser: { IntNWFrameDecoderAdapter() })

    /// A stream starts with a HELLO frame: length (4), type 0x01, magic "INW!".
    @Sendable static func recognizesHello(_ p: UnsafeRawBufferPointer) -> Bool? {
        if p.count >= 4 {
            let length = UInt32(p[0]) << 24 | UInt32(p[1]) << 16 | UInt32(p[2]) << 8 | UInt32(p[3])
            if length < 9 || length > 1024 { return false }
        }
        if p.count >= 5 && p[4] != FrameType.hello.rawValue { return false }
        let magic = Wire.helloMagic
        for k in 0 ..< 4 where p.count > 5 + k {
            if p[5 + k] != UInt8(truncatingIfNeeded: magic >> (24 - 8 * k)) { return false }
        }
        return p.count >= 9 ? true : nil
    }
}

/// Adapts IntNW's `FrameDecoder` to the analyzer's `IntNWFrameParser` seam, adding each frame's
/// position in the TCP stream.
///
/// DATA frames, which carry nearly all the bytes, are walked here without copying their payload
/// (the analyzer needs only their id, offset, length and first bytes; the layout is fixed by
/// docs/wire-protocol.md: length 4, type 1, id 8, offset 4, payload; `FrameEncoder.dataHeaderLength`). Every other frame is
/// buffered whole (at most `Wire.maxFrameLength`) and decoded by IntNW's own `FrameDecoder`, so
/// its validation rules apply unchanged.
final class IntNWFrameDecoderAdapter: IntNWFrameParser {
    private enum State {
        /// Reading a frame's first bytes (up to the DATA header, `FrameEncoder.dataHeaderLength`).
        case header(filled: Int)
        /// Inside a DATA frame's payload.
        case data(id: UInt64, offset: UInt32, length: Int, remaining: Int, frameStart: UInt64)
        /// Collecting a non-DATA frame for `FrameDecoder`.
        case other(remaining: Int, frameStart: UInt64)
    }

    private static let dataHeaderLength = FrameEncoder.dataHeaderLength
    /// A DATA frame's length field counts the type byte, the id and the offset before the payload.
    private static let dataBodyOverhead = FrameEncoder.dataHeaderLength - 4
    private static let prefixLength = ToyPrefix.length

    private var state: State = .header(filled: 0)
    private var head = [UInt8](repeating: 0, count: FrameEncoder.dataHeaderLength)
    private var prefix = [UInt8](repeating: 0, count: ToyPrefix.length)
    private var prefixFilled = 0
    private var frame: [UInt8] = []
    private var decoder = FrameDecoder()
    /// Stream offset of the next byte.
    private var offset: UInt64 = 0
    private var failed: String?

    func consume(_ bytes: UnsafeRawBufferPointer,
                 _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) -> String? {
        if let failed { return failed }
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .data(let id, let off, let length, let remaining, let frameStart):
                let take = min(remaining, n - i)
                let payloadIndex = length - remaining
                if payloadIndex < Self.prefixLength {
                    let k = min(Self.prefixLength - payloadIndex, take)
                    for j in 0 ..< k { prefix[payloadIndex + j] = bytes[i + j] }
                    prefixFilled = payloadIndex + k
                }
                i += take
                advanceData(take, id: id, offset: off, length: length, remaining: remaining, frameStart: frameStart, handler)

            case .other(let remaining, let frameStart):
                let take = min(remaining, n - i)
                frame.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i ..< i + take]))
                i += take
                offset += UInt64(take)
                if take < remaining {
                    state = .other(remaining: remaining - take, frameStart: frameStart)
                    continue
                }
                finishOther(frameStart, handler)
                if let failed { return failed }

            case .header(let filled):
                let take = min(Self.dataHeaderLength - filled, n - i)
                for j in 0 ..< take { head[filled + j] = bytes[i + j] }
                i += take
                offset += UInt64(take)
                let now = filled + take
                guard now >= 5 else { state = .header(filled: now); continue }
                let length = Int(UInt32(head[0]) << 24 | UInt32(head[1]) << 16 | UInt32(head[2]) << 8 | UInt32(head[3]))
                guard length >= 1 && length <= Wire.maxFrameLength else { return fail("frame length \(length) out of range") }
                let frameStart = offset - UInt64(now)
                let total = 4 + length
                if head[4] == FrameType.data.rawValue {
                    guard length >= Self.dataBodyOverhead else { return fail("DATA frame body of \(length - 1) bytes is too short") }
                    if now < Self.dataHeaderLength { state = .header(filled: now); continue }
                    var id: UInt64 = 0
                    for j in 5 ..< 13 { id = id << 8 | UInt64(head[j]) }
                    let off = UInt32(head[13]) << 24 | UInt32(head[14]) << 16 | UInt32(head[15]) << 8 | UInt32(head[16])
                    let payload = length - Self.dataBodyOverhead
                    guard id != 0 else { return fail("DATA frame with IROB id 0") }
                    guard UInt64(off) + UInt64(payload) <= UInt64(UInt32.max) else { return fail("DATA frame offset overflow") }
                    prefixFilled = 0
                    if payload == 0 {
                        state = .header(filled: 0)
                        handler(.data(id: id, irobOffset: UInt64(off), length: 0, prefix: UnsafeRawBufferPointer(start: nil, count: 0)),
                                frameStart, offset)
                    } else {
                        state = .data(id: id, offset: off, length: payload, remaining: payload, frameStart: frameStart)
                    }
                } else {
                    // Not DATA: the bytes read so far may run past this (short) frame.
                    let have = min(now, total)
                    frame.removeAll(keepingCapacity: true)
                    frame.append(contentsOf: head[0 ..< have])
                    let extra = now - have
                    if extra > 0 {
                        // Give back the bytes that belong to the next frame.
                        i -= extra
                        offset -= UInt64(extra)
                    }
                    state = .other(remaining: total - have, frameStart: frameStart)
                    if total == have {
                        // Zero bytes left: finish the frame through the .other path.
                        state = .other(remaining: 0, frameStart: frameStart)
                        finishOther(frameStart, handler)
                        if let failed { return failed }
                    }
                }
            }
        }
        return nil
    }

    func skip(_ length: Int, _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) -> String? {
        if let failed { return failed }
        var left = length
        while left > 0 {
            guard case .data(let id, let off, let frameLength, let remaining, let frameStart) = state else {
                return fail("the capture's snap length cut off IntNW framing at stream offset \(offset); decoding stops")
            }
            let take = min(remaining, left)
            left -= take
            advanceData(take, id: id, offset: off, length: frameLength, remaining: remaining, frameStart: frameStart, handler)
        }
        return nil
    }

    /// Moves `take` bytes (read or skipped) through the DATA frame in progress; when its payload is
    /// complete, reports the frame with the prefix bytes that were seen.
    private func advanceData(_ take: Int, id: UInt64, offset off: UInt32, length: Int, remaining: Int, frameStart: UInt64,
                             _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) {
        offset += UInt64(take)
        guard take == remaining else {
            state = .data(id: id, offset: off, length: length, remaining: remaining - take, frameStart: frameStart)
            return
        }
        state = .header(filled: 0)
        let filled = min(prefixFilled, length)
        prefix.withUnsafeBytes { p in
            handler(.data(id: id, irobOffset: UInt64(off), length: length,
                          prefix: UnsafeRawBufferPointer(rebasing: p[0 ..< filled])), frameStart, offset)
        }
    }

    /// Decodes the non-DATA frame collected in `frame` with IntNW's `FrameDecoder` and reports it.
    private func finishOther(_ frameStart: UInt64, _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) {
        state = .header(filled: 0)
        decoder.feed(frame)
        frame.removeAll(keepingCapacity: frame.capacity <= 65_536)
        do {
            guard let decoded = try decoder.next() else { _ = fail("frame did not decode"); return }
            emit(decoded, frameStart, offset, handler)
        } catch {
            _ = fail("\(error)")
        }
    }

    private func fail(_ reason: String) -> String {
        failed = reason
        return reason
    }

    private func emit(_ frame: Frame, _ start: UInt64, _ end: UInt64, _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) {
        switch frame {
        case .hello(let h):
            handler(.hello(sessionHigh: h.session.high, sessionLow: h.session.low, fromClient: h.role == .client), start, end)
        case .beginIROB(let b):
            handler(.beginIROB(id: b.id.rawValue, foreground: !b.labels.isBackground, length: UInt64(b.length)), start, end)
        case .data(let d):
            d.bytes.withUnsafeBytes { raw in
                handler(.data(id: d.id.rawValue, irobOffset: UInt64(d.offset), length: raw.count, prefix: raw), start, end)
            }
        case .endIROB(let id, let length):
            handler(.endIROB(id: id.rawValue, totalLength: UInt64(length)), start, end)
        case .ack: handler(.other("ACK"), start, end)
        case .resendRequest: handler(.other("RESEND_REQUEST"), start, end)
        case .dataCheck: handler(.other("DATA_CHECK"), start, end)
        case .newInterface: handler(.other("NEW_INTERFACE"), start, end)
        case .downInterface: handler(.other("DOWN_INTERFACE"), start, end)
        case .goodbye: handler(.other("GOODBYE"), start, end)
        case .ping: handler(.other("PING"), start, end)
        case .pong: handler(.other("PONG"), start, end)
        case .extension(let t, _): handler(.other("EXT_\(t)"), start, end)
        }
    }
}

/// How many leading payload bytes of each IROB the analyzer keeps: a toy header.
enum ToyPrefix {
    static let length = 24
}
