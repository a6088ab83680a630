/// IntNW wire frames (docs/wire-protocol.md is the normative description).
///
/// Every frame is `length: u32 BE` (bytes that follow the length field), `type: u8`, then a
/// type-specific body. All integers are big-endian.

/// Protocol constants and limits. Everything the decoder accepts is bounded by these.
public enum Wire {
    /// Current protocol version, sent in HELLO. Version 2 added AUTH (authenticated attach).
    public static let version: UInt16 = 2
    /// Lowest version this implementation can talk to: version 1 had no authenticated attach, so
    /// anyone who knew a session id could join it; it is refused.
    public static let minimumVersion: UInt16 = 2
    /// Oldest HELLO layout the decoder parses (the analyzer reads version 1 captures); the
    /// runtime refuses anything below `minimumVersion` itself.
    public static let oldestDecodableVersion: UInt16 = 1
    /// AUTH field sizes: X25519 public key, nonce, HMAC-SHA256 proof.
    public static let authKeyLength = 32
    public static let authNonceLength = 16
    public static let authProofLength = 32
    /// "INW!" — first four bytes of a HELLO body, so a stray connection is recognised at once.
    public static let helloMagic: UInt32 = 0x494E_5721
    /// Size of the length prefix plus the type byte.
    public static let headerLength = 5
    /// Largest value of the length field (type byte + body), in bytes: 1 MiB.
    public static let maxFrameLength = 1 << 20
    /// Largest number of explicit dependencies in one BEGIN_IROB.
    public static let maxDependencies = 1024
    /// Largest number of entries in one ACK or DATA_CHECK.
    public static let maxListEntries = 1024
    /// Longest interface name carried in HELLO / NEW_INTERFACE, in bytes.
    public static let maxNameLength = 32
    /// Largest DATA payload that fits one frame, in bytes.
    public static let maxDataPayload = maxFrameLength - 1 - 12
    /// Frame types at or above this value are optional extensions: a peer that does not know one
    /// skips it. Unknown types below it are protocol errors.
    public static let firstExtensionType: UInt8 = 0x80
    /// NETWORK_TROUBLE (an extension): "my side sees no progress on this network" or "it works again".
    public static let networkTroubleType: UInt8 = 0xA0
}

/// Frame type codes (the `type` byte).
public enum FrameType: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case beginIROB = 0x02
    case data = 0x03
    case endIROB = 0x04
    case ack = 0x05
    case resendRequest = 0x06
    case dataCheck = 0x07
    case newInterface = 0x08
    case downInterface = 0x09
    case goodbye = 0x0A
    case ping = 0x0B
    case pong = 0x0C
    case auth = 0x0D
}

/// AUTH (0x0D): the authenticated attach (docs/wire-protocol.md, "Authenticated attach").
public enum Auth: Equatable, Sendable {
    /// First connection of a session, both directions: an ephemeral X25519 public key (32) and a
    /// nonce (16). Both sides derive the session key from the two.
    case keyShare(publicKey: [UInt8], nonce: [UInt8])
    /// Client, on a later connection of an existing session: its nonce (16).
    case join(nonce: [UInt8])
    /// Server answer to `join`: its nonce (16) and its proof (32) that it holds the session key.
    case challenge(nonce: [UInt8], proof: [UInt8])
    /// Client: its proof (32) that it holds the session key; the connection is attached after it.
    case proof([UInt8])
    /// Server: this session is unknown here (the server restarted or expired it): what the
    /// client's earlier connections carried may never be delivered.
    case unknownSession

    public var kindCode: UInt8 {
        switch self {
        case .keyShare: 0
        case .join: 1
        case .challenge: 2
        case .proof: 3
        case .unknownSession: 4
        }
    }

    /// Body size after the kind byte.
    public var fieldsLength: Int {
        switch self {
        case .keyShare: Wire.authKeyLength + Wire.authNonceLength
        case .join: Wire.authNonceLength
        case .challenge: Wire.authNonceLength + Wire.authProofLength
        case .proof: Wire.authProofLength
        case .unknownSession: 0
        }
    }
}

/// Which side of a session sent a HELLO.
public enum Role: UInt8, Sendable {
    case client = 0
    case server = 1
}

