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
    /// `length` payload bytes of a DATA frame whose header the capture's snap length cut after the
    /// IROB id (`id`) or before it (nil): the bytes crossed the wire, but where they belong inside
    /// the IROB is unknown. They are booked to the IROB's app when `id` is known.
    case dataUnplaced(id: UInt64?, length: Int)
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
    /// length). A parser steps over them; when they hide frame boundaries it resynchronizes later
    /// (see `IntNWDecodingStats`).
    func skip(_ length: Int,
              _ handler: (IntNWWireEvent, _ frameStart: UInt64, _ frameEnd: UInt64) -> Void) -> String?
    /// The next `length` stream bytes were never captured (a hole): the frame in progress is lost
    /// and the parser resynchronizes later.
    func gap(_ length: Int,
             _ handler: (IntNWWireEvent, _ frameStart: UInt64, _ frameEnd: UInt64) -> Void) -> String?
    /// How a resynchronization candidate is confirmed: called with a BEGIN_IROB, DATA (empty
    /// prefix) or END_IROB decoded at a candidate frame boundary; true accepts it.
    func setResyncCheck(_ check: @escaping (IntNWWireEvent) -> Bool)
    /// What the parser could not decode so far.
    var decodingStats: IntNWDecodingStats { get }
}

extension IntNWFrameParser {
    public func skip(_ length: Int,
                     _ handler: (IntNWWireEvent, _ frameStart: UInt64, _ frameEnd: UInt64) -> Void) -> String? {
        "this parser cannot step over \(length) bytes cut off by the snap length"
    }
    public func gap(_ length: Int,
                    _ handler: (IntNWWireEvent, _ frameStart: UInt64, _ frameEnd: UInt64) -> Void) -> String? {
        "capture gap of \(length) bytes; this parser cannot resynchronize"
    }
    public func setResyncCheck(_ check: @escaping (IntNWWireEvent) -> Bool) {}
    public var decodingStats: IntNWDecodingStats { IntNWDecodingStats() }
}

/// One direction of an IntNW connection: what the decoder could not read (docs/analysis.md,
/// "Snaplen"). All zero for a complete capture.
///
/// When the snap length cuts a frame's length field (or a capture hole swallows frame boundaries),
/// the decoder has lost the framing: it scans the bytes captured after that point for a frame it
/// can confirm -- a BEGIN_IROB, DATA or END_IROB, decoded whole by IntNW's own rules, that names an
/// IROB consistent with what this session direction has shown so far (DATA and END_IROB: an IROB
/// already begun, inside its declared length; BEGIN_IROB: an IROB not yet complete) -- and resumes
/// there. Nothing in between is guessed.
public struct IntNWDecodingStats: Codable, Sendable, Equatable {
    /// Times the frame boundaries were lost.
    public var framingLost = 0
    /// Times decoding resumed at a confirmed frame after losing the framing.
    public var resynchronized = 0
    /// Frames whose length was captured but whose header the snap length cut after it (stepped
    /// over whole; a DATA payload among them is booked to its app when the IROB id was captured).
    public var cutFrames = 0
    /// Bytes that crossed the wire (captured or cut by the snap length, never holes) that could
    /// not be assigned to an IROB: everything between losing the framing and resynchronizing, the
    /// whole of a frame whose type was cut, and the payload of a DATA frame whose IROB id was cut.
    /// Per-app bytes exclude them, so they are lower bounds when this is not 0.
    public var unattributedBytes: UInt64 = 0

    public init() {}
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
