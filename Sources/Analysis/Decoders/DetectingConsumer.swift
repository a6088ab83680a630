import ToyProtocol

/// Chooses the decoder for one stream direction from its first bytes (or from the run metadata),
/// then forwards everything to it. Bytes seen before the choice are replayed with their times.
final class DetectingConsumer: StreamConsumer {
    private struct Held { var bytes: [UInt8]; var offset: UInt64; var firstSeen: UInt64; var available: UInt64 }

    /// Bytes to look at before giving up on recognizing IntNW and falling back to toy framing.
    static let detectionWindow = 64

    private let intnw: IntNWDecoding?
    private let makeToy: () -> ToyStreamConsumer
    private let makeIntNW: (any IntNWFrameParser) -> IntNWStreamConsumer
    private var held: [Held] = []
    private var heldBytes: [UInt8] = []
    private(set) var chosen: StreamProtocol?
    private(set) var inner: StreamConsumer?

    init(forced: StreamProtocol?, intnw: IntNWDecoding?,
         makeToy: @escaping () -> ToyStreamConsumer,
         makeIntNW: @escaping (any IntNWFrameParser) -> IntNWStreamConsumer) {
        self.intnw = intnw
        self.makeToy = makeToy
        self.makeIntNW = makeIntNW
        if let f = forced { choose(f) }
    }

    /// Toy messages decoded, when the stream was toy.
    var toyMessages: Int { (inner as? ToyStreamConsumer)?.messages ?? 0 }
    var intnwFrames: Int { (inner as? IntNWStreamConsumer)?.frames ?? 0 }
    var intnwFramesByType: [String: Int]? { (inner as? IntNWStreamConsumer)?.framesByType }
    var intnwDecodingStats: IntNWDecodingStats? { (inner as? IntNWStreamConsumer)?.decodingStats }

    private func choose(_ p: StreamProtocol) {
        chosen = p
        switch p {
        case .intnw:
            if let d = intnw { inner = makeIntNW(d.makeParser()) } else { chosen = .unknown }
        case .toy: inner = makeToy()
        case .unknown: inner = nil
        }
    }

    private func decide(final: Bool) {
        let prefix = heldBytes
        let isToy = prefix.count >= 4 && prefix[0 ..< 4].elementsEqual([0x54, 0x4F, 0x59, 0x31])
        if isToy { return choose(.toy) }
        if let d = intnw {
            let verdict = prefix.withUnsafeBytes { d.recognizes($0) }
            if verdict == true { return choose(.intnw) }
            if verdict == nil && !final && prefix.count < Self.detectionWindow { return }
        } else if prefix.count < 4 && !final {
            return
        }
        // Not IntNW: a toy decoder still finds toy messages later in a stream captured mid-way.
        choose(.toy)
    }

    private func replay() {
        let h = held
        held = []
        heldBytes = []
        for x in h {
            x.bytes.withUnsafeBytes { inner?.consume($0, offset: x.offset, firstSeenNanoseconds: x.firstSeen, availableNanoseconds: x.available) }
        }
    }

    func consume(_ bytes: UnsafeRawBufferPointer, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        if chosen != nil {
            inner?.consume(bytes, offset: offset, firstSeenNanoseconds: firstSeenNanoseconds, availableNanoseconds: availableNanoseconds)
            return
        }
        held.append(Held(bytes: Array(bytes), offset: offset, firstSeen: firstSeenNanoseconds, available: availableNanoseconds))
        heldBytes.append(contentsOf: bytes.prefix(Self.detectionWindow - heldBytes.count))
        decide(final: false)
        if chosen != nil { replay() }
    }

    func gap(length: UInt64, offset: UInt64, availableNanoseconds: UInt64) {
        if chosen == nil {
            decide(final: true)
            replay()
        }
        inner?.gap(length: length, offset: offset, availableNanoseconds: availableNanoseconds)
    }

    func truncated(length: UInt64, offset: UInt64, firstSeenNanoseconds: UInt64, availableNanoseconds: UInt64) {
        if chosen == nil {
            decide(final: true)
            replay()
        }
        inner?.truncated(length: length, offset: offset, firstSeenNanoseconds: firstSeenNanoseconds, availableNanoseconds: availableNanoseconds)
    }

    func finish(atNanoseconds: UInt64) {
        if chosen == nil {
            if heldBytes.isEmpty { chosen = .unknown } else { decide(final: true); replay() }
        }
        inner?.finish(atNanoseconds: atNanoseconds)
    }

    /// What the stream turned out to be: toy only if toy messages were actually decoded.
    var detectedProtocol: StreamProtocol {
        switch chosen {
        case .intnw?: return .intnw
        case .toy?: return toyMessages > 0 ? .toy : .unknown
        default: return .unknown
        }
    }
}