/// HELLO: first frame on every connection, in both directions.
public struct Hello: Equatable, Sendable {
    public var version: UInt16
    public var role: Role
    public var session: SessionID
    /// The client's id for the local network (interface) this connection is bound to.
    public var networkID: UInt32
    public var networkKind: NetworkKind
    /// Interface name on the client (e.g. "wlan0"), at most `Wire.maxNameLength` bytes of UTF-8.
    public var interfaceName: String

    public init(version: UInt16 = Wire.version, role: Role, session: SessionID, networkID: UInt32,
                networkKind: NetworkKind, interfaceName: String) {
        self.version = version
        self.role = role
        self.session = session
        self.networkID = networkID
        self.networkKind = networkKind
        self.interfaceName = interfaceName
    }
}

/// How an IROB's dependencies are expressed on the wire.
public enum DependencySpec: Equatable, Sendable {
    /// Depends on every IROB with a smaller id (the default: an ordered stream).
    case allEarlier
    /// Depends exactly on these IROBs (each id smaller than the IROB's own id).
    case explicit([IROBID])
}

/// BEGIN_IROB: opens an IROB. Sent on every connection before the first DATA of that IROB on it.
public struct BeginIROB: Equatable, Sendable {
    public var id: IROBID
    public var labels: Labels
    /// Total length of the IROB in bytes.
    public var length: UInt32
    public var dependencies: DependencySpec
    public init(id: IROBID, labels: Labels, length: UInt32, dependencies: DependencySpec) {
        self.id = id
        self.labels = labels
        self.length = length
        self.dependencies = dependencies
    }
}

/// DATA: `bytes` of IROB `id` starting at byte `offset`.
public struct DataChunk: Equatable, Sendable {
    public var id: IROBID
    public var offset: UInt32
    public var bytes: [UInt8]
    public init(id: IROBID, offset: UInt32, bytes: [UInt8]) {
        self.id = id
        self.offset = offset
        self.bytes = bytes
    }
}

/// One acknowledged IROB and how long the receiver held it before acknowledging.
public struct AckEntry: Equatable, Sendable {
    public var id: IROBID
    /// Microseconds between the receiver getting the IROB's last byte and writing this ACK;
    /// the sender subtracts it from its timing sample (passive estimation).
    public var holdMicroseconds: UInt32
    public init(id: IROBID, holdMicroseconds: UInt32) {
        self.id = id
        self.holdMicroseconds = holdMicroseconds
    }
}

/// ACK: the listed IROBs were received completely.
public struct Ack: Equatable, Sendable {
    /// Every IROB with an id below this one has been received completely (0 or 1: none known).
    public var cumulative: UInt64
    public var entries: [AckEntry]
    public init(cumulative: UInt64, entries: [AckEntry]) {
        self.cumulative = cumulative
        self.entries = entries
    }
}

/// RESEND_REQUEST: the receiver misses `length` bytes at `offset` of IROB `id`
/// (and its BEGIN_IROB too when `needsBegin`).
public struct ResendRequest: Equatable, Sendable {
    public var id: IROBID
    public var needsBegin: Bool
    public var offset: UInt32
    public var length: UInt32
    public init(id: IROBID, needsBegin: Bool, offset: UInt32, length: UInt32) {
        self.id = id
        self.needsBegin = needsBegin
        self.offset = offset
        self.length = length
    }
}

/// NEW_INTERFACE: the client gained a network (informational; the connection follows).
public struct InterfaceInfo: Equatable, Sendable {
    public var networkID: UInt32
    public var kind: NetworkKind
    /// IPv4 address as a host-order integer (e.g. 198.18.1.2 = 0xC6120102).
    public var ipv4Address: UInt32
    public var name: String
    public init(networkID: UInt32, kind: NetworkKind, ipv4Address: UInt32, name: String) {
        self.networkID = networkID
        self.kind = kind
        self.ipv4Address = ipv4Address
        self.name = name
    }
}

/// Why a side says GOODBYE.
public enum GoodbyeReason: UInt8, Sendable {
    /// Orderly close: everything sent was acknowledged.
    case closed = 0
    /// Closed with IROBs still unacknowledged.
    case abandoned = 1
    /// The peer violated the protocol.
    case protocolError = 2
    /// Any value from a newer peer.
    case other = 255
    public init(wire: UInt8) { self = GoodbyeReason(rawValue: wire) ?? .other }
}

