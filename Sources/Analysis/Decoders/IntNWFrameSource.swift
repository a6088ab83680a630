/// The seam between the analyzer and IntNW's wire codec.
///
/// The analyzer needs only a few facts per IntNW frame; an adapter over IntNW's public
/// `FrameDecoder` turns decoded frames into these events. Keeping the seam this small means a wire
/// format change touches the adapter only.
public enum IntNWWireEvent {
    /// Connection greeting: the multisocket session (128-bit id) and whether the sender is the
    /// client. IROB ids are per session and direction, so this keys IROB reassembly across the
    /// session's connections.
    case hello(sessionHigh: UInt64, sessionLow: UInt64, fromClient: Bool)
    /// An IROB starts. `foreground` is the FG/BG label (nil when the frame carries neither);
    /// `length` is its payload length in bytes when the frame states it.
    case beginIROB(id: UInt64, foreground: Bool?, length: UInt64?)
    /// Bytes `irobOffset ..< irobOffset + length` of an IROB's payload. `prefix` holds at least the
    /// first min(length, 24) of them (all of them is fine): enough for the toy header.
    case data(id: UInt64, irobOffset: UInt64, length: Int, prefix: UnsafeRawBufferPointer)
    /// An IROB is complete at `totalLength` payload bytes.
    case endIROB(id: UInt64, totalLength: UInt64)
    /// Any other frame (ACK, RESEND_REQUEST, GOODBYE, ...), by name, for counting.
    case other(String)
}

/// An incremental parser of one direction of an IntNW TCP stream.
public protocol IntNWFrameParser: AnyObject {
    /// Feeds the next contiguous bytes. For each complete frame, calls `handler` with the event
    /// and the stream offsets of the frame's first byte and one past its last byte.
    /// Returns a description of a protocol error when the stream cannot be parsed further.
    func consume(_ bytes: UnsafeRawBufferPointer,
                 _ handler: (IntNWWireEvent, _ frameStart: UInt64, _ frameEnd: UInt64) -> Void) -> String?
    /// The next `length` stream bytes are present but unknown (cut off by the capture's snap
    /// length). A parser can step over DATA payload; anything else is an error.
    func skip(_ length: Int,
              _ handler: (IntNWWireEvent, _ frameStart: UInt64, _ frameEnd: UInt64) -> Void) -> String?
}

extension IntNWFrameParser {
    public func skip(_ length: Int,
                     _ handler: (IntNWWireEvent, _ frameStart: UInt64, _ frameEnd: UInt64) -> Void) -> String? {
        "this parser cannot step over \(length) bytes cut off by the snap length"
    }
}

/// How the analyzer finds and builds IntNW parsers.
public struct IntNWDecoding: Sendable {
    /// Whether a stream's first bytes look like an IntNW connection: true, false, or nil when
    /// more bytes are needed to tell.
    public var recognizes: @Sendable (UnsafeRawBufferPointer) -> Bool?
    /// A fresh parser for one direction of one connection.
    public var makeParser: @Sendable () -> any IntNWFrameParser

    public init(recognizes: @escaping @Sendable (UnsafeRawBufferPointer) -> Bool?,
                makeParser: @escaping @Sendable () -> any IntNWFrameParser) {
        self.recognizes = recognizes
        self.makeParser = makeParser
    }
}
