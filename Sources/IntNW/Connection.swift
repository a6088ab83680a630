/// One TCP connection of a session: its socket, frame decoder, preallocated send buffer, and the
/// network it is bound to. Confined to the loop thread (under the loop lock).
#if canImport(Glibc)
import Glibc
#endif
import LinuxSupport
import SystemPackage

/// Preallocated send buffer: frames are encoded straight into it and written from it.
struct OutBuffer {
    private var storage: [UInt8]
    private(set) var head = 0
    private(set) var tail = 0

    init(capacity: Int) { storage = [UInt8](repeating: 0, count: capacity) }

    var pending: Int { tail - head }
    var capacity: Int { storage.count }

    /// Makes `n` contiguous free bytes at the tail if possible (compacting); false if it cannot.
    mutating func reserve(_ n: Int) -> Bool {
        if storage.count - tail >= n { return true }
        if head > 0 {
            let live = tail - head
            if live > 0 {
                storage.withUnsafeMutableBytes { b in
                    b.baseAddress!.copyMemory(from: b.baseAddress! + head, byteCount: live)
                }
            }
            head = 0
            tail = live
        }
        return storage.count - tail >= n
    }

    /// Encodes `frame` at the tail; false (nothing written) if it does not fit.
    mutating func append(_ frame: Frame) -> Bool {
        let n = frame.encodedLength
        guard reserve(n) else { return false }
        let at = tail
        storage.withUnsafeMutableBytes { b in _ = FrameEncoder.write(frame, into: b, at: at) }
        tail += n
        return true
    }

    /// Encodes a DATA frame whose payload is `payload`; the caller reserved room.
    mutating func appendData(id: IROBID, offset: UInt32, payload: UnsafeRawBufferPointer) {
        let at = tail
        storage.withUnsafeMutableBytes { b in
            let h = FrameEncoder.writeDataHeader(id: id, offset: offset, payloadLength: payload.count, into: b, at: at)
            if payload.count > 0 {
                (b.baseAddress! + at + h).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
            }
        }
        tail += FrameEncoder.dataHeaderLength + payload.count
    }

    /// Writes as much as the socket takes. Returns nil when done or blocked, or the errno of a failure.
    mutating func write(to fd: Int32) -> Errno? {
        while head < tail {
            let (h, t) = (head, tail)
            let r = Syscall.retrying {
                storage.withUnsafeBytes { b in Glibc.send(fd, b.baseAddress! + h, t - h, Int32(MSG_NOSIGNAL)) }
            }
            switch r {
            case .success(0): return .brokenPipe
            case .success(let n): head += n
            case .failure(let e): return e.isWouldBlock ? nil : e
            }
        }
        head = 0
        tail = 0
        return nil
    }
}

final class Connection {
    enum State: Equatable {
        case connecting
        /// Client: connected, waiting for another connection's key share to finish (SessionAuth.swift).
        case awaitingKey
        /// HELLO (and AUTH) sent; the attach is not complete yet.
        case awaitingHello
        case established
        case closed
    }

    let id: ConnectionID
    let fd: Int32
    var state: State
    /// The client network this connection is bound to.
    var network: LocalNetwork
    var decoder = FrameDecoder()
    /// The attach handshake's state (SessionAuth.swift).
    var auth = ConnectionAuth()
    var out: OutBuffer
    /// Control frames waiting for room in `out` (HELLO, RESEND_REQUEST, PONG, GOODBYE ...).
    var control: [Frame] = []
    /// IROBs completed (or re-received) on this connection and not yet acknowledged: (id, ns).
    var pendingAcks: [(id: IROBID, completedAtNs: UInt64)] = []
    var lastAckReceivedNs: UInt64 = 0
    /// The nonce (its monotonic send time, ns) of the path probe's PING in flight on this
    /// connection (0: none); only the PONG that echoes it is a path RTT sample.
    var pathProbeNonce: UInt64 = 0
    /// Trouble detection state (Trouble/SessionTrouble.swift).
    var trouble = ConnectionTrouble()
    /// Not to be chosen for data: troubled by this side's detector or by the peer's.
    var troubled: Bool { trouble.local || trouble.peer }
    let openedNs: UInt64
    /// Decoded frames are still waiting in `decoder` (the per-pass frame budget ran out): the
    /// socket is not read until they are handled, in later loop passes.
    var framesPending = false
    /// Monotonic ns of the last read that returned bytes (server idle timeout).
    var lastReceivedNs: UInt64
    /// Monotonic ns of the last write that the socket took bytes of (client keepalive).
    var lastSentNs: UInt64

    init(id: ConnectionID, fd: Int32, state: State, network: LocalNetwork, outCapacity: Int, nowNs: UInt64) {
        self.id = id
        self.fd = fd
        self.state = state
        self.network = network
        self.out = OutBuffer(capacity: outCapacity)
        self.openedNs = nowNs
        self.lastReceivedNs = nowNs
        self.lastSentNs = nowNs
    }

    /// Replies the peer has not taken yet: beyond these, the connection is not read until they
    /// drain (a peer that sends PINGs or DATA_CHECKs and never reads the answers stalls itself,
    /// not the server's memory).
    static let maxControlBacklog = 256
    static let maxAckBacklog = 8192
    var backlogged: Bool { control.count >= Connection.maxControlBacklog || pendingAcks.count >= Connection.maxAckBacklog }

    /// Moves queued control frames into the send buffer as far as they fit.
    func drainControl() {
        var i = 0
        while i < control.count, out.append(control[i]) { i += 1 }
        if i > 0 { control.removeFirst(i) }
    }

    func closeSocket() {
        if state != .closed {
            state = .closed
            Glibc.close(fd)
        }
    }

    /// Closes with a reset and drops whatever the kernel still holds: the IROBs it carried are
    /// resent elsewhere, and an orphaned socket retransmitting into a dead link would keep the
    /// link's ARP entry in resolution and delay the next connection when the link returns.
    func abortSocket() {
        if state != .closed {
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        }
        closeSocket()
    }
}