/// GOODBYE: the session ends; `lastID` is the highest IROB id the sender assigned (0: none).
public struct Goodbye: Equatable, Sendable {
    public var reason: GoodbyeReason
    public var lastID: UInt64
    public init(reason: GoodbyeReason, lastID: UInt64) {
        self.reason = reason
        self.lastID = lastID
    }
}

/// One decoded frame.
public enum Frame: Equatable, Sendable {
    case hello(Hello)
    case beginIROB(BeginIROB)
    case data(DataChunk)
    /// END_IROB: all `length` bytes of IROB `id` have been sent.
    case endIROB(id: IROBID, length: UInt32)
    case ack(Ack)
    case resendRequest(ResendRequest)
    /// DATA_CHECK: "tell me which of these you have": the receiver answers with ACK for complete
    /// IROBs and RESEND_REQUEST for what it misses.
    case dataCheck(ids: [IROBID])
    case newInterface(InterfaceInfo)
    /// DOWN_INTERFACE: the client lost this network; its connection is gone.
    case downInterface(networkID: UInt32)
    case goodbye(Goodbye)
    /// PING: liveness / RTT probe; answered with PONG carrying the same nonce.
    case ping(nonce: UInt64)
    /// PONG: `holdMicroseconds` is the time between reading the PING and writing the PONG.
    case pong(nonce: UInt64, holdMicroseconds: UInt32)
    /// AUTH: key agreement and proofs of the session key (never carries the key itself).
    case auth(Auth)
    /// An extension frame (type ≥ 0x80) this version does not interpret.
    case `extension`(type: UInt8, body: [UInt8])

    /// The frame type byte.
    public var typeCode: UInt8 {
        switch self {
        case .hello: FrameType.hello.rawValue
        case .beginIROB: FrameType.beginIROB.rawValue
        case .data: FrameType.data.rawValue
        case .endIROB: FrameType.endIROB.rawValue
        case .ack: FrameType.ack.rawValue
        case .resendRequest: FrameType.resendRequest.rawValue
        case .dataCheck: FrameType.dataCheck.rawValue
        case .newInterface: FrameType.newInterface.rawValue
        case .downInterface: FrameType.downInterface.rawValue
        case .goodbye: FrameType.goodbye.rawValue
        case .ping: FrameType.ping.rawValue
        case .pong: FrameType.pong.rawValue
        case .auth: FrameType.auth.rawValue
        case .extension(let t, _): t
        }
    }
}

/// A violation of the wire protocol by the peer. The connection that carried it is closed;
/// nothing else is affected.
public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// A length field outside 1...`Wire.maxFrameLength`.
        case frameLength(UInt32)
        case unknownFrameType(UInt8)
        /// The body is shorter or longer than its type requires.
        case malformedBody(frameType: UInt8)
        case badMagic(UInt32)
        case unsupportedVersion(UInt16)
        /// A count field (dependencies, ACK entries, name length) beyond its limit.
        case countLimit(frameType: UInt8, count: Int)
        /// A field value that is never valid (IROB id 0, a dependency on itself or later, ...).
        case invalidField(frameType: UInt8, field: String)
        /// A frame that is well formed but not allowed now (DATA before BEGIN_IROB, no HELLO first ...).
        case unexpected(String)
        /// The peer made the receiver buffer more than its hard limit of bytes that cannot be released.
        case receiveBufferExceeded(limitBytes: Int)
    }
    public var kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public var description: String {
        switch kind {
        case .frameLength(let n): "protocol error: frame length \(n) outside 1...\(Wire.maxFrameLength)"
        case .unknownFrameType(let t): "protocol error: unknown frame type 0x\(String(t, radix: 16))"
        case .malformedBody(let t): "protocol error: malformed body of frame type 0x\(String(t, radix: 16))"
        case .badMagic(let m): "protocol error: HELLO magic 0x\(String(m, radix: 16)) is not IntNW"
        case .unsupportedVersion(let v): "protocol error: peer speaks version \(v), this side \(Wire.minimumVersion)...\(Wire.version)"
        case .countLimit(let t, let c): "protocol error: count \(c) over the limit in frame type 0x\(String(t, radix: 16))"
        case .invalidField(let t, let f): "protocol error: invalid \(f) in frame type 0x\(String(t, radix: 16))"
        case .unexpected(let s): "protocol error: \(s)"
        case .receiveBufferExceeded(let l): "protocol error: peer exceeded the receive buffer hard limit of \(l) bytes"
        }
    }
}
