import IntNW

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
        let magic: [UInt8] = [0x49, 0x4E, 0x57, 0x21]
        for k in 0 ..< 4 where p.count > 5 + k {
            if p[5 + k] != magic[k] { return false }
        }
        return p.count >= 9 ? true : nil
    }
}

/// Adapts IntNW's `FrameDecoder` to the analyzer's `IntNWFrameParser` seam, adding each frame's
/// position in the TCP stream.
final class IntNWFrameDecoderAdapter: IntNWFrameParser {
    private var decoder = FrameDecoder()
    /// Stream offset just past the last byte fed.
    private var fedEnd: UInt64 = 0

    func consume(_ bytes: UnsafeRawBufferPointer,
                 _ handler: (IntNWWireEvent, UInt64, UInt64) -> Void) -> String? {
        decoder.feed(bytes)
        fedEnd += UInt64(bytes.count)
        while true {
            let start = fedEnd - UInt64(decoder.bufferedByteCount)
            let frame: Frame?
            do { frame = try decoder.next() } catch { return "\(error)" }
            guard let frame else { return nil }
            let end = fedEnd - UInt64(decoder.bufferedByteCount)
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
}
