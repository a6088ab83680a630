import Capture

/// The two endpoints of a TCP connection in canonical order (A is the lower address/port), so
/// both directions of a connection find the same entry.
public struct ConnectionKey: Hashable, Sendable {
    public var ipA: UInt32
    public var portA: UInt16
    public var ipB: UInt32
    public var portB: UInt16

    /// Canonical key for a segment, and whether the segment travels A→B.
    @inline(__always)
    static func of(_ s: TCPSegment) -> (ConnectionKey, fromA: Bool) {
        let srcLow = s.sourceIP < s.destinationIP || (s.sourceIP == s.destinationIP && s.sourcePort <= s.destinationPort)
        if srcLow {
            return (ConnectionKey(ipA: s.sourceIP, portA: s.sourcePort, ipB: s.destinationIP, portB: s.destinationPort), true)
        }
        return (ConnectionKey(ipA: s.destinationIP, portA: s.destinationPort, ipB: s.sourceIP, portB: s.sourcePort), false)
    }
}

/// One TCP connection as seen at one capture point.
public final class TCPConnection {
    public let id: Int
    /// Index of the capture (pcap file) it was seen in.
    public let capture: Int
    public let key: ConnectionKey
    let aToB: StreamReassembler
    let bToA: StreamReassembler
    /// Who opened the connection (sent the SYN without ACK), when the capture saw it.
    public internal(set) var clientIsA: Bool?
    public internal(set) var firstNanoseconds: UInt64
    public internal(set) var lastNanoseconds: UInt64
    var consumerA: DetectingConsumer?
    var consumerB: DetectingConsumer?

    init(id: Int, capture: Int, key: ConnectionKey, time: UInt64, origin: UInt64, binWidth: UInt64) {
        self.id = id
        self.capture = capture
        self.key = key
        aToB = StreamReassembler(originNanoseconds: origin, binWidthNanoseconds: binWidth)
        bToA = StreamReassembler(originNanoseconds: origin, binWidthNanoseconds: binWidth)
        firstNanoseconds = time
        lastNanoseconds = time
    }

    var closed: Bool {
        (aToB.stats.finSeen && bToA.stats.finSeen) || aToB.stats.rstSeen || bToA.stats.rstSeen
    }

    public var statsAToB: DirectionStats { aToB.stats }
    public var statsBToA: DirectionStats { bToA.stats }
}

/// Demultiplexes the TCP segments of one capture into connections and feeds their reassemblers.
final class ConnectionTable {
    private var index: [ConnectionKey: Int] = [:]
    private(set) var connections: [TCPConnection]
    private let capture: Int
    private let origin: UInt64
    private let binWidth: UInt64
    private let makeConsumers: (TCPConnection) -> Void
    private var lastKey: ConnectionKey?
    private var lastConnection: TCPConnection?
    private var nextID: () -> Int

    init(capture: Int, origin: UInt64, binWidth: UInt64, nextID: @escaping () -> Int,
         makeConsumers: @escaping (TCPConnection) -> Void) {
        self.capture = capture
        self.origin = origin
        self.binWidth = binWidth
        self.nextID = nextID
        self.makeConsumers = makeConsumers
        connections = []
    }

    private func open(_ key: ConnectionKey, time: UInt64) -> TCPConnection {
        let c = TCPConnection(id: nextID(), capture: capture, key: key, time: time, origin: origin, binWidth: binWidth)
        makeConsumers(c)
        index[key] = connections.count
        connections.append(c)
        return c
    }

    /// Processes one segment. `packet` is the captured packet the segment's offsets refer to.
    @inline(__always)
    func process(_ s: TCPSegment, packet: UnsafeRawBufferPointer, time: UInt64) {
        let (key, fromA) = ConnectionKey.of(s)
        var conn: TCPConnection
        if key == lastKey, let c = lastConnection {
            conn = c
        } else if let i = index[key] {
            conn = connections[i]
        } else {
            conn = open(key, time: time)
        }
        // A fresh SYN on a finished connection (port reuse) starts a new connection.
        if s.syn && !s.ack && conn.closed {
            conn.aToB.finish(time: conn.lastNanoseconds)
            conn.bToA.finish(time: conn.lastNanoseconds)
            conn = open(key, time: time)
        }
        lastKey = key
        lastConnection = conn
        conn.lastNanoseconds = time
        let dir = fromA ? conn.aToB : conn.bToA
        let other = fromA ? conn.bToA : conn.aToB
        if s.syn {
            dir.syn(sequence: s.sequence)
            if !s.ack { conn.clientIsA = fromA } else if conn.clientIsA == nil { conn.clientIsA = !fromA }
        }
        let payload = UnsafeRawBufferPointer(rebasing: packet[s.payloadOffset ..< s.payloadOffset + s.capturedPayloadLength])
        dir.segment(sequence: s.syn ? s.sequence &+ 1 : s.sequence, payload: payload, fullLength: s.payloadLength,
                    fin: s.fin, rst: s.rst, time: time)
        if s.ack && !s.rst { other.acknowledged(s.acknowledgement, time: time) }
    }

    /// End of the capture: flush every stream.
    func finish(time: UInt64) {
        for c in connections {
            c.aToB.finish(time: time)
            c.bToA.finish(time: time)
        }
    }
}
