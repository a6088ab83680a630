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
        /// Inside a frame of known extent whose header the snap length cut: stepped over.
        case cut(remaining: Int, frameStart: UInt64, kind: CutKind)
        /// Frame boundaries lost: scanning captured bytes for a frame to resynchronize on.
        case lost
    }

    private enum CutKind {
        /// A DATA frame: its IROB id when it was captured, and its payload length.
        case data(id: UInt64?, payload: Int)
        /// A non-DATA frame (its contents are not needed for accounting).
        case control
        /// The type byte was cut: the whole frame is unattributed.
        case unknown(total: Int)
    }

    private static let dataHeaderLength = FrameEncoder.dataHeaderLength
    /// A DATA frame's length field counts the type byte, the id and the offset before the payload.
    private static let dataBodyOverhead = FrameEncoder.dataHeaderLength - 4
    private static let prefixLength = ToyPrefix.length
    /// Largest BEGIN_IROB / END_IROB a resynchronization candidate may be (a BEGIN_IROB with
    /// hundreds of explicit dependencies is simply not used to resynchronize).
    static let maxCandidateFrame = 4096

    private var state: State = .header(filled: 0)
    private var head = [UInt8](repeating: 0, count: FrameEncoder.dataHeaderLength)
    private var prefix = [UInt8](repeating: 0, count: ToyPrefix.length)
    private var prefixFilled = 0
    /// Set when the snap length cut the DATA payload's first bytes: the prefix ends there (bytes
    /// captured after the cut cannot extend it).
    private var prefixCut = false
    private var frame: [UInt8] = []
    private var decoder = FrameDecoder()
    /// Stream offset of the next byte.
    private var offset: UInt64 = 0
    private var failed: String?
    private var stats = IntNWDecodingStats()
    /// Bytes still being scanned when the stream ends were not attributed either.
    var decodingStats: IntNWDecodingStats {
        var s = stats
        if case .lost = state { s.unattributedBytes += lostPresentBytes }
        return s
    }
    private var resyncCheck: ((IntNWWireEvent) -> Bool)?
    /// While lost: the contiguous captured bytes since the last cut or hole (candidates), the
    /// stream offset of `scan[0]`, the next candidate position, and the present bytes since the
    /// framing was lost.
    private var scan: [UInt8] = []
    private var scanStart: UInt64 = 0
    private var scanPosition = 0
    private var lostPresentBytes: UInt64 = 0

    func setResyncCheck(_ check: @escaping (IntNWWireEvent) -> Bool) { resyncCheck = check }

    func consume(_ bytes: UnsafeRawBufferPointer,
                 _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) -> String? {
        if let failed { return failed }
        if case .lost = state { return scanLost(bytes, handler) }
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .lost:
                // Not reached: only `skip` and `gap` lose the framing.
                return scanLost(UnsafeRawBufferPointer(rebasing: bytes[i...]), handler)

            case .cut(let remaining, let frameStart, let kind):
                let take = min(remaining, n - i)
                i += take
                offset += UInt64(take)
                stepCut(remaining: remaining, took: take, frameStart: frameStart, kind: kind, handler)

            case .data(let id, let off, let length, let remaining, let frameStart):
                let take = min(remaining, n - i)
                let payloadIndex = length - remaining
                if payloadIndex < Self.prefixLength && !prefixCut {
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
                    prefixCut = false
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

    /// Steps `took` bytes into a cut frame; at its end, reports what it was.
    private func stepCut(remaining: Int, took: Int, frameStart: UInt64, kind: CutKind,
                         _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) {
        guard took == remaining else {
            state = .cut(remaining: remaining - took, frameStart: frameStart, kind: kind)
            return
        }
        state = .header(filled: 0)
        stats.cutFrames += 1
        switch kind {
        case .data(let id?, let payload):
            handler(.dataUnplaced(id: id, length: payload), frameStart, offset)
        case .data(nil, let payload):
            stats.unattributedBytes += UInt64(payload)
        case .unknown(let total):
            stats.unattributedBytes += UInt64(total)
        case .control:
            break
        }
    }

    func skip(_ length: Int, _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) -> String? {
        if let failed { return failed }
        var left = length
        while left > 0 {
            switch state {
            case .lost:
                offset += UInt64(left)
                lostPresentBytes += UInt64(left)
                resetScan()
                return nil

            case .cut(let remaining, let frameStart, let kind):
                let take = min(remaining, left)
                left -= take
                offset += UInt64(take)
                stepCut(remaining: remaining, took: take, frameStart: frameStart, kind: kind, handler)

            case .data(let id, let off, let frameLength, let remaining, let frameStart):
                let take = min(remaining, left)
                if frameLength - remaining < Self.prefixLength {
                    // The prefix ends at the cut.
                    prefixCut = true
                    prefixFilled = min(prefixFilled, frameLength - remaining)
                }
                left -= take
                advanceData(take, id: id, offset: off, length: frameLength, remaining: remaining, frameStart: frameStart, handler)

            case .other(let remaining, let frameStart):
                // A control frame cut short: its extent is known, its contents are not.
                frame.removeAll(keepingCapacity: true)
                state = .cut(remaining: remaining, frameStart: frameStart, kind: .control)
                if remaining == 0 { stepCut(remaining: 0, took: 0, frameStart: frameStart, kind: .control, handler) }

            case .header(let filled):
                let frameStart = offset - UInt64(filled)
                guard filled >= 4 else {
                    // The length field itself was cut: the frame boundaries are lost.
                    loseFraming(frameStart: frameStart)
                    continue
                }
                let length = Int(UInt32(head[0]) << 24 | UInt32(head[1]) << 16 | UInt32(head[2]) << 8 | UInt32(head[3]))
                guard length >= 1 && length <= Wire.maxFrameLength else { return fail("frame length \(length) out of range") }
                let total = 4 + length
                let kind: CutKind
                if filled == 4 {
                    kind = .unknown(total: total)
                } else if head[4] != FrameType.data.rawValue {
                    kind = .control
                } else {
                    // Only a DATA header stays in `.header` past its type byte.
                    guard length >= Self.dataBodyOverhead else { return fail("DATA frame body of \(length - 1) bytes is too short") }
                    var id: UInt64?
                    if filled >= 13 {
                        var v: UInt64 = 0
                        for j in 5 ..< 13 { v = v << 8 | UInt64(head[j]) }
                        guard v != 0 else { return fail("DATA frame with IROB id 0") }
                        id = v
                    }
                    kind = .data(id: id, payload: length - Self.dataBodyOverhead)
                }
                state = .cut(remaining: total - filled, frameStart: frameStart, kind: kind)
            }
        }
        return nil
    }

    func gap(_ length: Int, _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) -> String? {
        if let failed { return failed }
        switch state {
        case .lost: break
        case .header(let filled): loseFraming(frameStart: offset - UInt64(filled))
        case .data(_, _, _, _, let frameStart), .other(_, let frameStart), .cut(_, let frameStart, _):
            loseFraming(frameStart: frameStart)
        }
        // Bytes never captured are not present: not counted as unattributed.
        offset += UInt64(length)
        resetScan()
        return nil
    }

    /// The frame that started at `frameStart` cannot be delimited: its present bytes so far become
    /// unattributed and the parser scans for a frame to resynchronize on.
    private func loseFraming(frameStart: UInt64) {
        stats.framingLost += 1
        lostPresentBytes = offset - frameStart
        frame.removeAll(keepingCapacity: true)
        state = .lost
        resetScan()
    }

    private func resetScan() {
        scan.removeAll(keepingCapacity: true)
        scanStart = offset
        scanPosition = 0
    }

    private enum Candidate { case reject, needMore, accept }

    private func readU32(_ p: Int) -> UInt32 {
        UInt32(scan[p]) << 24 | UInt32(scan[p + 1]) << 16 | UInt32(scan[p + 2]) << 8 | UInt32(scan[p + 3])
    }

    /// Whether a confirmed frame starts at `scan[p]`.
    private func candidate(at p: Int) -> Candidate {
        let avail = scan.count - p
        guard avail >= 5 else { return .needMore }
        let length = Int(readU32(p))
        guard length >= 1 && length <= Wire.maxFrameLength else { return .reject }
        guard let check = resyncCheck else { return .reject }
        switch scan[p + 4] {
        case FrameType.data.rawValue:
            guard length >= Self.dataBodyOverhead else { return .reject }
            guard avail >= Self.dataHeaderLength else { return .needMore }
            let id = UInt64(readU32(p + 5)) << 32 | UInt64(readU32(p + 9))
            let off = UInt64(readU32(p + 13))
            let payload = length - Self.dataBodyOverhead
            guard id != 0, off + UInt64(payload) <= UInt64(UInt32.max) else { return .reject }
            return check(.data(id: id, irobOffset: off, length: payload, prefix: UnsafeRawBufferPointer(start: nil, count: 0)))
                ? .accept : .reject
        case FrameType.beginIROB.rawValue, FrameType.endIROB.rawValue:
            let total = 4 + length
            guard total <= Self.maxCandidateFrame else { return .reject }
            guard avail >= total else { return .needMore }
            var d = FrameDecoder()
            d.feed(Array(scan[p ..< p + total]))
            guard let f = try? d.next() else { return .reject }
            switch f {
            case .beginIROB(let b):
                return check(.beginIROB(id: b.id.rawValue, foreground: !b.labels.isBackground, length: UInt64(b.length))) ? .accept : .reject
            case .endIROB(let id, let l):
                return check(.endIROB(id: id.rawValue, totalLength: UInt64(l))) ? .accept : .reject
            default:
                return .reject
            }
        default:
            return .reject
        }
    }

    /// Lost: adds captured bytes to the scan window and looks for a confirmed frame start; on one,
    /// decoding resumes there with the rest of the window.
    private func scanLost(_ bytes: UnsafeRawBufferPointer, _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) -> String? {
        scan.append(contentsOf: bytes)
        offset += UInt64(bytes.count)
        lostPresentBytes += UInt64(bytes.count)
        while scanPosition < scan.count {
            switch candidate(at: scanPosition) {
            case .reject:
                scanPosition += 1
            case .needMore:
                trimScan()
                return nil
            case .accept:
                let rest = Array(scan[scanPosition...])
                let resumeAt = scanStart + UInt64(scanPosition)
                stats.unattributedBytes += lostPresentBytes - UInt64(rest.count)
                stats.resynchronized += 1
                lostPresentBytes = 0
                scan.removeAll(keepingCapacity: true)
                scanPosition = 0
                state = .header(filled: 0)
                offset = resumeAt
                return rest.withUnsafeBytes { consume($0, handler) }
            }
        }
        trimScan()
        return nil
    }

    /// Keeps the scan window to the bytes a pending candidate may still need.
    private func trimScan() {
        if scanPosition >= 65_536 || (scanPosition > 0 && scanPosition == scan.count) {
            scan.removeFirst(scanPosition)
            scanStart += UInt64(scanPosition)
            scanPosition = 0
        }
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
        case .auth: handler(.other("AUTH"), start, end)
        case .extension(let t, _):
            // Named as the Wireshark dissector names them; an unknown extension by its type code.
            handler(.other(t == Wire.networkTroubleType ? "NETWORK_TROUBLE" : "EXT_\(t)"), start, end)
        }
    }
}

/// How many leading payload bytes of each IROB the analyzer keeps: a toy header.
enum ToyPrefix {
    static let length = 24
}
